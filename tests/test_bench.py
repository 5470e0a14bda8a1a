"""``agency-rls bench``: the query mix under row level security against the hand-written rule.

Run on the sample world with few rounds: the numbers mean nothing here, but every pair must
return the same rows (the hand-written rule of ``agency_rls.workload.queries`` is an independent
reading of the spec, so a mismatch is a real finding), the report must have its shape, and the
plan reader must see what it flags when it is planted.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from agency_rls.scripts.cli import app
from psycopg import sql
from typer.testing import CliRunner

from agency_rls.backend import PrincipalPool
from agency_rls.workload.bench import BenchReport, format_json, percentile, render_text, run_bench
from agency_rls.workload.plans import buffers_of, explain_analyze, plan_flags, plan_shape
from agency_rls.workload.queries import QUERIES, deep_offset
from tests.support import World


def backend(world: World) -> str:
    return world.db.login_conninfo(world.role("rls_backend"))


@pytest.fixture(scope="module")
def picked(world: World) -> BenchReport:
    """The automatic choice of principals, all queries, a few rounds, through the given backend login."""
    return run_bench(world.db.conninfo, backend_conninfo=backend(world), rounds=3, warmup=1, seed=7)


def test_every_principal_and_query_matches_the_hand_written_rule(world: World) -> None:
    """All principals of the sample world (agencies, the seconded staff, insurers) × the whole mix."""
    with world.admin() as conn:
        roles = [row[0] for row in conn.execute("SELECT role_name FROM public.principal ORDER BY 1")]
    report = run_bench(
        world.db.conninfo, backend_conninfo=backend(world), rounds=1, warmup=0, principals=roles
    )
    problems = [
        f"{result.principal.role} {result.query.name}: {result.mismatch or result.error}"
        for result in report.results
        if result.mismatch or result.error
    ]
    assert not problems, "\n".join(problems)
    assert report.ok
    assert {principal.role for principal in report.principals} == set(roles)
    for result in report.results:
        # Primed on both backend sessions, then one timed round.
        assert result.comparisons == 3, (result.principal.role, result.query.name)
        assert len(result.rls.samples) == len(result.hand.samples) == 1
    for principal in report.principals:
        names = {r.query.name for r in report.results if r.principal is principal}
        expected = set(QUERIES) - (
            {"working_agencies"} if principal.viewer.kind == "insurer" else {"insurer_page"}
        )
        assert names == expected, principal.role
    rows = {(r.principal.role, r.query.name): r.rows for r in report.results}
    # The incident's working agency sees two contracts, its supervisor its own 13 (hand counted in the
    # scenario file); the count query returns one row either way, so look at the principals' counts.
    counts = {principal.role: principal.visible_contracts for principal in report.principals}
    assert counts[world.role("agency_w11")] == 2
    assert counts[world.role("agency_e1")] == 0
    assert rows[(world.role("agency_w11"), "contracts_with_policyholders")] == 2
    assert rows[(world.role("agency_s1"), "working_agencies")] == 3  # W11, W12, S2 (not W21)
    assert rows[(world.role("staff_nl_at_m1"), "working_agencies")] == 0


def test_the_automatic_choice_of_principals(world: World, picked: BenchReport) -> None:
    by_label: dict[str, str] = {}
    for principal in picked.principals:
        for label in principal.labels:
            by_label[label] = principal.role
    assert set(by_label) == {"smallest", "median", "largest", "working", "supervising", "seconded", "insurer"}
    assert by_label["largest"] == world.role("agency_s1")
    assert by_label["supervising"] == world.role("agency_s1")  # three working agencies
    assert by_label["seconded"] == world.role("staff_nl_at_m1")
    assert by_label["insurer"] == world.role("insurer_nl")  # the most contracts
    sizes = {principal.role: principal.visible_contracts for principal in picked.principals}
    assert 0 < sizes[by_label["smallest"]] <= sizes[by_label["median"]] <= sizes[by_label["largest"]]
    # Each principal's inputs come from its own visible set: the point lookups find their row.
    rows = {(r.principal.role, r.query.name): r.rows for r in picked.results}
    for principal in picked.principals:
        assert rows[(principal.role, "contract_by_policy_number")] == 1, principal.role
        assert rows[(principal.role, "customer_by_id")] == 1, principal.role
    assert picked.ok


def test_the_json_report(picked: BenchReport) -> None:
    document = json.loads(format_json(picked))
    assert document["ok"] is True and document["mismatches"] == 0 and document["errors"] == 0
    assert document["rounds"] == 3 and document["warmup"] == 1
    assert document["server_version"] and document["machine"] and document["backend_login"]
    assert document["api_overhead_p50_ms"] > 0
    assert set(document["queries"]) == set(QUERIES)
    assert {p["role"] for p in document["principals"]} == {p.role for p in picked.principals}
    result = document["results"][0]
    assert set(result) >= {
        "principal",
        "labels",
        "query",
        "rows",
        "matched",
        "rls",
        "hand",
        "ratio",
        "rls_transaction",
    }
    for side in ("rls", "hand"):
        assert set(result[side]) >= {"p50_ms", "p95_ms", "samples", "buffers", "flags", "shape"}
        assert result[side]["samples"] == 3
        assert result[side]["p50_ms"] > 0 and result[side]["p95_ms"] >= result[side]["p50_ms"]
        assert result[side]["buffers"] > 0
    assert result["ratio"]["p50"] == pytest.approx(
        result["rls"]["p50_ms"] / result["hand"]["p50_ms"], rel=1e-2
    )
    assert set(result["rls"]["session_p50_ms"]) <= {"a", "b"}
    # Two hand-written shapes of the customers page were timed (and agreed); the faster one is H.
    for entry in document["results"]:
        trials = entry["hand"]["variant_trials_ms"]
        if entry["query"] == "customers_page":
            assert set(trials) == {"default", "id array"}
            assert entry["hand"]["variant"] == min(trials, key=trials.__getitem__)
        else:
            assert trials == {} and entry["hand"]["variant"] == "default"
    assert all(entry["matched"] for entry in document["results"])


def test_the_text_report(picked: BenchReport) -> None:
    from rich.console import Console

    console = Console(record=True, width=250)
    render_text(picked, console)
    text = console.export_text()
    assert "PostgreSQL" in text and "RLS p50" in text and "H p95" in text
    assert "RLS plan shapes" in text and "every pair returned the same rows" in text
    for name in QUERIES:
        assert name in text


def test_a_wrong_rule_is_reported_as_a_mismatch_and_fails_the_command(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plant a hand-written rule that forgets the scope: the pair mismatches, the command exits 1."""
    wrong = dataclasses.replace(
        QUERIES["contract_count"], hand=lambda viewer: sql.SQL("SELECT count(*) FROM public.contract")
    )
    monkeypatch.setitem(QUERIES, "contract_count", wrong)
    args = [
        "bench",
        "--database-url",
        world.db.url,
        "--backend-url",
        backend(world),
        "--rounds",
        "1",
        "--warmup",
        "0",
        "--format",
        "json",
        "--query",
        "contract_count",
        "--principal",
        "agency_w11",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["mismatches"] == 1
    (entry,) = document["results"]
    assert entry["principal"] == world.role("agency_w11") and entry["matched"] is False
    assert "only under RLS (1): (2,)" in entry["mismatch"]
    assert "only hand-written (1): (25,)" in entry["mismatch"]

    monkeypatch.undo()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


def test_the_command_refuses_an_unknown_query_or_principal(world: World) -> None:
    base = ["bench", "--database-url", world.db.url, "--backend-url", backend(world), "--rounds", "1"]
    result = CliRunner().invoke(app, [*base, "--query", "nope"])
    assert result.exit_code == 1
    assert result.stderr.startswith("agency-rls: unknown query 'nope'")
    result = CliRunner().invoke(app, [*base, "--principal", "agency_zz"])
    assert result.exit_code == 1
    assert "no principal row for 'agency_zz'" in result.stderr


@pytest.mark.needs_superuser("SET SESSION AUTHORIZATION is for superusers")
def test_a_superuser_needs_no_backend_login(world: World) -> None:
    """Without --backend-url the superuser's own sessions become the backend: no password set, no role made."""
    with world.admin() as conn:
        before = conn.execute(
            "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s", (world.role("rls_backend"),)
        ).fetchone()
        roles_before = conn.execute("SELECT count(*) FROM pg_catalog.pg_roles").fetchone()
    report = run_bench(
        world.db.conninfo,
        rounds=1,
        warmup=0,
        queries=["contract_count", "notice_feed"],
        principals=["agency_w11"],
    )
    assert report.ok
    assert "SET SESSION AUTHORIZATION" in report.backend_login
    assert [r.rows for r in report.results] == [1, 6]
    with world.admin() as conn:
        after = conn.execute(
            "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s", (world.role("rls_backend"),)
        ).fetchone()
        assert after == before
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_roles").fetchone() == roles_before


# -- the plan reader ------------------------------------------------------------------------------


def test_plan_flags_find_a_planted_seq_scan_hashed_subplan_and_materialised_scope(world: World) -> None:
    with world.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute("CREATE TEMPORARY TABLE big (x int, y int)")
        conn.execute("INSERT INTO big SELECT i, i % 100 FROM generate_series(1, 20000) AS i")
        conn.execute("CREATE INDEX ON big (x)")
        conn.execute("ANALYZE big")
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")

        seq = explain_analyze(conn, "SELECT * FROM big WHERE x = %s", (5,))
        flags = plan_flags(seq.plan)
        assert [flag.kind for flag in flags] == ["seq_scan"]
        assert flags[0].where == "big" and "seq scan on big (20,000 rows)" in str(flags[0])
        assert plan_shape(seq.plan) == "Seq Scan on big"  # (a temporary table: local buffers, not counted)
        # The threshold is the table's size: a smaller table is not flagged, a larger one given is.
        assert plan_flags(seq.plan, seq_scan_rows=50_000) == []
        assert [f.kind for f in plan_flags(seq.plan, {"big": 60_000}, seq_scan_rows=50_000)] == ["seq_scan"]

        conn.execute("SET LOCAL enable_indexscan = on")
        conn.execute("SET LOCAL enable_bitmapscan = on")
        hashed = explain_analyze(
            conn, "SELECT count(*) FROM big WHERE x NOT IN (SELECT y FROM big WHERE y < 50)"
        )
        assert "hashed_subplan" in {flag.kind for flag in plan_flags(hashed.plan)}
        assert "hashed SubPlan" in plan_shape(hashed.plan)

        scope = explain_analyze(
            conn, "SELECT * FROM big WHERE x = ANY (ARRAY(SELECT b.x FROM big AS b WHERE b.y = 7))"
        )
        kinds = {flag.kind for flag in plan_flags(scope.plan)}
        assert "materialised_scope" in kinds  # the InitPlan went through all 20,000 rows
        point = explain_analyze(conn, "SELECT * FROM big WHERE x = (SELECT 5)")
        assert plan_flags(point.plan) == []  # a cheap InitPlan and an index lookup: nothing to flag


def test_plan_flags_on_a_captured_plan() -> None:
    """A pure function of the JSON: sizes from the catalog decide what a large table is."""
    plan: list[dict[str, Any]] = [
        {
            "Plan": {
                "Node Type": "Aggregate",
                "Strategy": "Plain",
                "Shared Hit Blocks": 5000,
                "Shared Read Blocks": 10,
                "Plans": [
                    {
                        "Node Type": "Result",
                        "Parent Relationship": "InitPlan",
                        "Subplan Name": "InitPlan 1 (returns $0)",
                        "Actual Rows": 1,
                        "Actual Loops": 1,
                        "Shared Hit Blocks": 4800,
                        "Shared Read Blocks": 0,
                    },
                    {
                        "Node Type": "Seq Scan",
                        "Parent Relationship": "Outer",
                        "Relation Name": "contract",
                        "Actual Rows": 3,
                        "Actual Loops": 1,
                        "Rows Removed by Filter": 20,
                        "Filter": "(id = ANY ($0))",
                        "Shared Hit Blocks": 200,
                        "Shared Read Blocks": 10,
                    },
                ],
            },
            "Execution Time": 1.0,
        }
    ]
    assert plan_flags(plan) == []  # 23 rows: not a large table, so nothing is
    flags = plan_flags(plan, {"contract": 1_000_000})
    assert {(flag.kind, flag.where) for flag in flags} == {
        ("seq_scan", "contract"),
        ("materialised_scope", "InitPlan 1"),
    }
    assert plan_shape(plan) == "Aggregate\n  InitPlan 1: Result\n  Seq Scan on contract"


def test_buffers_of_a_query_acting_as_a_principal(world: World) -> None:
    query = QUERIES["contract_count"].rls
    with PrincipalPool(backend(world), min_size=1, max_size=1) as pool:
        with pool.acting_as(role=world.role("agency_w11")) as conn:
            as_principal = buffers_of(conn, query)
            assert conn.execute(query).fetchone() == (2,)
    with world.admin() as conn:
        assert buffers_of(conn, "SELECT * FROM public.contract WHERE id = %s", (1,)) > 0
    assert as_principal > 0


def test_small_helpers() -> None:
    assert percentile([], 0.95) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 21)], 0.95) == 19.0
    assert (
        deep_offset(0) == 0 and deep_offset(49) == 0 and deep_offset(1000) == 900 and deep_offset(1049) == 900
    )


def test_the_command_has_help() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for option in (
        "--database-url",
        "--backend-url",
        "--rounds",
        "--warmup",
        "--format",
        "--principal",
        "--query",
    ):
        assert option in result.output


def test_plan_flags_find_a_scan_whose_filter_throws_rows_away() -> None:
    """An index scan whose policy is a per-row filter walks every row the index finds."""
    node = {
        "Node Type": "Bitmap Heap Scan",
        "Relation Name": "contract",
        "Actual Rows": 17,
        "Actual Loops": 1,
        "Rows Removed by Filter": 68_409,
        "Filter": "(agency_rls.visible(id))",
        "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "contract_insurer_id_idx"}],
    }
    flags = plan_flags({"Plan": node})
    assert [(flag.kind, flag.where) for flag in flags] == [("filtered_scan", "contract")]
    assert str(flags[0]) == "Bitmap Heap Scan on contract removed 68,409 rows by filter"
    assert plan_flags({"Plan": {**node, "Rows Removed by Filter": 300}}) == []

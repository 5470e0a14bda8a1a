"""``agency-rls bench-writes``: the cost of keeping the scope copies exact (``agency_rls.workload.write_cost``).

On a tiny seeded world (seeded once per module): every write kind is measured on both sides, the
database is exactly as before (rows, copies, identity sequences, triggers), the PLAIN side really
runs without the scope triggers (its copies are stale), the exactness check sees a copy corrupted
behind the triggers' back, and a planted trigger that leaves a copy stale fails the run (exit 1).
No timing is asserted: only shapes, counts and exactness.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from agency_rls.scripts.cli import app
from psycopg import sql
from typer.testing import CliRunner

from agency_rls.workload.seed import SeedReport, seed_world
from agency_rls.workload.write_cost import (
    KINDS,
    SCOPE_TRIGGERS,
    InexactCopies,
    WriteCostError,
    inexact_copies,
    markdown_from_json,
    measure_write_cost,
    pick_rows,
)
from tests.support import ScratchDatabase, create_database

BATCH = 40
#: Few rounds: the test asserts what was measured, never how fast.
QUICK = {"rounds": 2, "batch_rounds": 1, "warmup": 1, "batch_rows": BATCH}


@pytest.fixture(scope="module")
def seeded(server: str) -> Iterator[tuple[ScratchDatabase, SeedReport]]:
    """A database migrated and seeded with the tiny preset (seed 7, as of 2026-01-01)."""
    db = create_database(server, "writes")
    try:
        db.migrate()
        with db.connect() as conn:
            report = seed_world(conn, scale="tiny", seed=7, as_of=dt.date(2026, 1, 1))
        yield db, report
    finally:
        try:
            db.downgrade_base()
        finally:
            db.drop()


@pytest.fixture
def conn(seeded: tuple[ScratchDatabase, SeedReport]) -> Iterator[psycopg.Connection[Any]]:
    """The database's administrator (superuser, or in DBA mode the NOSUPERUSER owner), autocommit."""
    with seeded[0].connect() as connection:
        yield connection


def state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What a measurement must leave as it found: rows, every copy, sequences, trigger switches."""
    out: dict[str, Any] = {}
    for table in ("contract", "contract_handler", "customer"):
        out[f"{table} rows"] = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))
        ).fetchone()
    out["contract copies"] = conn.execute(
        "SELECT md5(string_agg(concat_ws('|', id, handler_agency_ids, handler_windows), ',' ORDER BY id))"
        " FROM public.contract"
    ).fetchone()
    out["customer copies"] = conn.execute(
        "SELECT md5(string_agg(concat_ws('|', id, handler_agency_ids, handler_insurer_ids, handler_windows,"
        " party_insurer_ids), ',' ORDER BY id)) FROM public.customer"
    ).fetchone()
    out["handler rows"] = conn.execute(
        "SELECT md5(string_agg(concat_ws('|', id, contract_id, agency_id, valid_from, valid_to), ','"
        " ORDER BY id)) FROM public.contract_handler"
    ).fetchone()
    out["sequences"] = conn.execute(
        "SELECT string_agg(format('%s=%s', sequencename, last_value), ',' ORDER BY sequencename)"
        " FROM pg_catalog.pg_sequences WHERE schemaname = 'public'"
    ).fetchone()
    out["triggers"] = conn.execute(
        "SELECT string_agg(format('%s.%s=%s', tgrelid::regclass, tgname, tgenabled), ',' ORDER BY tgrelid, tgname)"
        " FROM pg_catalog.pg_trigger WHERE NOT tgisinternal"
    ).fetchone()
    return out


@pytest.fixture(scope="module")
def measured(seeded: tuple[ScratchDatabase, SeedReport]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """One quick measurement of every kind, with the database's state before and after."""
    with seeded[0].connect() as connection:
        before = state(connection)
        report = measure_write_cost(connection, seed=3, **QUICK)  # type: ignore[arg-type]
        after = state(connection)
    return report, before, after


def test_every_kind_is_measured_on_both_sides(measured: tuple[Any, dict[str, Any], dict[str, Any]]) -> None:
    report = measured[0]
    assert [(r.kind, r.size) for r in report.results] == [
        *((k.name, "single") for k in KINDS),
        *((k.name, "batch") for k in KINDS),
    ]
    for result in report.results:
        timed = QUICK["rounds"] if result.size == "single" else QUICK["batch_rounds"]
        assert result.rows == (1 if result.size == "single" else BATCH)
        assert {side: len(samples) for side, samples in result.samples.items()} == {
            "with": timed,
            "plain": timed,
        }
        assert all(ms > 0 for samples in result.samples.values() for ms in samples)
        assert result.ratio(result.p50) == pytest.approx(result.p50("with") / result.p50("plain"))


def test_copies_are_exact_after_every_write_and_stale_without_the_triggers(
    measured: tuple[Any, dict[str, Any], dict[str, Any]],
) -> None:
    report = measured[0]
    assert report.ok
    for result in report.results:
        assert result.inexact_after_with == 0, result.kind
        # The PLAIN side ran without the scope triggers: its write left copies stale, and the check saw it.
        assert result.stale_after_plain and result.stale_after_plain > 0, (result.kind, result.size)
    batch = {r.kind: r.copies_written for r in report.results if r.size == "batch"}
    for kind in ("handler_insert", "handler_end", "handler_delete", "contract_insert"):
        assert batch[kind]["contract"] == BATCH and batch[kind]["customer"] > 0, kind
    assert batch["contract_policyholder"]["contract"] == 0 and batch["contract_policyholder"]["customer"] > 0


def test_the_database_is_unchanged(measured: tuple[Any, dict[str, Any], dict[str, Any]]) -> None:
    _, before, after = measured
    assert after == before


def test_the_report_renders(measured: tuple[Any, dict[str, Any], dict[str, Any]]) -> None:
    data = json.loads(json.dumps(measured[0].as_dict()))
    assert data["ok"] is True and data["target"] == 1.2
    assert {row["kind"] for row in data["results"]} == {k.name for k in KINDS}
    assert data["picked"]["batch_rows"] == BATCH
    table = markdown_from_json(data)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| write")]
    assert len(rows) == 2 * len(KINDS)
    assert all(row.count("|") == 11 for row in rows)


def test_the_rows_are_picked_deterministically(conn: psycopg.Connection[Any]) -> None:
    first, again, other = (pick_rows(conn, batch_rows=BATCH, seed=s) for s in (5, 5, 6))
    assert first == again
    assert first.contract_ids != other.contract_ids
    assert len(set(first.contract_ids)) == BATCH
    assert first.joint_agency_id != first.agency_id
    assert all(
        new != old for new, old in zip(first.new_policyholder_ids, first.policyholder_ids, strict=True)
    )


def test_the_check_sees_a_copy_corrupted_behind_the_triggers(conn: psycopg.Connection[Any]) -> None:
    """With the triggers off for one statement, a copy is overwritten: the check counts exactly it."""
    picked = pick_rows(conn, batch_rows=BATCH, seed=1)
    contract, customer = picked.contract_ids[0], picked.customers(1)[0]
    with conn.transaction(force_rollback=True):
        assert inexact_copies(conn, picked.contract_ids, picked.customers(BATCH)) == InexactCopies(0, 0)
        conn.execute("ALTER TABLE public.contract DISABLE TRIGGER customer_scope_after_update")
        conn.execute("ALTER TABLE public.customer DISABLE TRIGGER customer_scope_after_update")
        conn.execute("UPDATE public.contract SET handler_agency_ids = '{}' WHERE id = %s", (contract,))
        assert inexact_copies(conn, picked.contract_ids, picked.customers(BATCH)) == InexactCopies(1, 0)
        conn.execute("UPDATE public.customer SET party_insurer_ids = '{-1}' WHERE id = %s", (customer,))
        assert inexact_copies(conn, picked.contract_ids, picked.customers(BATCH)) == InexactCopies(1, 1)


@pytest.fixture
def stale_copy_planted(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A trigger that runs after the scope refresh of a handler insert and empties the contracts' copy
    (its UPDATE is a nested statement, which the contract trigger does not correct): a stale copy."""
    conn.execute(
        """
        CREATE FUNCTION public.write_cost_plant() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE public.contract SET handler_agency_ids = '{}'
             WHERE id IN (SELECT n.contract_id FROM new_rows AS n);
            RETURN NULL;
        END $$;
        CREATE TRIGGER zz_write_cost_plant AFTER INSERT ON public.contract_handler
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION public.write_cost_plant();"""
    )
    try:
        yield
    finally:
        conn.execute("DROP TRIGGER zz_write_cost_plant ON public.contract_handler")
        conn.execute("DROP FUNCTION public.write_cost_plant()")


@pytest.mark.usefixtures("stale_copy_planted")
def test_a_write_leaving_a_stale_copy_fails_the_run(seeded: tuple[ScratchDatabase, SeedReport]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench-writes",
            "--database-url",
            seeded[0].url,
            "--kind",
            "handler_insert",
            "--rounds",
            "1",
            "--batch-rounds",
            "1",
            "--warmup",
            "0",
            "--batch-rows",
            str(BATCH),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [(r["kind"], r["size"]) for r in data["results"]] == [
        ("handler_insert", "single"),
        ("handler_insert", "batch"),
    ]
    # Every contract written holds an empty copy, and its customers were refreshed from it.
    assert [r["inexact_after_with"] > r["rows"] for r in data["results"]] == [True, True]
    assert "NO:" in markdown_from_json(data)


def test_the_command_prints_markdown(seeded: tuple[ScratchDatabase, SeedReport]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench-writes",
            "--database-url",
            seeded[0].url,
            "--kind",
            "handler_end",
            "--rounds",
            "1",
            "--batch-rounds",
            "1",
            "--warmup",
            "0",
            "--batch-rows",
            "5",
            "--format",
            "markdown",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| handler_end | 1 |" in result.stdout and "| handler_end | 5 |" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (
            ["--kind", "truncate_everything"],
            "unknown write kind truncate_everything: choose from handler_insert",
        ),
        (["--rounds", "0"], None),  # typer's own usage error
    ],
)
def test_usage_errors_exit_2(
    seeded: tuple[ScratchDatabase, SeedReport], arguments: list[str], reason: str | None
) -> None:
    result = CliRunner().invoke(app, ["bench-writes", "--database-url", seeded[0].url, *arguments])
    assert result.exit_code == 2
    if reason is not None:
        assert result.stderr.startswith(f"agency-rls: bench-writes: {reason}")
        assert result.stderr.count("\n") == 1


def test_a_connection_error_exits_2() -> None:
    result = CliRunner().invoke(
        app, ["bench-writes", "--database-url", "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("agency-rls: bench-writes: connection") and result.stderr.count("\n") == 1


def test_someone_who_does_not_own_the_tables_is_refused(
    seeded: tuple[ScratchDatabase, SeedReport], conn: psycopg.Connection[Any]
) -> None:
    """ALTER TABLE needs the owner: anyone else gets one line before anything runs."""
    outsider = seeded[0].role("writes_outsider")
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(outsider)))
    try:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(outsider)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(outsider)))
        with pytest.raises(WriteCostError) as raised:
            measure_write_cost(conn, **QUICK)  # type: ignore[arg-type]
        conn.execute("RESET ROLE")
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(outsider)))
    assert str(raised.value) == (
        f"ALTER TABLE ... DISABLE TRIGGER needs the owner of the tables: {outsider} is neither a superuser nor a"
        f" member of {seeded[0].role('rls_owner')} (owner of public.contract); connect as the DBA who installed"
        " agency-rls"
    )


def test_scope_triggers_are_those_of_the_definition(conn: psycopg.Connection[Any]) -> None:
    """The PLAIN side disables exactly the statement triggers of scope_columns.sql: every statement-level
    trigger on the three tables, and nothing else (keys and the derived-column trigger stay on)."""
    rows = conn.execute(
        """
        SELECT c.relname, t.tgname
          FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
         WHERE c.relname IN ('contract_handler', 'contract', 'customer') AND NOT t.tgisinternal
           AND t.tgtype & 1 = 0
         ORDER BY 1, 2"""
    ).fetchall()
    assert sorted(rows) == sorted((table, name) for table, names in SCOPE_TRIGGERS.items() for name in names)

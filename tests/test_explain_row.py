"""``agency-rls explain``: the incident's three cases, an allowed chain with its dates, JSON, bad input,
and the loud warning when the reference model and the database disagree.

Every explanation is confirmed against the sample world's database by acting as the principal: as
the superuser with SET LOCAL ROLE, or in DBA mode (AGENCY_RLS_TEST_AS=dba) over the backend login
(``--backend-url``), since a NOSUPERUSER DBA cannot switch to a principal itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from agency_rls.scripts.cli import app
from psycopg import sql
from typer.testing import CliRunner

from agency_rls.checks.explain_reasons import when
from agency_rls.checks.explain_row import DatabaseAnswer, _explain_view, _explanation
from agency_rls.checks.sample_world import CONTRACT_IDS, EXPECTED, NOTICE_IDS, PRINCIPALS, id_to_key
from agency_rls.reference_model.database import world_from_connection
from agency_rls.reference_model.world import TABLES, row_key
from tests.support import DBA_MODE, World, sample_world_on


@pytest.fixture(scope="module")
def backend_url(world: World) -> str:
    """A login as the sample world's backend role, as --backend-url takes it."""
    return world.db.login_conninfo(world.role("rls_backend"))


def explain(world: World, backend_url: str, *args: str, backend: bool = DBA_MODE) -> tuple[int, str, str]:
    """Run ``agency-rls explain`` on the sample world; over the backend login in DBA mode."""
    extra = ["--backend-url", backend_url] if backend else []
    result = CliRunner().invoke(app, ["explain", *args, "--database-url", world.db.url, *extra])
    return result.exit_code, result.stdout, result.stderr


def explain_json(world: World, backend_url: str, *args: str) -> dict:
    status, out, err = explain(world, backend_url, *args, "--format", "json")
    assert (status, err) == (0, "")
    return json.loads(out)


def conditions(report: dict) -> dict[str, dict]:
    """The deciding rule's conditions by name."""
    return {c["name"]: c for c in report["model"]["rules"][0]["conditions"]}


# ------------------------------------------------------------------------------------------------
# The incident's three cases (scope-rules.md, "Why it exists"), as W11 under S1
# ------------------------------------------------------------------------------------------------


def test_incident_1_gateway_contract_of_the_supervisor_is_denied(world: World, backend_url: str) -> None:
    """W11 and S1's gateway contract of another insurer: not entrusted by GW1, not a handler, and S1's
    handling does not pass down to its working agency."""
    status, out, err = explain(world, backend_url, "--as", "agency_w11", "contract", "GW1-2001")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("agency_w11 (agency principal) CANNOT read contract GW1-2001 (GW1, gateway)")
    assert lines[1] == "deciding rule: agency.contract/entrusted+handles+supervised_handles"
    assert "  no  entrusted (deciding): not entrusted by GW1: no entrustment row links W11 to GW1" in lines
    assert (
        "  no  handles (deciding): W11 does not handle GW1-2001: no contract_handler row links W11 to GW1-2001"
        in lines
    )
    [supervised] = [line for line in lines if "supervised_handles (deciding)" in line]
    assert "its supervisor S1 handles GW1-2001" in supervised
    assert supervised.endswith("but supervision does not give working agencies the supervisor's contracts")
    assert "did not return the row" in out and out.rstrip().endswith("model and database agree")


def test_incident_2_notice_to_the_supervisor_about_its_contract_is_denied(
    world: World, backend_url: str
) -> None:
    """N01, NL's pending paperwork addressed to S1 about S1's own NL-1001: W11 is entrusted by NL and S1
    supervises it (the notice flows down), but W11 cannot read the contract nor the customer it names
    (W11's own handler link on NL-1001 starts in 30 days)."""
    report = explain_json(world, backend_url, "--as", "agency_w11", "notice", str(NOTICE_IDS["N01"]))
    assert (report["model"]["visible"], report["database"]["visible"], report["agree"]) == (
        False,
        False,
        True,
    )
    assert report["model"]["why"] == "agency.notice/contract_seen+customer_seen"
    by_name = conditions(report)
    assert {n: c["holds"] for n, c in by_name.items()} == {
        "entrusted": True,
        "addressed_to_viewer": False,
        "addressed_to_supervisor": True,
        "contract_seen": False,
        "customer_seen": False,
    }
    assert by_name["contract_seen"]["text"].startswith(
        "about NL-1001 (NL, direct), which agency_w11 cannot read"
    )
    status, out, _ = explain(world, backend_url, "--as", "agency_w11", "contract", "NL-1001")
    assert status == 0
    assert "W11 does not handle NL-1001 now: handler row 2 (NL-1001 handled by W11, joint) valid from " in out
    assert "open-ended (not yet valid)" in out


def test_incident_3_life_insurer_notice_without_entrustment_is_denied(world: World, backend_url: str) -> None:
    """L01, LF's pending paperwork addressed to S1: W11 holds no LF entrustment now (it starts in 30 days)."""
    status, out, err = explain(world, backend_url, "--as", "agency_w11", "notice", str(NOTICE_IDS["L01"]))
    assert (status, err) == (0, "")
    assert out.startswith(
        f"agency_w11 (agency principal) CANNOT read notice {NOTICE_IDS['L01']} (LF pending_paperwork to S1)"
    )
    with world.admin() as conn:
        row = conn.execute(
            "SELECT e.id, e.valid_from FROM public.entrustment e JOIN public.agency a ON a.id = e.agency_id"
            " JOIN public.insurer i ON i.id = e.insurer_id WHERE a.code = 'W11' AND i.code = 'LF'"
        ).fetchone()
    assert row is not None
    expected = (
        f"  no  entrusted (deciding): not entrusted by LF now: entrustment {row[0]} (LF entrusts W11) valid from"
        f" {when(row[1])}, open-ended (not yet valid)"
    )
    assert expected in out.splitlines()
    # addressed to its supervisor, which is fine: that clause neither decides nor is blamed
    assert "  yes addressed_to_supervisor: its addressee S1 supervises W11: supervision 2" in out
    assert "  no  addressed_to_viewer: addressed to S1, not to W11" in out.splitlines()


def test_allowed_row_names_the_chain_with_its_dates(world: World, backend_url: str) -> None:
    """S1 reads NL-1003 through W11, which it supervises and which handles it: both rows with dates."""
    with world.admin() as conn:
        supervision = conn.execute(
            "SELECT s.id, s.valid_from FROM public.supervision s WHERE s.id = 2"
        ).fetchone()
        handler = conn.execute(
            "SELECT h.id, h.valid_from FROM public.contract_handler h WHERE h.contract_id = %s",
            (CONTRACT_IDS["NL-1003"],),
        ).fetchone()
    assert supervision is not None and handler is not None
    report = explain_json(world, backend_url, "--as", "agency_s1", "contract", "NL-1003")
    assert (report["model"]["visible"], report["database"]["visible"], report["agree"]) == (True, True, True)
    assert report["model"]["why"] == "agency.contract/entrusted+supervised_handles"
    chain = conditions(report)["supervised_handles"]
    assert chain["holds"] is True
    assert chain["text"] == (
        f"S1 supervises W11 (supervision {supervision[0]} (S1 supervises W11) valid from {when(supervision[1])},"
        f" open-ended (valid now)) and W11 handles NL-1003 (handler row {handler[0]} (NL-1003 handled by W11,"
        f" primary) valid from {when(handler[1])}, open-ended (valid now))"
    )
    assert [(r["table"], r["id"], r["valid_from"], r["valid_to"], r["valid_now"]) for r in chain["rows"]] == [
        ("supervision", supervision[0], supervision[1].isoformat(), None, True),
        ("contract_handler", handler[0], handler[1].isoformat(), None, True),
    ]


def test_json_shape(world: World, backend_url: str) -> None:
    report = explain_json(
        world, backend_url, "--as", f"{world.prefix}agency_w11", "contract", str(CONTRACT_IDS["NL-1003"])
    )
    assert set(report) == {
        "principal",
        "role",
        "kind",
        "table",
        "key",
        "row",
        "at",
        "model",
        "database",
        "agree",
        "warning",
    }
    assert (report["principal"], report["role"], report["kind"]) == (
        "agency_w11",
        world.role("agency_w11"),
        "agency",
    )
    assert (report["table"], report["key"], report["row"]) == (
        "contract",
        CONTRACT_IDS["NL-1003"],
        "NL-1003 (NL, direct)",
    )
    assert report["warning"] is None and report["agree"] is True
    assert set(report["model"]) == {"visible", "why", "rules"}
    [rule] = report["model"]["rules"]
    assert set(rule) == {"rule", "spec", "allows", "decided_by", "conditions"}
    assert (rule["rule"], rule["allows"], rule["decided_by"]) == (
        "agency.contract",
        True,
        ["entrusted", "handles"],
    )
    assert [c["name"] for c in rule["conditions"]] == ["entrusted", "handles", "supervised_handles"]
    assert set(report["database"]) == {"visible", "via", "at", "note"}
    assert report["database"]["via"] == (
        "SET LOCAL ROLE on the backend connection"
        if DBA_MODE
        else "SET LOCAL ROLE on the --database-url connection"
    )
    if not DBA_MODE:  # one snapshot: the model judged at the acting transaction's now()
        assert report["database"]["at"] == report["at"]


def test_restricted_principal_explains_the_wrapped_agency_rule(world: World, backend_url: str) -> None:
    report = explain_json(world, backend_url, "--as", "staff_nl_at_m1", "contract", "GW1-2003")
    assert report["model"]["why"] == "restricted.contract/concerns_n"
    assert [r["rule"] for r in report["model"]["rules"]] == ["restricted.contract", "agency.contract"]
    assert (
        conditions(report)["concerns_n"]["text"]
        == "concerns GW1, not NL (staff_nl_at_m1 is restricted to NL)"
    )


def test_over_the_backend_login_too(world: World, backend_url: str) -> None:
    """The backend path (what DBA mode uses) gives the same verdict in either mode."""
    report = json.loads(
        explain(
            world, backend_url, "--as", "agency_w11", "contract", "GW1-2001", "--format", "json", backend=True
        )[1]
    )
    assert (report["agree"], report["model"]["visible"], report["database"]["via"]) == (
        True,
        False,
        "SET LOCAL ROLE on the backend connection",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as", "agency_nobody", "contract", "1"], "agency-rls: explain: no principal 'agency_nobody'"),
        (
            ["--as", "agency_w11", "policy", "1"],
            "agency-rls: explain: unknown table 'policy': one of insurer,",
        ),
        (
            ["--as", "agency_w11", "contract", "999999"],
            "agency-rls: explain: no contract row with id 999999\n",
        ),
        (
            ["--as", "agency_w11", "contract", "XX-1"],
            "agency-rls: explain: no contract with policy number 'XX-1'\n",
        ),
        (
            ["--as", "agency_w11", "notice", "N01"],
            "agency-rls: explain: notice rows are named by id (a number)",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    world: World, backend_url: str, args: list[str], message: str
) -> None:
    status, out, err = explain(world, backend_url, *args)
    assert (status, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.skipif(not DBA_MODE, reason="a superuser can always SET ROLE to a principal")
def test_dba_without_backend_url_is_told_what_to_give(world: World, backend_url: str) -> None:
    status, out, err = explain(world, backend_url, "--as", "agency_w11", "contract", "1", backend=False)
    assert (status, out) == (3, "")
    assert (
        err.startswith("agency-rls: explain: the --database-url role cannot act as")
        and "--backend-url" in err
    )


@pytest.fixture
def planted_world(server: str) -> Iterator[World]:
    """A sample world of its own: planting a policy takes an exclusive lock on ``contract``, which the
    shared world's long-lived connections (the backend's, the administrator's) may block."""
    with sample_world_on(server, "explain") as built:
        yield built


@contextmanager
def planted_policy(world: World, role: str, contract_id: int) -> Iterator[None]:
    """A RESTRICTIVE policy hiding one contract from one principal: the database now disagrees with the
    model. Committed (the backend login must see it in DBA mode), dropped afterwards."""
    name = sql.Identifier("explain_test_planted_disagreement")
    with world.admin() as conn:
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(
            sql.SQL(
                "CREATE POLICY {} ON public.contract AS RESTRICTIVE FOR SELECT TO {} USING (id <> {})"
            ).format(name, sql.Identifier(world.role(role)), sql.Literal(contract_id))
        )
        try:
            yield
        finally:
            conn.execute(sql.SQL("DROP POLICY {} ON public.contract").format(name))


def test_disagreement_is_loud_and_exits_1(planted_world: World) -> None:
    world = planted_world
    backend_url = world.db.login_conninfo(world.role("rls_backend"))
    with planted_policy(world, "agency_w11", CONTRACT_IDS["NL-1003"]):
        status, out, err = explain(world, backend_url, "--as", "agency_w11", "contract", "NL-1003")
        json_status, json_out, _ = explain(
            world, backend_url, "--as", "agency_w11", "contract", "NL-1003", "--format", "json"
        )
    assert (status, err) == (1, "")
    assert out.startswith(
        "DISAGREEMENT: the reference model says agency_w11 may read contract NL-1003 (NL, direct), but the"
        f" database hid it when acting as {world.role('agency_w11')}."
    )
    assert "agency_w11 (agency principal) CAN read contract NL-1003" in out
    assert out.rstrip().endswith("model and database DISAGREE")
    report = json.loads(json_out)
    assert (json_status, report["agree"], report["model"]["visible"], report["database"]["visible"]) == (
        1,
        False,
        True,
        False,
    )
    assert report["warning"].startswith("DISAGREEMENT: ")
    # and once the policy is gone, they agree again
    assert explain(world, backend_url, "--as", "agency_w11", "contract", "NL-1003")[0] == 0


def test_readme_shows_real_output(world: World, backend_url: str) -> None:
    """The README's explain examples are this command's output on the sample world (times and the test
    database's role prefix aside), so the section stays true when the wording changes."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Explain one row (`agency-rls explain`)", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    examples = [chunk for chunk in block.split("$ agency-rls explain ")[1:]]
    assert len(examples) == 4

    def normal(text: str) -> str:
        text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<time>", text)
        text = text.replace(world.prefix, "")
        return text.replace(
            "(SET LOCAL ROLE on the backend connection)", "(SET LOCAL ROLE on the --database-url connection)"
        )

    for example in examples:
        command, expected = example.split("\n", 1)
        status, out, err = explain(world, backend_url, *command.split())
        assert (status, err) == (0, "")
        assert normal(out).rstrip() == normal(expected).rstrip(), command


def test_every_row_of_every_table_explains_for_every_principal(world: World) -> None:
    """The words cover every rule and clause of the model: no row of the sample world, for no principal,
    falls back to a bare clause name, and each verdict is the one the scenario file expects."""
    with world.admin() as conn:
        model_world = world_from_connection(conn)
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        keys = {table: id_to_key(conn, table, prefix=world.prefix) for table in TABLES}
    answer = DatabaseAnswer(False, "not asked", now)
    for principal in PRINCIPALS:
        model = _explain_view(model_world, world.role(principal), now)
        for table in TABLES:
            for row in model_world.rows(table):
                e = _explanation(
                    model_world, world.prefix, world.role(principal), table, row, now, answer, model
                )
                key = keys[table][row_key(row)]
                assert e.model_visible == (key in EXPECTED[principal][table]), (principal, table, key)
                for verdict in e.verdicts:
                    for c in verdict.conditions:
                        assert not c.text.startswith(f"{c.name}:"), (principal, table, key, verdict.rule, c)

"""``agency-rls check``: shipped scenarios pass, wrong expectations fail readably, bad files exit 2.

The command runs as users run it (typer's CliRunner), against the test server through
``--database-url`` (a new database and role prefix per file, removed afterwards) and once on a
throwaway cluster of its own. The API the pytest plugin uses (``load_scenario``,
``install_scenario``, ``compare``) is exercised directly on a scratch database.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import psycopg
import pytest
from agency_rls.scripts.cli import app
from hypothesis import HealthCheck, Phase, find, given, settings
from typer.testing import CliRunner

from agency_rls.checks.check import RowMismatch, compare, install_scenario, load_scenario
from agency_rls.cluster.database import conninfo_url
from agency_rls.reference_model.scenario import world_to_yaml
from agency_rls.reference_model.scenario_file import ScenarioError, parse_scenario
from agency_rls.reference_model.strategies import ANCHOR, worlds
from agency_rls.reference_model.world import TABLES, World
from tests.support import ScratchDatabase

SCENARIOS = sorted((Path(__file__).parents[1] / "scenarios").glob("*.yaml"))

SMALL = """\
description: W11 works under S1; both are entrusted by NL and GW1.
insurer:
  - {code: NL, line: non_life, kind: operator}
  - {code: GW1, line: non_life, kind: gateway}
agency:
  - {code: S1}
  - {code: W11}
supervision:
  - {supervising: S1, working: W11}
entrustment:
  - {agency: S1, insurer: NL}
  - {agency: S1, insurer: GW1}
  - {agency: W11, insurer: NL}
  - {agency: W11, insurer: GW1}
customer:
  - {label: ito, full_name: Ito Kenji}
  - {label: mori, full_name: Mori Akira}
contract:
  - {insurer: NL, policy_number: NL-1003, policyholder: ito}
  - {insurer: GW1, policy_number: GW1-2001, policyholder: mori, source: gateway}
contract_handler:
  - {contract: NL-1003, agency: W11}
  - {contract: GW1-2001, agency: S1}
notice:
  - {label: n1, addressee: S1, kind: pending_paperwork, contract: GW1-2001}
expect:
  agency_w11:
    contract: {sees: [NL/NL-1003]}
    notice: {sees: []}
writes:
  - name: W11 updates its customer
    as: agency_w11
    sql: UPDATE public.customer SET phone = '1' WHERE id = {customer:ito}
    expect: ok
    rows: 1
"""


#: ``check --database-url`` creates, loads and provisions its database and acts as each principal with
#: SET ROLE, all as the given login: it refuses a DBA without SUPERUSER (tests/test_managed_dba.py).
ON_A_GIVEN_SERVER = pytest.mark.needs_superuser("check --database-url acts as each principal with SET ROLE")


def server_url(server: str) -> str:
    """A libpq URL of the test server's maintenance database (what a user passes as a URL)."""
    return conninfo_url(server)


def check(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(app, ["check", *args], env=env)


def leftovers(server: str, report: list[dict[str, Any]]) -> list[str]:
    """Databases and roles of the checked files still on the server."""
    with psycopg.connect(server, autocommit=True) as conn:
        found = []
        for entry in report:
            found += [
                r[0]
                for r in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)"
                    " UNION ALL SELECT datname FROM pg_database WHERE datname = %s",
                    (entry["prefix"], entry["database"]),
                )
            ]
    return found


@ON_A_GIVEN_SERVER
def test_every_shipped_scenario_passes(server: str, tmp_path: Path) -> None:
    assert len(SCENARIOS) >= 8
    junit = tmp_path / "check.xml"
    files = [str(p) for p in SCENARIOS]
    result = check(*files, "--database-url", server_url(server), "--format", "json", "--junit", str(junit))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == files
    assert all(r["ok"] and r["mismatches"] == [] for r in report), report
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == files
    for suite, entry in zip(suites, report, strict=True):
        expected_cases = entry["principals"] * len(TABLES) + entry["writes"]
        assert entry["cases"] == expected_cases
        assert int(suite.get("tests", -1)) == len(suite.findall("testcase")) == expected_cases
        assert suite.get("failures") == suite.get("errors") == "0"
    assert leftovers(server, report) == []


@ON_A_GIVEN_SERVER
def test_the_readme_example_passes(server: str, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("<!-- scenario-example -->\n```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    result = check(str(path), "--database-url", server_url(server))
    assert result.exit_code == 0, result.output


@ON_A_GIVEN_SERVER
def test_a_wrong_expectation_fails_with_a_readable_diff(server: str, tmp_path: Path) -> None:
    wrong = SMALL.replace("contract: {sees: [NL/NL-1003]}", "contract: {sees: [NL/NL-1003, GW1/GW1-2001]}")
    wrong = wrong.replace("notice: {sees: []}", "notice: {must_see: [n1]}").replace("rows: 1", "rows: 2")
    path = tmp_path / "wrong.yaml"
    path.write_text(wrong)
    junit = tmp_path / "wrong.xml"
    result = check(str(path), "--database-url", server_url(server), "--junit", str(junit))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert (
        f"{path}: agency_w11 does not see contract GW1/GW1-2001: expected (sees);"
        " rule: agency.contract/handles+supervised_handles (reference model: hidden)"
    ) in lines
    assert (
        f"{path}: agency_w11 does not see notice n1: expected (must_see);"
        " rule: agency.notice/contract_seen (reference model: hidden)"
    ) in lines
    assert (
        f"{path}: write 'W11 updates its customer' as agency_w11: expected ok (2 rows), got ok (1 row)"
    ) in lines
    assert f"FAIL {path}: 3 mismatches" in lines
    root = ET.parse(junit).getroot()
    failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == ["agency_w11 / contract", "agency_w11 / notice", "write: W11 updates its customer"]
    assert root.get("failures") == "3"

    as_json = check(str(path), "--database-url", server_url(server), "--format", "json")
    assert as_json.exit_code == 1
    (entry,) = json.loads(as_json.stdout)
    assert entry["status"] == "fail" and entry["failed_cases"] == 3 and len(entry["mismatches"]) == 3
    first = entry["mismatches"][0]
    assert (first["principal"], first["table"], first["key"]) == ("agency_w11", "contract", "GW1/GW1-2001")
    assert first["clauses"] == {
        "agency.contract": {"entrusted": True, "handles": False, "supervised_handles": False}
    }
    assert leftovers(server, [entry]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            SMALL.replace("{code: W11}", "{code: W11"),
            "8: malformed YAML: while parsing a flow mapping, expected ',' or '}', but got ':'",
        ),
        (
            SMALL.replace("{contract: NL-1003, agency: W11}", "{contract: NL-1003, agncy: W11}"),
            "22: unknown key 'agncy' in contract_handler[0] (did you mean 'agency'?)",
        ),
        (
            SMALL.replace("notice: {sees: []}", "notice: {sees: [n2]}"),
            "29: unknown notice 'n2' in expect.agency_w11.notice.sees",
        ),
        (
            SMALL.replace("{customer:ito}", "{customer:itoh}"),
            "33: unknown customer 'itoh' in writes[0].sql (did you mean 'ito'?)",
        ),
        (
            SMALL.replace("notice:\n", "principal:\n  - {role_name: staff w11, agency: W11}\nnotice:\n"),
            "25: principal: role name 'staff w11' contains quotes, backslashes, whitespace or control"
            " characters",
        ),
    ],
    ids=["malformed-yaml", "unknown-key", "unknown-label", "unknown-label-in-write", "bad-role-name"],
)
def test_an_invalid_file_exits_2_naming_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = check(str(path), "--format", "json", env={"DATABASE_URL": None})  # no database is touched
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}:{message}"  # the cause first; consequences (a missing column) may follow
    assert all(line.startswith(f"{path}:") for line in lines)
    assert json.loads(result.stdout)[0]["status"] == "invalid"


def test_throwaway_cluster_when_no_url_is_given(tmp_path: Path) -> None:
    """One cluster for all files, a database per file, principals read through the backend login."""
    (tmp_path / "small.yaml").write_text(SMALL)
    result = check(str(tmp_path / "small.yaml"), env={"DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "1 scenario files: 1 passed"


@ON_A_GIVEN_SERVER
def test_a_fuzz_dump_is_a_scenario_checked_against_the_model(server: str, tmp_path: Path) -> None:
    """A world printed by the fuzzer, without expectations: the database must match the model."""
    world = find(
        worlds(),
        lambda w: len(w.contract) >= 5 and len(w.notice) >= 3 and any(p.restricted for p in w.principal),
        settings=settings(database=None, derandomize=True, max_examples=500, phases=[Phase.generate]),
    )
    path = tmp_path / "fuzz.yaml"
    path.write_text(world_to_yaml(world, ANCHOR))
    result = check(str(path), "--database-url", server_url(server), "--format", "json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    assert entry["principals"] == len(world.principal) and entry["writes"] == 0


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=worlds())
def test_fuzz_dumps_parse_back_to_the_same_world(world: World) -> None:
    later = ANCHOR + dt.timedelta(days=3)
    assert parse_scenario(world_to_yaml(world, ANCHOR), "dump.yaml").world(ANCHOR) == world
    replayed = parse_scenario(world_to_yaml(world, ANCHOR), "dump.yaml").world(later)
    assert world_to_yaml(replayed, later) == world_to_yaml(world, ANCHOR)


def test_the_api_the_plugin_uses(fresh_db: ScratchDatabase, tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    scenario = load_scenario(path)
    fresh_db.migrate()
    try:
        # compare acts as each principal with SET ROLE from its connection: the superuser's in either
        # mode (a DBA without SUPERUSER is no member of the principals); installing is the DBA's.
        with fresh_db.connect() as conn, fresh_db.superuser_connect() as reader:
            loaded = install_scenario(conn, scenario, prefix=fresh_db.prefix)
            assert loaded.role("agency_w11") == fresh_db.prefix + "agency_w11"
            assert loaded.id("contract", "NL/NL-1003") == loaded.id("contract", "NL-1003") == 1
            assert compare(reader, loaded) == []
            with pytest.raises(RuntimeError, match="already holds rows"):
                install_scenario(conn, scenario, prefix=fresh_db.prefix)
            # A change behind the loaded world's back is a mismatch, explained by the model's rule.
            conn.execute(
                "UPDATE public.contract_handler SET agency_id = %s WHERE contract_id = %s",
                (loaded.id("agency", "W11"), loaded.id("contract", "GW1-2001")),
            )
            found = compare(reader, loaded, principals=["agency_w11"])
            assert [str(m) for m in found if isinstance(m, RowMismatch) and m.table == "contract"] == [
                f"{path}: agency_w11 sees contract GW1/GW1-2001: not expected;"
                " rule: agency.contract/handles+supervised_handles (reference model: hidden)"
            ]
            loaded = install_scenario(conn, scenario, prefix=fresh_db.prefix, replace=True)
            assert compare(reader, loaded) == []
    finally:
        fresh_db.downgrade_base()
    assert fresh_db.leftover_roles() == []


def test_named_cases_gather_per_principal_and_count_as_listed() -> None:
    """must_see / must_not_see as {case name: [keys]}: the rows count as listed, the names make cases."""
    text = SMALL.replace(
        "    contract: {sees: [NL/NL-1003]}\n    notice: {sees: []}\n",
        "    contract:\n"
        "      sees: [NL/NL-1003]\n"
        "      must_see: {'W11 reads its own': [NL-1003]}\n"
        "      must_not_see: {'incident 1: W11 reads S1s gateway business': [GW1-2001]}\n"
        "    notice:\n"
        "      must_not_see: {'incident 1: W11 reads S1s gateway business': [n1]}\n",
    )
    scenario = parse_scenario(text, "named.yaml")
    contract = scenario.expectation("agency_w11", "contract")
    assert contract is not None
    gateway, own = scenario.id("contract", "GW1-2001"), scenario.id("contract", "NL-1003")
    assert (contract.must_see, contract.must_not_see) == ({own}, {gateway})
    mine, incident = sorted(scenario.cases, key=lambda c: c.name)
    assert (mine.name, mine.must_see, mine.must_not_see, mine.expected_count) == (
        "W11 reads its own",
        {"contract": {own}},
        {},
        1,
    )
    assert incident.principal == "agency_w11" and incident.expected_count == 0
    assert incident.must_not_see == {"contract": {gateway}, "notice": {scenario.id("notice", "n1")}}
    assert incident.tables == ("contract", "notice")
    with pytest.raises(
        ScenarioError, match=r"named.yaml:\d+: expect\.agency_w11\.notice\.must_not_see\.incident"
    ):
        parse_scenario(text.replace("[n1]}", "n1}"), "named.yaml")  # a case lists keys

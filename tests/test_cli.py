"""The agency-rls command as users run it: --help everywhere, demo end to end, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from agency_rls.scripts.cli import app
from typer.testing import CliRunner

from tests.support import ScratchDatabase

COMMANDS = [
    "migrate",
    "downgrade",
    "current",
    "history",
    "provision",
    "demo",
    "matrix",
    "check",
    "seed",
    "bench",
    "bench-writes",
    "lint",
    "diff",
    "drift",
    "alembic",
    "revision",
    "explain",
]


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script's code in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from agency_rls.scripts.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_demo_on_a_throwaway_cluster_ignores_stray_libpq_variables() -> None:
    """With no explicit URL the demo never follows PG* variables into some other server."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PGHOST="/nonexistent-socket-dir", PGPORT="1", PGDATABASE="production")
    result = run_command("demo", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    checks = report["incident_checks"]
    assert checks and all(c["actual"] == c["expected"] for c in checks)
    leaks = [c for c in checks if c["label"].startswith("incident") and c["expected"] == 0]
    assert len(leaks) >= 5
    assert report["visible_rows"]["agency_w11"]["contract"] == 2


@pytest.mark.needs_superuser("demo --database-url acts as each principal with SET ROLE; it refuses a DBA")
def test_demo_into_an_explicit_database_and_refuses_a_non_empty_one(fresh_db: ScratchDatabase) -> None:
    first = CliRunner().invoke(app, ["demo", "--database-url", fresh_db.url, "--format", "json"])
    try:
        assert first.exit_code == 0, first.output
        assert json.loads(first.stdout)["ok"] is True
        second = CliRunner().invoke(app, ["demo", "--database-url", fresh_db.url])
        assert second.exit_code == 1
        assert second.stderr.strip() == (
            "agency-rls: the demo needs an empty database; this one already holds agencies"
        )
    finally:
        fresh_db.downgrade_base()


def test_migrate_current_downgrade_through_the_command(fresh_db: ScratchDatabase) -> None:
    runner = CliRunner()
    url = fresh_db.url
    assert (
        runner.invoke(app, ["migrate", "--database-url", url, "--role-prefix", fresh_db.prefix]).exit_code
        == 0
    )
    current = runner.invoke(app, ["current", "--database-url", url])
    assert current.exit_code == 0 and "0009 (head)" in current.stdout
    assert runner.invoke(app, ["downgrade", "base", "--yes", "--database-url", url]).exit_code == 0
    assert fresh_db.leftover_roles() == []


def test_a_bad_prefix_is_a_one_line_error() -> None:
    result = CliRunner().invoke(
        app,
        ["migrate", "--sql", "--role-prefix", "Bad-Prefix", "--database-url", "postgresql://x@localhost/x"],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("agency-rls: role prefix 'Bad-Prefix' is not allowed")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_server_is_a_one_line_error() -> None:
    result = CliRunner().invoke(
        app, ["provision", "--database-url", "postgresql://nobody@/x?host=/nonexistent"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("agency-rls: ")
    assert len(result.stderr.strip().splitlines()) == 1

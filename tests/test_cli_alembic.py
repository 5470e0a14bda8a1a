"""``agency-rls alembic ARGS...``: any Alembic command line on the package's own migrations.

No ``alembic.ini`` is read: the configuration comes from ``agency_rls.migrations.runner.alembic_config``
(script and version locations inside the installed package), the database from ``--database-url``,
``DATABASE_URL`` or the libpq environment, like every other command. Runs in-process (typer's
CliRunner) against the suite's server; tests/test_install.py runs it again from a built wheel.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agency_rls.migrations.runner import alembic_config
from agency_rls.scripts.cli import app
from alembic.script import ScriptDirectory
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner, Result

from tests.support import WALKS_REVISIONS, ScratchDatabase


def run_alembic(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, ["alembic", *args], env=env)


def test_history_lists_every_revision_of_the_package_without_an_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a directory whose alembic.ini points elsewhere: the package's migrations, not the ini's."""
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/nowhere\n")
    monkeypatch.chdir(tmp_path)
    result = run_alembic("history")
    assert result.exit_code == 0, result.output
    revisions = [
        script.revision for script in ScriptDirectory.from_config(alembic_config(None)).walk_revisions()
    ]
    assert len(revisions) >= 3
    listed = [line.split(",")[0] for line in result.stdout.splitlines() if " -> " in line]
    assert [entry.split(" -> ")[1].split()[0] for entry in listed] == revisions
    assert listed[-1].startswith("<base> -> 0001")


@WALKS_REVISIONS  # plain Alembic has no shortcut: it walks every revision, even on a new database
def test_upgrade_with_x_role_prefix_then_current_and_downgrade_through_every_url_source(
    fresh_db: ScratchDatabase,
) -> None:
    """--database-url with ``-x role_prefix``; the libpq environment; DATABASE_URL: one database."""
    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    up = run_alembic(
        "--database-url", fresh_db.url, "-x", f"role_prefix={fresh_db.prefix}", "upgrade", "head"
    )
    assert up.exit_code == 0, up.output
    assert "Running upgrade  -> 0001" in up.stderr  # Alembic's progress lines, as its alembic.ini sets up
    with fresh_db.connect() as conn:
        assert conn.execute("SELECT agency_rls.role_prefix()").fetchone() == (fresh_db.prefix,)

    params = conninfo_to_dict(fresh_db.conninfo)
    libpq = {
        "DATABASE_URL": None,
        "PGHOST": str(params.get("host") or ""),
        "PGPORT": str(params.get("port") or ""),
        "PGUSER": str(params.get("user") or ""),
        "PGDATABASE": fresh_db.name,
        "PGPASSWORD": str(params.get("password") or "") or None,
    }
    current = run_alembic("current", env=libpq)
    assert current.exit_code == 0, current.output
    assert current.stdout.strip() == f"{head} (head)"

    down = run_alembic("downgrade", "base", env={"DATABASE_URL": fresh_db.url})
    assert down.exit_code == 0, down.output
    assert fresh_db.leftover_roles() == []


def test_offline_sql_takes_the_role_prefix_from_x() -> None:
    result = run_alembic("-x", "role_prefix=crm_", "upgrade", "head", "--sql")
    assert result.exit_code == 0, result.output
    assert 'AUTHORIZATION "crm_rls_owner"' in result.stdout


def test_failures_are_one_line_and_alembic_usage_errors_exit_2() -> None:
    unknown = run_alembic("upgrade", "no_such_revision", "--sql")
    assert unknown.exit_code == 1
    reason = [line for line in unknown.stderr.splitlines() if not line.startswith("INFO ")]  # progress lines
    assert reason == ["agency-rls: Can't locate revision identified by 'no_such_revision'"]

    for args in ([], ["-c", "alembic.ini", "history"], ["no_such_command"]):
        result = run_alembic(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "usage: agency-rls alembic" in result.stderr


def test_help_is_this_commands_and_alembic_help_passes_through() -> None:
    ours = run_alembic("--help")
    assert ours.exit_code == 0 and "--database-url" in ours.stdout and "ALEMBIC_ARGS" in ours.stdout
    theirs = run_alembic("upgrade", "--help")
    assert theirs.exit_code == 0
    assert theirs.stdout.startswith("usage: agency-rls alembic upgrade")

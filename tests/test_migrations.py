"""Migrations: up, down to base, up again, with and without data; offline SQL; failures are atomic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision
from agency_rls.schema import PROTECTED_TABLES
from psycopg import sql

from agency_rls.checks.sample_world import install_sample_world
from tests.catalog import snapshot
from tests.support import WALKS_REVISIONS, ScratchDatabase


def test_upgrade_downgrade_upgrade_without_data_restores_the_catalog(fresh_db: ScratchDatabase) -> None:
    with fresh_db.connect() as conn:
        before = snapshot(conn, fresh_db.prefix)
    fresh_db.migrate()
    with fresh_db.connect() as conn:
        migrated = snapshot(conn, fresh_db.prefix)
    assert migrated != before
    management = [role for (role,) in migrated["roles"] if role != fresh_db.dba]  # the harness's DBA aside
    assert len(management) == 7  # the management roles of this prefix
    fresh_db.downgrade_base()
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == before
    fresh_db.migrate()
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == migrated
    fresh_db.downgrade_base()
    assert fresh_db.leftover_roles() == []


def test_downgrade_with_data_drops_principal_roles_and_migrate_restores(fresh_db: ScratchDatabase) -> None:
    with fresh_db.connect() as conn:
        before = snapshot(conn, fresh_db.prefix)
    fresh_db.migrate()
    with fresh_db.connect() as conn:
        loaded = install_sample_world(conn, prefix=fresh_db.prefix)  # loads, then provisions
        provision(conn, login=True)
    principals = {loaded.role(p) for p in loaded.principals}
    assert len(principals) == 15, "provisioning created the principal roles"
    assert principals <= set(fresh_db.leftover_roles())
    fresh_db.downgrade_base()
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == before
    assert fresh_db.leftover_roles() == []
    fresh_db.migrate()
    with fresh_db.connect() as conn:
        tables = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            " AND relforcerowsecurity"
        ).fetchall()
    assert {t[0] for t in tables} == set(PROTECTED_TABLES)
    fresh_db.downgrade_base()


def test_offline_sql_is_printed_for_review_and_changes_nothing(
    fresh_db: ScratchDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_db.connect() as conn:
        before = snapshot(conn, fresh_db.prefix)
    migrations_runner.upgrade(fresh_db.url, "head", role_prefix=fresh_db.prefix, sql=True)
    printed = capsys.readouterr().out
    assert "CREATE TABLE public.contract" in printed
    assert "CREATE POLICY contract_entrustment_guard ON public.contract" in printed
    assert f'TO "{fresh_db.prefix}rls_agency", "{fresh_db.prefix}rls_insurer"' in printed
    assert "FORCE ROW LEVEL SECURITY" in printed
    assert "{{" not in printed
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == before


def test_a_failing_migration_leaves_the_previous_state(fresh_db: ScratchDatabase) -> None:
    """A foreign role squatting a management name makes 0002 fail; 0001 is rolled back with it."""
    squatter = fresh_db.role("rls_helper")
    with fresh_db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(squatter)))
        before = snapshot(conn, fresh_db.prefix)
    with pytest.raises(psycopg.errors.RaiseException, match="is not an agency-rls management role"):
        fresh_db.migrate()
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == before
        assert conn.execute("SELECT to_regclass('public.contract')").fetchone() == (None,)


def test_the_stored_prefix_wins_and_a_different_one_is_refused(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    with pytest.raises(SystemExit, match="migrated with role prefix"):
        migrations_runner.upgrade(fresh_db.url, "head", role_prefix="other_")
    with fresh_db.connect() as conn:
        assert conn.execute("SELECT agency_rls.role_prefix()").fetchone() == (fresh_db.prefix,)
    fresh_db.downgrade_base()


@WALKS_REVISIONS  # plain Alembic has no shortcut: it walks every revision, even on a new database
def test_plain_alembic_works_from_the_repository_root(fresh_db: ScratchDatabase) -> None:
    """DBAs use Alembic directly: alembic.ini at the root, -x for the URL and the prefix."""
    root = Path(__file__).parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENCY_RLS_ROLE_PREFIX")}

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"database_url={fresh_db.url}", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    upgraded = alembic("-x", f"role_prefix={fresh_db.prefix}", "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    current = alembic("current")
    assert "0009 (head)" in current.stdout, current.stderr
    with fresh_db.connect() as conn:
        assert conn.execute("SELECT agency_rls.role_prefix()").fetchone() == (fresh_db.prefix,)
    downgraded = alembic("downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    assert fresh_db.leftover_roles() == []

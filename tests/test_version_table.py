"""Issue 10, item 3: agency-rls's version table in a schema of its own, beside a host's Alembic history.

- a new database keeps agency-rls's version table in ``agency_rls_version``, never in ``public``, and
  ``downgrade base`` removes it with its schema;
- a database migrated before (version table in ``public``) is read where it is by ``current`` and moved
  by the next ``migrate``;
- the README's worked example runs as written: a host Alembic project (its own revision, its own table,
  its own ``public.alembic_version``, even a revision id agency-rls uses too) and agency-rls, upgraded and
  downgraded in either order, each leaving the other intact;
- a host table named like one of agency-rls's stops ``migrate`` in one line, before anything changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from agency_rls.migrations import runner as migrations_runner
from agency_rls.migrations.version_table import VERSION_SCHEMA
from agency_rls.scripts.cli import app
from typer.testing import CliRunner

from agency_rls.cluster.database import sqlalchemy_url
from tests.catalog import snapshot
from tests.support import ScratchDatabase

README = Path(__file__).resolve().parent.parent / "README.md"


def where_versions_are(db: ScratchDatabase) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class AS c WHERE c.relname = 'alembic_version' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_new_database_keeps_the_version_table_in_its_own_schema_and_base_removes_it(
    fresh_db: ScratchDatabase,
) -> None:
    with fresh_db.connect() as conn:
        before = snapshot(conn, fresh_db.prefix)
    fresh_db.migrate()
    assert where_versions_are(fresh_db) == [f"{VERSION_SCHEMA}.alembic_version"]
    assert migrations_runner.migrated_revision(fresh_db.url) == migrations_runner.head_revision()
    fresh_db.downgrade_base()
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == before  # agency_rls_version included


def test_a_version_table_left_in_public_is_read_there_and_moved_by_the_next_migrate(
    fresh_db: ScratchDatabase,
) -> None:
    fresh_db.migrate()
    head = migrations_runner.head_revision()
    with fresh_db.connect() as conn:  # as databases migrated before this change have it
        conn.execute(f"ALTER TABLE {VERSION_SCHEMA}.alembic_version SET SCHEMA public")
        conn.execute(f"DROP SCHEMA {VERSION_SCHEMA}")
    try:
        current = CliRunner().invoke(app, ["current", "--database-url", fresh_db.url])
        assert current.exit_code == 0, current.output
        assert f"{head} (head)" in current.stdout
        assert where_versions_are(fresh_db) == ["alembic_version"]  # public: current changes nothing
        assert migrations_runner.migrated_revision(fresh_db.url) == head

        migrate = CliRunner().invoke(app, ["migrate", "--database-url", fresh_db.url])
        assert migrate.exit_code == 0, migrate.output
        assert where_versions_are(fresh_db) == [f"{VERSION_SCHEMA}.alembic_version"]
        assert migrations_runner.migrated_revision(fresh_db.url) == head
    finally:
        fresh_db.downgrade_base()
    assert where_versions_are(fresh_db) == [] and fresh_db.leftover_roles() == []


HOST_ENV = """\
import os

from alembic import context
from sqlalchemy import create_engine, pool

engine = create_engine(os.environ["DATABASE_URL"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""

#: The host's first revision: its id is one agency-rls uses too, and its table is its own.
HOST_REVISION = """\
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("host_item", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))


def downgrade():
    op.drop_table("host_item")
"""


def host_project(root: Path) -> Path:
    """An Alembic project of its own: alembic.ini, env.py reading DATABASE_URL, one revision."""
    (root / "host_migrations" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/host_migrations\n")
    (root / "host_migrations" / "env.py").write_text(HOST_ENV)
    (root / "host_migrations" / "versions" / "0001_host_items.py").write_text(HOST_REVISION)
    return root


def readme_host_commands() -> list[str]:
    """The README's worked example: the shell lines of the block after <!-- host-alembic-example -->."""
    pattern = re.compile(r"<!-- host-alembic-example -->\n```sh\n(.*?)\n```", re.DOTALL)
    found = pattern.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1
    return [line.split("#")[0].strip() for line in found[0].splitlines() if line.strip()]


def test_the_readme_host_project_example_runs_in_either_order(
    fresh_db: ScratchDatabase, tmp_path: Path
) -> None:
    lines = readme_host_commands()
    assert lines[0].startswith("export DATABASE_URL=")
    host_up, rls_up, host_current, rls_current, rls_down, host_down = lines[1:]
    assert rls_up == "agency-rls migrate --role-prefix crm_"
    root = host_project(tmp_path)
    env = {
        **os.environ,
        "DATABASE_URL": sqlalchemy_url(fresh_db.url),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def run(line: str) -> str:
        # Each test database has its own role prefix (roles are cluster-wide): crm_ becomes it.
        result = subprocess.run(
            line.replace("crm_", fresh_db.prefix),
            shell=True,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, (line, result.stderr)
        return result.stdout

    def tables() -> set[str]:
        with fresh_db.connect() as conn:
            rows = conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname IN ('public', %s)",
                (VERSION_SCHEMA,),
            ).fetchall()
        return {row[0] for row in rows}

    head = migrations_runner.head_revision()
    ours = {f"{VERSION_SCHEMA}.alembic_version", "contract", "principal"}
    with fresh_db.connect() as conn:
        before = snapshot(conn, fresh_db.prefix)
    try:
        # As the README: the host first, agency-rls beside it, agency-rls removed, then the host.
        run(host_up)
        run(rls_up)
        assert {"host_item", "alembic_version"} | ours <= tables()
        assert run(host_current).strip() == "0001 (head)"
        assert f"{head} (head)" in run(rls_current)
        run(rls_down)
        assert tables() == {"host_item", "alembic_version"}
        assert run(host_current).strip() == "0001 (head)"
        run(host_down)
        assert tables() == {"alembic_version"}  # Alembic keeps an empty version table at base

        # The other way round: agency-rls first, the host beside it, the host removed, then agency-rls.
        run(rls_up)
        run(host_up)
        assert {"host_item", "alembic_version"} | ours <= tables()
        run(host_down)
        assert f"{head} (head)" in run(rls_current)
        assert "host_item" not in tables() and ours <= tables()
        run(rls_down)
        assert tables() == {"alembic_version"}
    finally:
        if migrations_runner.migrated_revision(fresh_db.url) is not None:
            fresh_db.downgrade_base()
    with fresh_db.connect() as conn:
        conn.execute("DROP TABLE public.alembic_version")
        assert snapshot(conn, fresh_db.prefix) == before
    assert fresh_db.leftover_roles() == []


def test_a_host_table_named_like_one_of_ours_stops_migrate_in_one_line(fresh_db: ScratchDatabase) -> None:
    with fresh_db.connect() as conn:
        conn.execute("CREATE TABLE public.contract (id bigint PRIMARY KEY, what text)")
        before = snapshot(conn, fresh_db.prefix)
    result = CliRunner().invoke(
        app, ["migrate", "--database-url", fresh_db.url, "--role-prefix", fresh_db.prefix]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "agency-rls: table public.contract exists already and agency-rls did not create it: agency-rls needs "
        "tables insurer, agency, supervision, entrustment, customer, contract, contract_handler, notice, "
        "notice_receipt, principal in schema public and schema agency_rls for itself; install it into a "
        "database of its own, or move or rename yours first (e.g. ALTER TABLE public.contract SET SCHEMA app); "
        "nothing changed"
    )
    assert len(result.stderr.splitlines()) == 1
    with fresh_db.connect() as conn:
        assert snapshot(conn, fresh_db.prefix) == before
    assert fresh_db.leftover_roles() == []

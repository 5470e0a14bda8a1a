"""One definition of every rule: the migrations must apply exactly what the definition says.

- The tables a migrated database has are the ones schema/tables.py defines (Alembic's own
  autogenerate comparison finds no difference).
- A database migrated through every revision has the same catalog (policies as the server renders
  them, function bodies and settings, triggers, constraints, grants, RLS flags, roles, their
  attributes, markers and memberships) as one built by applying the current rls_policies/sql
  definition directly; changing a rule without a new revision (which records the SQL that moves
  the previous revision to the new definition) fails here. And the definition's teardown undoes it.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from agency_rls.migrations import runner as migrations_runner
from agency_rls.migrations.definition_catalog import DEFINITION_QUERIES, Catalog
from agency_rls.migrations.definition_catalog import definition_catalog as read_definition_catalog
from agency_rls.rls_policies.definition import (
    SCOPE_COPY_COLUMNS,
    SCOPE_INDEXES,
    TEARDOWN_FILE,
    read_template,
    render,
    security_template,
)
from agency_rls.rls_policies.names import ManagementRoles
from agency_rls.schema import metadata
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agency_rls.cluster.database import sqlalchemy_url
from tests.support import WALKS_REVISIONS, ScratchDatabase, create_database

VERSIONS = Path(__file__).parent.parent / "migrations" / "versions"


def security_addition(diff: object) -> bool:
    """A column or index the security definition adds to the domain tables (scope_columns.sql)."""
    if not isinstance(diff, tuple):
        return False
    if diff[0] == "remove_column":
        _, _schema, table, column = diff
        return column.name in SCOPE_COPY_COLUMNS.get(table, ())
    if diff[0] == "remove_index":
        return diff[1].name in SCOPE_INDEXES
    return False


def test_migrated_tables_match_the_schema_definition(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        # With agency_rls as the default schema, 'public' is compared by name, as metadata names it.
        engine = sa.create_engine(
            sqlalchemy_url(fresh_db.url),
            poolclass=sa.pool.NullPool,
            connect_args={"options": "-c search_path=agency_rls"},
        )
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, kind, _parents: kind != "schema" or name == "public",
                    "compare_server_default": True,
                },
            )
            diff = [
                d
                for d in compare_metadata(context, metadata)
                if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")
                and not security_addition(d)
            ]
        assert diff == []
    finally:
        fresh_db.downgrade_base()


def definition_catalog(db: ScratchDatabase) -> Catalog:
    """DEFINITION_QUERIES on ``db``, with its role prefix and database name written as <p> and <db>."""
    with db.connect() as conn:
        return read_definition_catalog(conn, db.prefix)


@WALKS_REVISIONS
def test_migrating_through_every_revision_gives_the_current_definition(server: str) -> None:
    migrated, fresh = create_database(server, "drift_migrated"), create_database(server, "drift_fresh")
    try:
        # Revision 0001, then every revision walked (migrate() on a new database would install the
        # current definition directly: the very shortcut this test vouches for).
        migrations_runner.upgrade(migrated.url, "0001", role_prefix=migrated.prefix)
        migrations_runner.upgrade(migrated.url, "head", role_prefix=migrated.prefix)
        assert migrations_runner.migrated_revision(migrated.url) == migrations_runner.head_revision()
        migrations_runner.upgrade(fresh.url, "0001", role_prefix=fresh.prefix)
        roles = ManagementRoles(fresh.prefix)
        with fresh.connect() as conn:
            conn.execute(render(security_template(), roles))
        try:
            by_revisions, by_definition = definition_catalog(migrated), definition_catalog(fresh)
            for part in DEFINITION_QUERIES:
                assert by_revisions[part] == by_definition[part], part
        finally:
            with fresh.connect() as conn:
                conn.execute(render(read_template(TEARDOWN_FILE), roles))
                assert conn.execute("SELECT to_regnamespace('agency_rls')").fetchone() == (None,)
            assert fresh.leftover_roles() == []
            migrations_runner.downgrade(fresh.url, "base")
            migrated.downgrade_base()
    finally:
        fresh.drop()
        migrated.drop()

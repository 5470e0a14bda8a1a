"""One definition of every rule: the migrations must apply exactly what the definition says.

- The tables a migrated database has are the ones schema/tables.py defines (Alembic's own
  autogenerate comparison finds no difference).
- The SQL the head revision recorded is the current rls_policies/sql definition; changing a rule
  without a new revision (which records the new SQL) fails here.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from rls_policies.definition import TEARDOWN_FILE, read_template, security_template
from schema import metadata
from scripts.database import sqlalchemy_url
from tests.support import ScratchDatabase

VERSIONS = Path(__file__).parent.parent / "migrations" / "versions"


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
            ]
        assert diff == []
    finally:
        fresh_db.downgrade_base()


def test_the_head_revision_recorded_the_current_definition() -> None:
    recorded = (VERSIONS / "0002_row_level_security.sql").read_text(encoding="utf-8")
    assert recorded.endswith(security_template())
    recorded_down = (VERSIONS / "0002_row_level_security_down.sql").read_text(encoding="utf-8")
    assert recorded_down.endswith(read_template(TEARDOWN_FILE))

"""A loader role: loads and maintenance without SUPERUSER or BYPASSRLS.

Loaders used to be superusers: row level security is forced on every table, so nothing else could
write them. ``<prefix>rls_loader`` is NOLOGIN and policies open every row to it, to read and write;
the DBA and ETL logins join it. The SQL is recorded beside it (``0005_upgrade.sql``,
``0005_downgrade.sql``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0005_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0005_downgrade.sql")

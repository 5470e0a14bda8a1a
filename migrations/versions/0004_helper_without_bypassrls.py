"""The scope functions' owner reads across scope through policies that name it, not BYPASSRLS.

A DBA without SUPERUSER (managed PostgreSQL) cannot create a BYPASSRLS role on PostgreSQL 15;
with this revision no role of the project bypasses row level security. The SQL is recorded
beside it (``0004_upgrade.sql``, ``0004_downgrade.sql``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0004_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0004_downgrade.sql")

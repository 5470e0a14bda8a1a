"""Management roles, scope functions, forced row level security, policies and grants.

The SQL this revision applies is recorded beside it (``0002_upgrade.sql``, a
frozen copy of ``rls_policies/sql/`` at this revision), so later changes to the current
definition never rewrite history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0002_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0002_downgrade.sql")

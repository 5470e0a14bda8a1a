"""The domain tables of scope-rules.md, plain: no roles or policies yet.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0001_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0001_downgrade.sql")

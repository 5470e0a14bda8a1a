"""Policies whose cost does not grow with the caller's scope: handler links copied onto rows.

Until 0005 every statement built the array of all ids the caller may see. Contract and customer
rows now carry their handler links (kept exact by statement-level triggers), and the policies
compare them on a GIN index with the caller's agency and the agencies it supervises, re-checking
each link's validity at every statement. The SQL is recorded beside it (``0006_upgrade.sql``,
``0006_downgrade.sql``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0006_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0006_downgrade.sql")

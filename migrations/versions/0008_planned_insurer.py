"""Insurer principals planned for their own insurer.

The insurer policies on contract, contract_handler, notice and customer compare the row with
``agency_rls.planned_insurer_id()``, which the planner evaluates once while planning (as 0007 did
for agencies), and check at every statement that the folded insurer is the caller's (a plan folded
with no insurer, made before the caller's principal row was visible, asks the statement alone: it
would otherwise return nothing for the life of the session). The planner
then reads the insurer's share of each table from pg_stats (two thirds of the contracts for the
largest insurer) instead of assuming one twentieth: the newest-contracts page stops being a
parallel plan that read 17 times the hand-written query's buffers. Nobody's rows change
(``agency-rls diff 0007 0008``). Written by ``agency-rls revision``; the SQL is recorded beside it
(``0008_upgrade.sql``, ``0008_downgrade.sql``; role names as placeholders) and never changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0008_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0008_downgrade.sql")

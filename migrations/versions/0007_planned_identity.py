"""The caller's agencies and restriction folded into the plan; one set-based refresh of the copies.

The contract and customer policies also compare the copied handler links with
``agency_rls.planned_agency_ids()``, which the planner evaluates once while planning, so that it
estimates each principal's own share of the table (it assumed 1% for everyone); ORed with the
agencies of the statement, so that a plan made earlier never hides a row. Seconded staff plan with
their insurer as an equality (``agency_rls.planned_restriction()``). The refresh provision runs
after loads with triggers off becomes ``agency_rls.refresh_all_scope_copies()``. The SQL is
recorded beside it (``0007_upgrade.sql``, ``0007_downgrade.sql``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0007_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0007_downgrade.sql")

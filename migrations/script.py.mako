"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    run_recorded(__file__, "${up_revision}_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "${up_revision}_downgrade.sql")

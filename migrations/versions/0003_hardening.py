"""Hardening: a role prefix belongs to one database, principal rows name new roles only,
provisioning locks a table principals cannot lock.

The SQL this revision applies is recorded beside it (``0003_upgrade.sql``,
``0003_downgrade.sql``): the change from revision 0002 to the definition in
``rls_policies/sql/`` at this revision. ``tests/test_definition_drift.py`` checks that a
database migrated through every revision has the same catalog as one built from the
current definition directly.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0003_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0003_downgrade.sql")

<%!
from agency_rls.migrations.autogen import write_recorded_sql_beside
%>\
<%
# The .py below loads these two files: written here, empty but for their header, unless
# autogenerate has just written them (agency_rls.migrations.autogen).
write_recorded_sql_beside(config, up_revision, message)
%>\
"""${message}

The SQL this revision applies is recorded beside it (``${up_revision}_upgrade.sql``,
``${up_revision}_downgrade.sql``; role names as placeholders). Written by ``agency-rls revision``
(or ``alembic revision --autogenerate``) from the difference between the definition recorded at the
previous revision and ``rls_policies/sql/``, or empty for SQL written by hand (``--empty``,
``alembic revision``). Once released, the recorded SQL never changes.

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = ${repr(up_revision).replace("'", '"')}
down_revision = ${repr(down_revision).replace("'", '"')}
branch_labels = ${repr(branch_labels).replace("'", '"')}
depends_on = ${repr(depends_on).replace("'", '"')}


def upgrade() -> None:
    run_recorded(__file__, "${up_revision}_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "${up_revision}_downgrade.sql")

"""Scope refresh functions in PL/pgSQL, with generic plans; the principal twin check on an index.

``agency_rls.refresh_contract_scope(bigint[])`` and ``refresh_customer_scope(bigint[])``, which the
statement-level triggers call on every write to contract_handler, contract and customer, were
``LANGUAGE sql ... BEGIN ATOMIC`` functions: PostgreSQL 15 plans a SQL function's statements again
at every call (about 0.3 ms for each UPDATE). They are now PL/pgSQL with the same statements, in the
same order (lock the rows, then read), still writing only rows whose copy differs, and with
``plan_cache_mode = force_generic_plan``, so a session plans them once: with the default mode the
plan cache kept choosing a custom plan for every call (a 1-element array's custom plan is estimated
cheaper than the generic plan's 10 elements). The generic plan is the one a 10,000-row batch gets as
a custom plan too (an index lookup per element). Measured on 1,000,000 contracts (BENCHMARKS.md,
"Revision 0009"): in a session that keeps its plans, a single-row write with the copies costs
0.5-1.4 ms instead of 1.3-3.7 ms (p50; the plain write 0.1-0.3 ms); batches unchanged. Nobody's
rows change.

The principal rows' insert trigger looks for a case-insensitive twin by ``lower(role_name)``; it
scanned the table for every inserted row, so provisioning 10,000 principals took 26 s (quadratic).
``principal_role_name_lower_idx`` answers it (2.8 s with provision's batched inserts).

Written by ``agency-rls revision``; the SQL is recorded beside it (``0009_upgrade.sql``,
``0009_downgrade.sql``; role names as placeholders) and never changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from agency_rls.migrations.sql_ops import run_recorded

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_recorded(__file__, "0009_upgrade.sql")


def downgrade() -> None:
    run_recorded(__file__, "0009_downgrade.sql")

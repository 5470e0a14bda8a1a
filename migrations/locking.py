"""Take the locks a migration needs before its first change: all at once, or none and retry.

Why: a revision changes policies, grants and owners table after table while principals keep
reading. A reader locks the table it queries first and then, inside its policies' scope functions,
the tables those read (principal, entrustment, supervision, contract_handler, …). A migration that
locks the same tables one by one, in its own order, deadlocks with such a reader, and PostgreSQL
aborts one of the two: sometimes the migration. Locking every table of the schema in one attempt
that gives up quickly (and releases what it got) cannot deadlock; the attempt is repeated until it
succeeds or ``wait_seconds`` have passed. Readers then queue behind the migration and see the
state before or after it, never between (attack 40).
"""

from __future__ import annotations

import random
import time

from agency_rls.schema import ALL_TABLES
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

#: lock_not_available (lock_timeout), deadlock_detected
_RETRY_SQLSTATES = frozenset({"55P03", "40P01"})


def lock_tables(
    connection: Connection,
    *,
    wait_seconds: float = 120.0,
    attempt_ms: int = 500,
    later_wait_seconds: float = 30.0,
) -> None:
    """ACCESS EXCLUSIVE on every existing table of the spec, in one statement, inside ``connection``'s
    transaction; retried in a savepoint until ``wait_seconds`` have passed, then SystemExit. Any
    later lock wait of the transaction gives up after ``later_wait_seconds`` (or
    ``AGENCY_RLS_MIGRATION_LOCK_WAIT`` seconds; the transaction then fails and changes nothing)."""
    present = [
        table
        for table in ALL_TABLES  # one fixed order: schema.tables is the one list
        if connection.execute(text("SELECT to_regclass(:name)"), {"name": f"public.{table}"}).scalar()
        is not None
    ]
    if not present:
        return
    statement = text(
        "LOCK TABLE " + ", ".join(f"public.{table}" for table in present) + " IN ACCESS EXCLUSIVE MODE"
    )
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with connection.begin_nested():
                connection.execute(
                    text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{attempt_ms}ms"}
                )
                connection.execute(statement)
            break
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) not in _RETRY_SQLSTATES:
                raise
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"agency-rls: could not lock the tables within {wait_seconds:.0f} s: other sessions keep "
                    "them busy (see pg_stat_activity); nothing changed"
                ) from None
            time.sleep(random.uniform(0.02, 0.2))
    # Every later wait stays bounded too: a principal's open transaction can hold what the rest of
    # the migration needs (its own large object, its role), and waiting forever there would hold
    # every table's lock, and so every reader, for as long as the principal likes.
    connection.execute(
        text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{int(later_wait_seconds * 1000)}ms"}
    )

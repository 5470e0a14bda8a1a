"""Rows the current transaction has updated so far, per table, as the backend counts them.

Why: seed (the rows provision's repair rewrote after a load with triggers off) and bench-writes (the
copies a write's triggers refreshed) both read the difference of these counts around a step, inside
one transaction; ``pg_stat_xact_user_tables`` counts it without reading a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

__all__ = ["rows_updated"]


def rows_updated(conn: psycopg.Connection[Any], tables: Sequence[str]) -> dict[str, int]:
    """Per table of ``public`` named in ``tables``: rows updated so far in this transaction (0 if none)."""
    rows = conn.execute(
        "SELECT relname, n_tup_upd FROM pg_catalog.pg_stat_xact_user_tables"
        " WHERE schemaname = 'public' AND relname = ANY (%s)",
        (list(tables),),
    ).fetchall()
    found = {str(name): int(count) for name, count in rows}
    return {table: found.get(table, 0) for table in tables}

"""The little of DB-API this package needs, so that psycopg and SQLAlchemy's pools share one code path.

Both a psycopg ``Connection`` and SQLAlchemy's adapted asyncio psycopg connection (whose methods
are synchronous inside SQLAlchemy's greenlet) have ``cursor()``, ``rollback()``, a writable
``autocommit`` and psycopg's ``info``. Raw psycopg errors propagate at this level (SQLAlchemy
wraps them only above the pool).
"""

from __future__ import annotations

from typing import Any, Protocol

from psycopg.pq import TransactionStatus


class DBAPIConnection(Protocol):
    """A psycopg connection, or SQLAlchemy's adapted one."""

    autocommit: bool

    def cursor(self) -> Any: ...
    def rollback(self) -> None: ...


def in_transaction(conn: DBAPIConnection) -> bool:
    """True when the server side has a transaction open (or failed) on ``conn``."""
    info = getattr(conn, "info", None)
    status = getattr(info, "transaction_status", TransactionStatus.IDLE)
    return status != TransactionStatus.IDLE


def run_autocommit(conn: DBAPIConnection, query: str, *, fetch: bool) -> list[Any]:
    """Run one statement outside any transaction: no BEGIN/ROLLBACK round trips, nothing left open.

    An error leaves no aborted transaction behind either, so the caller may try something else.
    """
    restore = conn.autocommit
    if not restore:
        conn.autocommit = True
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(query)
            return list(cursor.fetchall()) if fetch else []
        finally:
            cursor.close()
    finally:
        if not restore:
            conn.autocommit = False

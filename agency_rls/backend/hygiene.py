"""Session state a pooled backend connection must not carry from one request to the next.

Why: ``SET LOCAL ROLE`` ends with its transaction, but SQL run inside a principal block can
create state that outlives it: a plain ``SET ROLE`` or ``set_config('role', …, false)`` (the
role stays switched after COMMIT, threat 14), a ``WITH HOLD`` cursor (its rows were read *as the
principal* and stay fetchable by name, threat 22), session settings, SQL-level prepared
statements, temporary objects, ``LISTEN`` registrations. A pool that hands such a connection to
the next request hands it the previous principal's identity, data or environment.

What it does: ``clean_connection`` is the pools' check-in step. It rolls back an open or failed
transaction, asks the server in one read-only round trip which of those kinds of state exist
(``leftover_state``), and then:

- nothing found (the normal case): ``RESET_SESSION`` puts session settings back and releases
  every session advisory lock (one more short round trip; detecting either would cost more than
  resetting). psycopg's protocol-level prepared statements are kept, so ``prepare_threshold``
  keeps paying off;
- something found: ``DISCARD ALL`` (which also ends a session ``SET ROLE`` and releases advisory
  locks), then a second check; if anything is still there, ``LeftoverState`` is raised and the
  pool discards the connection.

Session advisory locks are released, not checked: a lock a principal took (``pg_advisory_lock``,
``pg_advisory_lock_shared``, any key) would otherwise stay held by the backend connection while it
serves other principals, blocking whoever waits for that key. Releasing them is part of the reset
statement on both paths, so it costs no round trip; looking for them in ``pg_locks`` would.

The functions take any DB-API connection with ``cursor()``, ``rollback()`` and a writable
``autocommit`` attribute: a psycopg ``Connection`` and SQLAlchemy's adapted asyncio connection
both qualify, so the psycopg pool and the SQLAlchemy pool share one definition of "clean".
"""

from __future__ import annotations

import logging
from typing import Final

import psycopg

from agency_rls.backend._dbapi import DBAPIConnection, in_transaction, run_autocommit

__all__ = [
    "DISCARD_ALL",
    "PRIVILEGED_LOGIN_QUERY",
    "RESET_SESSION",
    "STATE_QUERY",
    "BackendRoleError",
    "DBAPIConnection",
    "LeftoverState",
    "clean_connection",
    "leftover_state",
    "refuse_privileged_login",
    "require_clean",
]

logger = logging.getLogger(__name__)

#: One row per kind of leftover session state (none on a clean connection). Catalog views only,
#: readable by any role, so it runs as the backend login role. The unnamed portal ('') is the
#: statement being run (``pg_cursors`` lists it when the statement was prepared by psycopg);
#: leftover cursors always have a name (``DECLARE`` requires one).
STATE_QUERY: Final = """
SELECT state.leftover
  FROM (VALUES
        ('role ' || current_user || ' set for the session', current_user <> session_user),
        ('open cursors: '
            || (SELECT pg_catalog.string_agg(name, ', ') FROM pg_catalog.pg_cursors WHERE name <> ''),
         EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE name <> '')),
        ('SQL prepared statements', EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)),
        ('temporary objects',
         CASE WHEN pg_catalog.pg_my_temp_schema() = 0 THEN false
              ELSE EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())
                OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace = pg_catalog.pg_my_temp_schema())
                OR EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema())
         END),
        ('LISTEN channels', EXISTS (SELECT FROM pg_catalog.pg_listening_channels()))
       ) AS state (leftover, present)
 WHERE state.present
"""

#: Every return: session ``SET``s and ``set_config(…, false)`` back to their connection-time values
#: (detecting them would need ``pg_settings``, ~0.5 ms; resetting costs one short round trip), and
#: every session advisory lock released, in the same round trip. The role is not among the settings
#: (``RESET ALL`` leaves it): ``STATE_QUERY`` checks it. One statement, not the batch
#: ``RESET ALL; SELECT pg_advisory_unlock_all()``: psycopg prepares a statement it has seen
#: ``prepare_threshold`` times (at once with 0, on any driver connection), and a prepared statement
#: holds one command. ``plpgsql`` is installed, and usable by every role, in every database by default.
RESET_SESSION: Final = "DO $$BEGIN RESET ALL; PERFORM pg_catalog.pg_advisory_unlock_all(); END$$"

#: Ends everything ``STATE_QUERY`` looks for (CLOSE ALL, SET SESSION AUTHORIZATION DEFAULT, which
#: also resets the role, RESET ALL, DEALLOCATE ALL, UNLISTEN *, advisory unlock all, DISCARD TEMP).
#: psycopg sees the command and forgets its own prepared statements with them.
DISCARD_ALL: Final = "DISCARD ALL"


#: True when the login role bypasses row-level security, or reads around it: a superuser or
#: BYPASSRLS role, a role that can create roles, owns the database, or is a member of a role that
#: owns a table with row level security (the agency-rls owner) or of agency-rls's loader role,
#: whose policies open every row (a DBA of managed PostgreSQL is all of these).
PRIVILEGED_LOGIN_QUERY: Final = r"""
SELECT r.rolsuper OR r.rolbypassrls OR r.rolcreaterole
       OR pg_catalog.pg_has_role(r.oid, d.datdba, 'MEMBER')
       OR EXISTS (SELECT FROM pg_catalog.pg_class AS c
                   WHERE c.relrowsecurity AND pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER'))
       OR EXISTS (SELECT FROM pg_catalog.pg_roles AS g
                   WHERE g.rolname LIKE '%rls\_loader'
                     AND pg_catalog.shobj_description(g.oid, 'pg_authid') LIKE 'agency-rls:management%'
                     AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER'))
  FROM pg_catalog.pg_roles AS r, pg_catalog.pg_database AS d
 WHERE r.rolname = session_user AND d.datname = pg_catalog.current_database()
"""


class BackendRoleError(psycopg.ProgrammingError):
    """The pool's login role bypasses or reads around row-level security: refused.

    Superuser, BYPASSRLS, CREATEROLE, the database's owner, a member of a table owner or of the
    loader role (a managed-PostgreSQL DBA is all of these).

    Acting as a principal would still be filtered, but every statement outside a principal block
    (or after a stray ``RESET ROLE``) would read every row, where the backend role reads none.
    """


class LeftoverState(psycopg.InterfaceError):
    """A connection still carries session state after a reset; the pool must discard it.

    A psycopg ``Error`` so that every pool treats it as a broken connection.
    """


def leftover_state(conn: DBAPIConnection) -> list[str]:
    """What session state ``conn`` carries, described one item per kind; empty when clean.

    ``conn`` must not be inside a transaction (inside one, a ``SET LOCAL ROLE`` is expected).
    """
    if in_transaction(conn):
        raise psycopg.ProgrammingError("leftover_state() needs an idle connection (roll back first)")
    return [str(row[0]) for row in run_autocommit(conn, STATE_QUERY, fetch=True)]


def clean_connection(conn: DBAPIConnection) -> None:
    """Check-in step: bring ``conn`` back to a clean backend session, or raise ``LeftoverState``.

    Rolls back an open or failed transaction; then ``RESET_SESSION`` (``RESET ALL`` and release
    session advisory locks) when ``leftover_state`` finds nothing (the usual case: two short round
    trips, psycopg's prepared statements kept), else ``DISCARD ALL`` and a second check.
    """
    if in_transaction(conn):
        conn.rollback()
    found = leftover_state(conn)
    if not found:
        run_autocommit(conn, RESET_SESSION, fetch=False)
        return
    logger.info("resetting a returned backend connection: %s", "; ".join(found))
    run_autocommit(conn, DISCARD_ALL, fetch=False)
    still = leftover_state(conn)
    if still:
        raise LeftoverState(f"connection still carries {'; '.join(still)} after DISCARD ALL")


def require_clean(conn: DBAPIConnection) -> None:
    """Checkout step: raise ``LeftoverState`` unless ``conn`` is idle and clean (and alive)."""
    if in_transaction(conn):
        raise LeftoverState("connection checked out inside a transaction")
    found = leftover_state(conn)
    if found:
        raise LeftoverState(f"connection checked out with {'; '.join(found)}")


def refuse_privileged_login(conn: DBAPIConnection) -> None:
    """New connection: raise ``BackendRoleError`` when its login role bypasses row-level security."""
    rows = run_autocommit(conn, PRIVILEGED_LOGIN_QUERY, fetch=True)
    if not rows or rows[0][0] is not False:
        user = getattr(getattr(conn, "info", None), "user", "?")
        raise BackendRoleError(
            f"the pool logs in as {user!r}, which bypasses or reads around row-level security (superuser, "
            "BYPASSRLS, CREATEROLE, database owner, member of a table owner or of the loader role); log in "
            "as the backend role (<prefix>rls_backend)"
        )

"""A psycopg 3 pool of the backend login role that acts as one principal per transaction.

Usage::

    pool = PrincipalPool(conninfo)            # logs in as <prefix>rls_backend
    with pool.acting_as(agency="W11") as conn:
        rows = conn.execute("SELECT policy_number FROM contract").fetchall()

Why this shape:

- One pool for every principal. Principals are database roles, and a pool per principal would
  need as many connections as there are agencies. The backend role is a member of every
  principal role; ``acting_as`` checks a connection out, opens a transaction and makes
  ``SET LOCAL ROLE`` its first statement (checked, see ``agency_rls.backend.principal``), yields
  the connection, and commits (or rolls back on an exception). The role ends with the
  transaction.
- Nothing the API sets outlives the transaction: no session ``SET``, no session-level
  prepared state of its own (``SET LOCAL ROLE`` is sent unprepared), so the same code works
  through PgBouncer in transaction mode, where consecutive transactions of one client
  connection may run on different server connections.
- What the *caller* may leave behind (a plain ``SET ROLE``, a ``WITH HOLD`` cursor, session
  settings, temporary tables, …) is caught when the connection comes back: the pool's ``reset``
  callback is ``agency_rls.backend.hygiene.clean_connection`` (roll back, check, ``RESET ALL`` and
  release session advisory locks,
  ``DISCARD ALL`` only when something else is left, discard the connection when that is not
  enough; it also restores ``row_factory`` and ``prepare_threshold``). ``check=True`` adds the
  same check at checkout (one round trip per transaction; it also catches connections that
  broke while idle).
- The backend connection itself sees nothing: ``<prefix>rls_backend`` is NOINHERIT, so a
  connection used without ``acting_as`` is refused every protected table. A pool that would
  log in as a superuser or a BYPASSRLS role is refused outright.

The trust boundary: over a backend connection PostgreSQL lets SQL switch to *any* principal
(``SET ROLE`` is checked against the session user, the backend). The backend process, and this
API's choice of principal per request, is the boundary; never run SQL a client wrote on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import RowFactory
from psycopg_pool import ConnectionPool

from agency_rls.backend.hygiene import (
    BackendRoleError,
    clean_connection,
    refuse_privileged_login,
    require_clean,
)
from agency_rls.backend.principal import Principal, principal_from, read_role_prefix, set_local_principal

__all__ = ["BackendRoleError", "PrincipalPool"]


class PrincipalPool:
    """A pool of backend-role connections; ``acting_as`` runs one transaction as one principal.

    ``conninfo`` must log in as the backend role (``<prefix>rls_backend``). ``prepare_threshold``
    is psycopg's (``None`` disables automatic prepared statements, which PgBouncer before 1.21 in
    transaction mode needs). ``connect_kwargs`` go to ``psycopg.connect`` (``autocommit`` is
    always True between blocks: an idle pooled connection holds no transaction). Other keyword
    arguments go to ``psycopg_pool.ConnectionPool``. With ``open`` the pool opens and waits for
    its first connections, so a wrong conninfo or a privileged login fails here, not at the
    first request.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        min_size: int = 1,
        max_size: int | None = None,
        name: str | None = None,
        timeout: float = 30.0,
        prepare_threshold: int | None = 5,
        check: bool = False,
        open: bool = True,
        connect_kwargs: Mapping[str, Any] | None = None,
        **pool_options: Any,
    ) -> None:
        kwargs: dict[str, Any] = {**(connect_kwargs or {}), "autocommit": True}
        kwargs["prepare_threshold"] = prepare_threshold
        self._prepare_threshold = prepare_threshold
        self._row_factory: RowFactory[Any] | None = None
        self._prefix: str | None = None
        self._prefix_lock = threading.Lock()
        self._conninfo = conninfo
        self._connect_kwargs = kwargs
        self._timeout = timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            name=name,
            timeout=timeout,
            kwargs=kwargs,
            configure=self._configure,
            reset=self._reset,
            check=require_clean if check else None,
            open=False,
            **pool_options,
        )
        if open:
            self.open()

    # -- lifecycle ----------------------------------------------------------------------------------

    def open(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Open the pool; with ``wait``, fail fast on a bad login and block until ``min_size`` are ready.

        The pool's own workers retry failing connections until its timeout, logging each attempt;
        one probe connection first turns a wrong conninfo or a privileged login into an immediate,
        explicit error (``psycopg.OperationalError``, ``BackendRoleError``).
        """
        if wait:
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as probe:
                refuse_privileged_login(probe)
        self._pool.open(wait=wait, timeout=self._timeout if timeout is None else timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and stop the pool's workers."""
        self._pool.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The underlying psycopg_pool pool (statistics, resizing). Its raw connections act as the backend."""
        return self._pool

    # -- acting as a principal ----------------------------------------------------------------------

    @contextmanager
    def acting_as(
        self,
        principal: Principal | None = None,
        *,
        agency: str | None = None,
        insurer: str | None = None,
        role: str | None = None,
    ) -> Iterator[psycopg.Connection[Any]]:
        """One transaction as one principal: yield a connection whose transaction acts as it.

        Exactly one of ``principal``, ``agency=`` (code), ``insurer=`` (code), ``role=`` (full role
        name). Raises a ``PrincipalError`` subclass before the block runs when the principal is
        unknown, unreachable or not a principal. The block commits on normal exit and rolls back
        on an exception; ``conn.commit()`` inside the block is refused by psycopg. Do not keep
        the connection, or cursors of it, after the block.
        """
        target = principal_from(principal, agency=agency, insurer=insurer, role=role)
        with self._pool.connection() as conn:
            role_name = self._role_name(conn, target)
            with conn.transaction():
                set_local_principal(conn, role_name)
                yield conn

    def role_name(
        self,
        principal: Principal | None = None,
        *,
        agency: str | None = None,
        insurer: str | None = None,
        role: str | None = None,
    ) -> str:
        """The role name a principal resolves to in this database (for logs and audits)."""
        target = principal_from(principal, agency=agency, insurer=insurer, role=role)
        if not target.needs_prefix:
            return target.role_name("")
        with self._pool.connection() as conn:
            return self._role_name(conn, target)

    def _role_name(self, conn: psycopg.Connection[Any], target: Principal) -> str:
        """Resolve ``target``, reading the database's role prefix once (it never changes after migration)."""
        if not target.needs_prefix:
            return target.role_name("")
        if self._prefix is None:
            with self._prefix_lock:
                if self._prefix is None:
                    self._prefix = read_role_prefix(conn)
        return target.role_name(self._prefix)

    # -- pool callbacks -----------------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """New connection: refuse a login role that bypasses row-level security."""
        refuse_privileged_login(conn)
        self._row_factory = conn.row_factory

    def _reset(self, conn: psycopg.Connection[Any]) -> None:
        """Returned connection: restore what a block may have changed client-side, then clean the session."""
        if self._row_factory is not None and conn.row_factory is not self._row_factory:
            conn.row_factory = self._row_factory
        if conn.prepare_threshold != self._prepare_threshold:
            conn.prepare_threshold = self._prepare_threshold
        clean_connection(conn)
        if not conn.autocommit:
            conn.autocommit = True

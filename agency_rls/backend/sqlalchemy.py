"""SQLAlchemy 2: act as one principal at the start of every transaction, sync and asyncio.

Usage::

    from agency_rls.backend.sqlalchemy import create_engine, principal_sessionmaker

    engine = create_engine("postgresql+psycopg://crm_rls_backend@db/crm")
    Session = principal_sessionmaker(engine)
    with Session(agency="W11") as session:
        contracts = session.execute(select(contract.c.policy_number)).scalars().all()

    # asyncio: create_async_engine("postgresql+psycopg_async://…"), async_principal_sessionmaker(engine)

Why an event on ``after_begin``: a ``Session`` begins a new database transaction after every
``commit()`` or ``rollback()``; a principal applied once per session would be gone from the
second transaction on (``SET LOCAL`` ends with its transaction, and must, so that nothing
outlives it). ``PrincipalSession`` carries an immutable principal and a class-level
``after_begin`` listener runs the checked ``SET LOCAL ROLE`` (``agency_rls.backend.principal``) as
the first statement of each transaction it begins, before any statement of the caller. A
savepoint (``begin_nested``) inherits the role of its transaction and sets nothing: a ``SET
LOCAL`` inside a savepoint would be undone by rolling the savepoint back.

Why pool events: SQLAlchemy's pool resets a returned connection with a rollback only; a session
``SET ROLE``, a ``WITH HOLD`` cursor or a session setting made inside a transaction survive it.
``install_pool_hygiene`` adds ``agency_rls.backend.hygiene.clean_connection`` to the pool's
``reset`` event (``RESET ALL`` always, ``DISCARD ALL`` when anything else is left, invalidation
when even that is not enough) and, with ``check=True``, ``require_clean`` at checkout (a dirty or broken connection is replaced
through ``DisconnectionError``). ``create_engine``, ``create_async_engine`` and the session
factories install it; a ``PrincipalSession`` installs it on any engine it meets.

The trust boundary is the same as for the psycopg pool: over the backend connection SQL can
switch to any principal, so the backend process and the principal it picks are trusted.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy import Connection, Engine, event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState

from agency_rls.backend._dbapi import DBAPIConnection
from agency_rls.backend.hygiene import LeftoverState, clean_connection, refuse_privileged_login, require_clean
from agency_rls.backend.principal import (
    PREFIX_QUERY,
    PRINCIPAL_ROW_QUERY,
    Principal,
    not_a_principal,
    principal_from,
    refusal_for,
    set_local_role_statement,
)

__all__ = [
    "AsyncPrincipalSession",
    "PrincipalSession",
    "act_as",
    "acting_as",
    "acting_as_async",
    "async_principal_sessionmaker",
    "create_async_engine",
    "create_engine",
    "install_pool_hygiene",
    "principal_sessionmaker",
]


@dataclass
class _EngineState:
    """What this module keeps per (sync) engine: hygiene installed, and the database's role prefix."""

    check: bool
    prefix: str | None = None


_engines: weakref.WeakKeyDictionary[Engine, _EngineState] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def _sync_engine(engine: Engine | AsyncEngine) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


# -- engines and pool hygiene ----------------------------------------------------------------------


def install_pool_hygiene(engine: Engine | AsyncEngine, *, check: bool = False) -> None:
    """Make ``engine``'s pool reset (or discard) returned connections that carry session state.

    Idempotent. Also refuses, on connect, a login role that bypasses row-level security
    (``BackendRoleError``). ``check`` adds a state check at every checkout (one round trip).
    """
    sync = _sync_engine(engine)
    with _engines_lock:
        if sync in _engines:
            return
        _engines[sync] = _EngineState(check=check)
        event.listen(sync, "connect", _on_connect)
        event.listen(sync, "reset", _on_reset)
        if check:
            event.listen(sync, "checkout", _on_checkout)


def create_engine(url: str | sqlalchemy.URL, *, check: bool = False, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` for the backend login role, with ``install_pool_hygiene``."""
    engine = sqlalchemy.create_engine(url, **kwargs)
    install_pool_hygiene(engine, check=check)
    return engine


def create_async_engine(url: str | sqlalchemy.URL, *, check: bool = False, **kwargs: Any) -> AsyncEngine:
    """``create_async_engine`` (``postgresql+psycopg_async://``) with ``install_pool_hygiene``."""
    engine = _create_async_engine(url, **kwargs)
    install_pool_hygiene(engine, check=check)
    return engine


def _on_connect(dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry) -> None:
    refuse_privileged_login(dbapi_connection)


def _on_reset(
    dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry, reset_state: PoolResetState
) -> None:
    # A detached connection never returns to the pool; an asyncio connection collected outside its
    # event loop cannot be used and SQLAlchemy terminates it.
    if reset_state.terminate_only or not reset_state.asyncio_safe:
        return
    clean_connection(dbapi_connection)  # raising makes SQLAlchemy invalidate the connection


def _on_checkout(
    dbapi_connection: DBAPIConnection,
    connection_record: ConnectionPoolEntry,
    connection_proxy: PoolProxiedConnection,
) -> None:
    try:
        require_clean(dbapi_connection)
    except (LeftoverState, psycopg.Error) as error:
        raise exc.DisconnectionError(str(error)) from error


# -- acting as a principal on a Connection ---------------------------------------------------------


def _state(engine: Engine) -> _EngineState:
    """This module's state for ``engine``, installing pool hygiene on an engine met for the first time."""
    state = _engines.get(engine)
    if state is None:
        install_pool_hygiene(engine)
        state = _engines[engine]
    return state


def _prefix(connection: Connection, state: _EngineState) -> str:
    """The database's role prefix, cached per engine (it never changes after migration)."""
    if state.prefix is None:
        # Harmless inside the caller's transaction: the backend may always call it.
        state.prefix = str(connection.exec_driver_sql(PREFIX_QUERY).scalar_one())
    return state.prefix


def act_as(connection: Connection, principal: Principal) -> str:
    """Make ``connection``'s current transaction act as ``principal``; return the role name.

    The checked ``SET LOCAL ROLE`` of ``agency_rls.backend.principal``, through SQLAlchemy. Call it
    first in a transaction (``acting_as`` and ``PrincipalSession`` do). Raises a
    ``PrincipalError`` subclass on refusal, with the transaction left to the caller to roll back.
    """
    state = _state(connection.engine)
    role_name = principal.role_name(_prefix(connection, state) if principal.needs_prefix else "")
    driver_connection = connection.connection.driver_connection
    statement = set_local_role_statement(role_name).as_string(driver_connection)
    # no_parameters: the statement goes to psycopg without a parameter list, so no '%' parsing.
    options = {"no_parameters": True}
    try:
        connection.exec_driver_sql(statement, execution_options=options)
    except exc.DBAPIError as error:
        refused = refusal_for(role_name, error)
        if refused is None:
            raise
        raise refused from error.orig
    try:
        seen = connection.exec_driver_sql(PRINCIPAL_ROW_QUERY).scalar()
    except exc.DBAPIError as error:
        if isinstance(error.orig, psycopg.errors.InsufficientPrivilege):
            raise not_a_principal(role_name) from error.orig
        raise
    if seen is not True:
        raise not_a_principal(role_name)
    return role_name


@contextmanager
def acting_as(
    engine: Engine,
    principal: Principal | None = None,
    *,
    agency: str | None = None,
    insurer: str | None = None,
    role: str | None = None,
) -> Iterator[Connection]:
    """Core: one transaction on ``engine`` as one principal; commit on exit, rollback on exception.

    Do not call ``commit()`` inside: a statement after it would begin a new transaction as the
    backend role, which sees nothing (fail closed). Use ``PrincipalSession`` for several
    transactions.
    """
    target = principal_from(principal, agency=agency, insurer=insurer, role=role)
    with engine.connect() as connection, connection.begin():
        act_as(connection, target)
        yield connection


@asynccontextmanager
async def acting_as_async(
    engine: AsyncEngine,
    principal: Principal | None = None,
    *,
    agency: str | None = None,
    insurer: str | None = None,
    role: str | None = None,
) -> AsyncIterator[AsyncConnection]:
    """Core, asyncio: ``acting_as`` for an ``AsyncEngine``."""
    target = principal_from(principal, agency=agency, insurer=insurer, role=role)
    async with engine.connect() as connection, connection.begin():
        await connection.run_sync(act_as, target)
        yield connection


# -- sessions --------------------------------------------------------------------------------------


class PrincipalSession(Session):
    """A ``Session`` that acts as one principal in every transaction it begins.

    Give exactly one of ``principal``, ``agency=``, ``insurer=``, ``role=``; the principal cannot
    change for the life of the session (make a new session per request). A refusal
    (``PrincipalError``) surfaces from the statement that began the transaction; close the
    session then.
    """

    def __init__(
        self,
        bind: Any = None,
        *,
        principal: Principal | None = None,
        agency: str | None = None,
        insurer: str | None = None,
        role: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._principal = principal_from(principal, agency=agency, insurer=insurer, role=role)
        super().__init__(bind=bind, **kwargs)

    @property
    def principal(self) -> Principal:
        """Whom every transaction of this session acts for."""
        return self._principal


@event.listens_for(PrincipalSession, "after_begin")
def _after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    if transaction.nested:
        return
    assert isinstance(session, PrincipalSession)
    act_as(connection, session.principal)


class AsyncPrincipalSession(AsyncSession):
    """asyncio: an ``AsyncSession`` whose sync session is a ``PrincipalSession``.

    ``AsyncPrincipalSession(engine, agency="W11")``; the keywords reach ``PrincipalSession``.
    """

    sync_session_class = PrincipalSession

    @property
    def principal(self) -> Principal:
        """Whom every transaction of this session acts for."""
        sync_session = self.sync_session
        assert isinstance(sync_session, PrincipalSession)
        return sync_session.principal


def principal_sessionmaker(engine: Engine, **kwargs: Any) -> sessionmaker[PrincipalSession]:
    """``sessionmaker(engine, class_=PrincipalSession)``, with pool hygiene on ``engine``.

    Call the result with the principal: ``Session(agency="W11")``.
    """
    install_pool_hygiene(engine)
    return sessionmaker(engine, class_=PrincipalSession, **kwargs)


def async_principal_sessionmaker(
    engine: AsyncEngine, **kwargs: Any
) -> async_sessionmaker[AsyncPrincipalSession]:
    """``async_sessionmaker(engine, class_=AsyncPrincipalSession)``, with pool hygiene on ``engine``.

    ``expire_on_commit`` defaults to False, as SQLAlchemy advises for asyncio (attribute access
    after a commit would otherwise need I/O).
    """
    install_pool_hygiene(engine)
    kwargs.setdefault("expire_on_commit", False)
    return async_sessionmaker(engine, class_=AsyncPrincipalSession, **kwargs)

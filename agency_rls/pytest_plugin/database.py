"""The test database behind the plugin's fixtures, and the ways to act as its principals.

Why a database of its own: the policies, roles and ``SET ROLE`` checks are server behaviour, so a
security test must run against a real, migrated database. Each test session gets a fresh one
with a random role prefix (``pt<hex>_``): the roles the migrations and provisioning create are
cluster-wide, and the prefix keeps them apart from every other database on the server, including
a production-like one or a parallel CI job. At the end the database is downgraded to base (which
drops the prefix's roles), dropped, and any role of the prefix still there is dropped too.

Why through the backend login role: that is how an application reads (``agency_backend``): it
logs in as ``<prefix>rls_backend`` (NOINHERIT, sees nothing itself) and runs the checked
``SET LOCAL ROLE <principal>`` first in each transaction. A test that acted as the principal any
other way (as a superuser with ``SET ROLE``, say) could pass where the application leaks.

Why one world at a time: tests usually load their rows with explicit ids, so two worlds cannot
share the tables. Loading a world (``load_sql``, ``load_scenario``) empties the tables first, and
provisioning prunes the roles of principals that are gone, so the roles always match the rows.

This module imports psycopg, SQLAlchemy and the migrations; the plugin imports it only when a
fixture needs it, so a test run that uses none of the fixtures pays nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from agency_rls.backend.hygiene import clean_connection
from agency_rls.backend.principal import Principal, PrincipalError, principal_from, set_local_principal
from agency_rls.cluster.database import conninfo_url, create_empty_database, drop_database_and_prefix_roles
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.maintenance import advance_identity_sequences
from agency_rls.rls_policies.names import ManagementRoles, check_prefix
from agency_rls.rls_policies.provision import ProvisionReport, provision
from agency_rls.schema.tables import ALL_TABLES

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine
    from sqlalchemy.orm import Session

__all__ = ["AgencyRLSDatabase", "ConnectAs", "SessionAs", "SuperuserRequired"]


class SuperuserRequired(RuntimeError):
    """The configured server login is not a superuser: migrations create roles, one of them BYPASSRLS."""


def check_server(conninfo: str) -> None:
    """Connect once and require what the fixtures do, so a wrong URL fails before any test, with the reason.

    They create a database per test session and the project's roles in it: SUPERUSER, or CREATEROLE
    and CREATEDB (a managed service's DBA; no role of the project needs BYPASSRLS since revision 0004).
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreaterole AND rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    if row is None or not (row[1] or row[2]):
        user = row[0] if row else "?"
        raise SuperuserRequired(
            f"the agency-rls test server login {user!r} has neither SUPERUSER nor CREATEROLE and CREATEDB: the "
            "fixtures create a database and the project's roles in it"
        )


@dataclass
class AgencyRLSDatabase:
    """A fresh database on the test server, migrated to head with its own role prefix.

    ``conninfo``/``url`` log in as the server's superuser (for loading rows and for inspection);
    ``backend_conninfo``/``backend_url()`` log in as the backend role, which acts for principals.
    """

    # Not in the repr: pytest prints fixture values in failure reports, and CI logs must not show
    # the server's password (the server's URL may carry one).
    server: str = field(repr=False)  # superuser conninfo or URL of the server's maintenance database
    name: str
    prefix: str
    backend_password: str = field(repr=False)

    # -- creation and removal ----------------------------------------------------------------------

    @classmethod
    def create(cls, server: str) -> AgencyRLSDatabase:
        """Create, migrate to head and open the backend login; undo everything on failure."""
        token = secrets.token_hex(4)
        database = cls(
            server=server,
            name=f"agency_rls_pytest_{token}",
            prefix=check_prefix(f"pt{token}_"),
            backend_password=secrets.token_urlsafe(24),
        )
        create_empty_database(server, database.name)
        try:
            migrations_runner.upgrade(database.url, "head", role_prefix=database.prefix)
            with database.connect() as conn:
                # A password, so that the backend login works whatever the server's pg_hba.conf
                # asks (trust, md5 or scram); the role and its password die with the database.
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(database.backend_role), sql.Literal(database.backend_password)
                    )
                )
        except BaseException:
            database.drop(downgrade=False)
            raise
        return database

    def drop(self, *, downgrade: bool = True) -> None:
        """Downgrade to base (drops the prefix's roles), drop the database, drop any role of the prefix left.

        Every step runs even when an earlier one fails; the first failure is raised at the end,
        after nothing of the database is left.
        """
        failure: BaseException | None = None
        if downgrade:
            try:
                migrations_runner.downgrade(self.url, "base")
            except Exception as error:
                failure = error
        drop_database_and_prefix_roles(self.server, self.name, self.prefix)
        if failure is not None:
            raise failure

    # -- where it is -------------------------------------------------------------------------------

    @property
    def conninfo(self) -> str:
        """Superuser conninfo of this database (psycopg)."""
        return make_conninfo(self.server, dbname=self.name)

    @property
    def url(self) -> str:
        """Superuser libpq URL of this database (Alembic, ``agency-rls --database-url``)."""
        return conninfo_url(self.conninfo)

    @property
    def roles(self) -> ManagementRoles:
        """The management role names of this database's prefix."""
        return ManagementRoles(self.prefix)

    @property
    def backend_role(self) -> str:
        """The backend login role (``<prefix>rls_backend``)."""
        return self.roles.backend

    @property
    def backend_conninfo(self) -> str:
        """Conninfo that logs in as the backend role, as an application's pool would."""
        return make_conninfo(self.conninfo, user=self.backend_role, password=self.backend_password)

    def backend_url(self) -> URL:
        """A SQLAlchemy URL (``postgresql+psycopg``) of the backend login, for your own engines."""
        from sqlalchemy import URL

        params = conninfo_to_dict(self.backend_conninfo)
        return URL.create(
            "postgresql+psycopg",
            username=str(params["user"]),
            password=str(params["password"]),
            database=self.name,
            query={
                k: str(v)
                for k, v in params.items()
                if v is not None and k not in ("user", "password", "dbname")
            },
        )

    def role(self, name: str) -> str:
        """A role name of this database: ``role("staff_nl_at_m1")`` -> ``"<prefix>staff_nl_at_m1"``.

        Use it for principal rows your SQL inserts (``agency_rls.role_prefix() || 'staff_nl_at_m1'``
        in SQL) and for ``agency_rls_connect_as(role=...)``.
        """
        return self.prefix + name

    def role_name(self, principal: Principal) -> str:
        """The role a ``Principal`` (agency code, insurer code or role name) maps to in this database."""
        return principal.role_name(self.prefix)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new superuser connection to this database (autocommit): load rows, inspect, clean up."""
        return psycopg.connect(self.conninfo, autocommit=True, **kwargs)

    # -- the world in it ---------------------------------------------------------------------------

    def provision(self) -> ProvisionReport:
        """``agency-rls provision --prune``: a role for every agency, insurer and principal row, no other."""
        with self.connect() as conn:
            return provision(conn, prune=True)

    def load_sql(self, *scripts: str | os.PathLike[str], reset: bool = True) -> ProvisionReport:
        """Replace the rows with yours: empty the tables, run ``scripts`` in one transaction, provision.

        Each script is SQL text (``str``) or the path of a ``.sql`` file (``pathlib.Path``); they
        run as the superuser, so row-level security does not get in the way of loading. With
        ``reset=False`` the rows already there stay. Principal rows your SQL inserts need the
        database's prefix: ``agency_rls.role_prefix() || 'staff_nl_at_m1'``.
        """
        texts = [_script_text(script) for script in scripts]  # read files before emptying anything
        with self.connect() as conn:
            with conn.transaction():
                if reset:
                    _truncate(conn)
                for text in texts:
                    conn.execute(text)  # type: ignore[arg-type]  # the user's SQL, run as given
                _sync_identities(conn)
            return provision(conn, prune=True)

    def reset(self) -> ProvisionReport:
        """Empty every table (identities restart) and drop every principal role."""
        return self.load_sql(reset=True)

    def load_scenario(self, path: str | os.PathLike[str]) -> Any:
        """Load a scenario file (``agency-rls check`` format) in place of the current rows; provisioned.

        Returns the ``scripts.check.LoadedScenario``, which maps the file's labels to ids and role
        names. The file is read and checked first, so a malformed one leaves the rows as they were.
        """
        try:
            from agency_rls.checks.check import install_scenario, load_scenario
        except ImportError as error:  # pragma: no cover - only with an installation lacking the checker
            raise RuntimeError(
                f"scenario files need agency_rls.checks.check (agency-rls check), which cannot be imported: {error}"
            ) from error
        scenario = load_scenario(Path(path))
        self.reset()
        with self.connect() as conn:
            return install_scenario(conn, scenario, prefix=self.prefix)

    def principals(self) -> list[str]:
        """Role names of every principal row (read as the superuser), for messages."""
        with self.connect() as conn:
            return [str(row[0]) for row in conn.execute("SELECT role_name FROM public.principal ORDER BY 1")]

    def explain_refusal(self, error: PrincipalError) -> None:
        """Add to a refusal what a test author needs: which principals this database has."""
        try:
            known = self.principals()
        except psycopg.Error:
            return
        shown = ", ".join(name.removeprefix(self.prefix) for name in known[:20])
        more = f", … ({len(known)} in all)" if len(known) > 20 else ""
        error.add_note(
            f"principals in the agency-rls test database (prefix {self.prefix!r}): {shown or 'none'}{more}"
            + (
                ""
                if known
                else "; load rows and provision first (agency_rls_load_sql, agency_rls_load_scenario)"
            )
        )


class ConnectAs:
    """``agency_rls_connect_as``: psycopg connections of the backend role, each block acting as one principal.

    ``with connect_as(agency="W11") as conn:`` checks a backend connection out (opening one when
    none is idle, so blocks can nest: two principals side by side), opens a transaction, runs the
    checked ``SET LOCAL ROLE`` as its first statement, yields the connection and rolls the
    transaction back at the end, whatever the block did (``conn.commit()`` inside is refused by
    psycopg). At check-in the connection goes through ``agency_backend``'s pool hygiene: session
    state a block left (a plain ``SET ROLE``, a ``WITH HOLD`` cursor, …) is reset or the connection
    discarded, as the application's pool would.
    """

    def __init__(self, database: AgencyRLSDatabase) -> None:
        self.database = database
        self._idle: list[psycopg.Connection[Any]] = []

    @contextmanager
    def __call__(
        self,
        principal: Principal | None = None,
        *,
        agency: str | None = None,
        insurer: str | None = None,
        role: str | None = None,
    ) -> Iterator[psycopg.Connection[Any]]:
        """Act as exactly one of a ``Principal``, ``agency=<code>``, ``insurer=<code>``, ``role=<role name>``.

        A ``role`` is the full role name (``agency_rls_database.role("staff_nl_at_m1")``). A
        principal the database does not have raises ``agency_backend.UnknownPrincipal`` (or
        another ``PrincipalError``) at the ``with`` line, noting the principals it does have.
        """
        role_name = self.database.role_name(
            principal_from(principal, agency=agency, insurer=insurer, role=role)
        )
        conn = self._checkout()
        try:
            with conn.transaction(force_rollback=True):
                try:
                    set_local_principal(conn, role_name)
                except PrincipalError as error:
                    self.database.explain_refusal(error)
                    raise
                yield conn
        finally:
            self._checkin(conn)

    def _checkout(self) -> psycopg.Connection[Any]:
        if self._idle:
            return self._idle.pop()
        return psycopg.connect(self.database.backend_conninfo)

    def _checkin(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed:
            return
        try:
            clean_connection(conn)
        except psycopg.Error:
            conn.close()
            return
        if conn.info.transaction_status == TransactionStatus.IDLE:
            self._idle.append(conn)
        else:  # pragma: no cover - clean_connection leaves it idle or raises
            conn.close()

    def close(self) -> None:
        """Close every idle connection (blocks still open keep theirs until they end)."""
        while self._idle:
            self._idle.pop().close()


class SessionAs:
    """``agency_rls_session_as``: SQLAlchemy 2 sessions of the backend role acting as one principal.

    ``with session_as(agency="W11") as session:`` gives an ``agency_rls.backend.sqlalchemy.PrincipalSession``
    bound to a connection whose outer transaction is rolled back at the end: the session runs in
    a savepoint (``join_transaction_mode="create_savepoint"``), so ``session.commit()`` and
    ``session.rollback()`` behave as in the application (each new transaction sets the principal
    again) while nothing a test writes outlives the block. The engine is created on first use
    (``agency_rls.backend.sqlalchemy.create_engine``, with its pool hygiene) and disposed at the end.
    """

    def __init__(self, database: AgencyRLSDatabase) -> None:
        self.database = database
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The engine of the backend login (for ``agency_rls.backend.sqlalchemy.acting_as`` and the like)."""
        if self._engine is None:
            from agency_rls.backend.sqlalchemy import create_engine

            self._engine = create_engine(self.database.backend_url())
        return self._engine

    @contextmanager
    def __call__(
        self,
        principal: Principal | None = None,
        *,
        agency: str | None = None,
        insurer: str | None = None,
        role: str | None = None,
        **session_options: Any,
    ) -> Iterator[Session]:
        """Act as exactly one principal, as ``agency_rls_connect_as``; other keywords go to the ``Session``.

        The first transaction begins at the ``with`` line, so an unknown principal fails there.
        """
        from agency_rls.backend.sqlalchemy import PrincipalSession

        target = Principal.role(
            self.database.role_name(principal_from(principal, agency=agency, insurer=insurer, role=role))
        )
        with self.engine.connect() as connection:
            outer = connection.begin()
            session = PrincipalSession(
                bind=connection, principal=target, join_transaction_mode="create_savepoint", **session_options
            )
            try:
                try:
                    session.connection()  # begin now: SET LOCAL ROLE and its checks run here
                except PrincipalError as error:
                    self.database.explain_refusal(error)
                    raise
                yield session
            finally:
                session.close()
                if outer.is_active:
                    outer.rollback()

    def close(self) -> None:
        """Dispose of the engine's pool (its connections log in as a role the teardown drops)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _truncate(conn: psycopg.Connection[Any]) -> None:
    """Empty every table of the spec; identities restart so that the next world's ids are its own."""
    tables = sql.SQL(", ").join(sql.Identifier("public", table) for table in ALL_TABLES)
    conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))


def _sync_identities(conn: psycopg.Connection[Any]) -> None:
    """Move each ``id`` identity past the largest id loaded, so inserts without an id work next.

    Worlds are usually written with explicit ids (readable, stable references); PostgreSQL does not
    advance an identity for them, and the first insert a test makes without an id (an agency
    registering a prospect) would collide with row 1, or tell it that a hidden row holds that id.
    """
    advance_identity_sequences(conn)


def _script_text(script: str | os.PathLike[str]) -> str:
    """SQL text given as such, or read from a file given as a path (never guessed from a string)."""
    if isinstance(script, str):
        return script
    if isinstance(script, os.PathLike):
        return Path(script).read_text(encoding="utf-8")
    raise TypeError(f"a script is SQL text (str) or a path (pathlib.Path), not {type(script).__name__}")

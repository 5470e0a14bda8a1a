"""Test harness: real servers, real databases, real roles, and connections as those roles.

Where the server comes from: ``AGENCY_RLS_TEST_DATABASE_URL`` (a superuser URL of a server
that is already running) or, when it is unset, a throwaway cluster this suite starts (as the
``postgres`` OS account when run as root) and removes at the end.

Every test database gets its own role prefix (``t<hex>_``), so tests never collide with each
other or with roles already in the cluster; the finaliser downgrades to base, which drops the
prefix's roles, then drops the database, and finally checks that no role of the prefix is left.

Who runs the product: ``AGENCY_RLS_TEST_AS`` (``superuser``, the default, or ``dba``). With
``dba`` every test database gets its own login ``<prefix>dba`` (NOSUPERUSER, CREATEROLE,
CREATEDB) that owns it, as on Amazon RDS and the other managed services, and
``ScratchDatabase.conninfo``/``url``/``connect()``, ``World.admin()`` and the ``superuser``
fixture log in as that DBA: migrating, loading (through ``<prefix>rls_loader``, which the DBA
joins when it installs), provisioning, reading keys and changing state, downgrading. Only the
harness itself uses the superuser (``superuser_conninfo``, ``superuser_connect()``): creating
the DBA, dropping the database and what a failed test left. Tests marked ``needs_superuser``
(they do what only a superuser can: walk the recorded revisions, create BYPASSRLS or SUPERUSER
roles, test the superuser-only paths) are skipped in that mode, with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from agency_rls.cluster.database import conninfo_url, libpq_conninfo

SERVER_ENV = "AGENCY_RLS_TEST_DATABASE_URL"
TEST_AS_ENV = "AGENCY_RLS_TEST_AS"
#: Password given to test login roles, so direct logins work under trust, md5 or scram.
LOGIN_PASSWORD = "agency-rls-test-" + secrets.token_hex(8)


def _dba_mode_from_env() -> bool:
    """Whether ``AGENCY_RLS_TEST_AS`` asks for the non-superuser DBA; any other value is an error."""
    value = os.environ.get(TEST_AS_ENV, "").strip() or "superuser"
    if value not in ("superuser", "dba"):
        raise RuntimeError(f"{TEST_AS_ENV}={value!r}: use 'superuser' (the default) or 'dba'")
    return value == "dba"


#: The suite runs the product as a NOSUPERUSER CREATEROLE CREATEDB database owner (``AGENCY_RLS_TEST_AS=dba``).
DBA_MODE = _dba_mode_from_env()


#: A test that walks the recorded revisions (anything but installing a new database, or ``downgrade
#: base`` from head): revisions 0002 and 0004 create or alter a BYPASSRLS role, which needs SUPERUSER.
WALKS_REVISIONS = pytest.mark.needs_superuser(
    "walks the recorded revisions, and 0002 and 0004 create or alter a BYPASSRLS role"
)


def server_conninfo_from_env() -> str | None:
    """The configured test server, if any."""
    url = os.environ.get(SERVER_ENV)
    return libpq_conninfo(url) if url else None


@dataclass
class ScratchDatabase:
    """One database of the test server, with its own role prefix (and, in DBA mode, its own DBA)."""

    server: str  # superuser conninfo of the server (maintenance database)
    name: str
    prefix: str
    dba: str | None = None  # the NOSUPERUSER CREATEROLE login owning the database, if there is one
    _janitor: DatabaseJanitor | None = field(default=None, repr=False)

    @property
    def superuser_conninfo(self) -> str:
        """Superuser conninfo of this database: for the harness only (creating the DBA, dropping)."""
        return make_conninfo(self.server, dbname=self.name)

    @property
    def conninfo(self) -> str:
        """Conninfo of whoever administers this database: its DBA if it has one, else the superuser."""
        if self.dba is None:
            return self.superuser_conninfo
        return make_conninfo(self.superuser_conninfo, user=self.dba, password=LOGIN_PASSWORD)

    @property
    def url(self) -> str:
        """A libpq URL of ``conninfo`` (for Alembic and the command)."""
        return conninfo_url(self.conninfo)

    @property
    def superuser_url(self) -> str:
        """A libpq URL of ``superuser_conninfo``: for the commands that need SUPERUSER (``matrix``)."""
        return conninfo_url(self.superuser_conninfo)

    def role(self, short: str) -> str:
        """A role name of this database's prefix."""
        return self.prefix + short

    def connect(self, **kwargs: object) -> psycopg.Connection:
        """A new connection as the database's administrator (``conninfo``; autocommit)."""
        return psycopg.connect(self.conninfo, autocommit=True, **kwargs)  # type: ignore[arg-type]

    def superuser_connect(self, **kwargs: object) -> psycopg.Connection:
        """A new superuser connection to this database (autocommit), whatever the mode."""
        return psycopg.connect(self.superuser_conninfo, autocommit=True, **kwargs)  # type: ignore[arg-type]

    def login_conninfo(self, role: str) -> str:
        """Conninfo that logs in directly as ``role`` (which must have LOGIN and the test password)."""
        return make_conninfo(self.superuser_conninfo, user=role, password=LOGIN_PASSWORD)

    def migrate(self) -> None:
        """``agency-rls migrate`` with this database's prefix."""
        migrations_runner.upgrade(self.url, "head", role_prefix=self.prefix)

    def downgrade_base(self) -> None:
        """``agency-rls downgrade base``."""
        migrations_runner.downgrade(self.url, "base")

    def leftover_roles(self) -> list[str]:
        """Roles of this prefix still in the cluster, but the DBA the harness made."""
        with psycopg.connect(self.server, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND rolname IS DISTINCT FROM %s"
                " ORDER BY 1",
                (self.prefix, self.dba),
            ).fetchall()
        return [row[0] for row in rows]

    def drop(self) -> None:
        """Drop the database, any role of its prefix that is left (after a failed test), then its DBA."""
        assert self._janitor is not None
        self._janitor.drop()
        with psycopg.connect(self.server, autocommit=True) as conn:
            # The DBA last: on PostgreSQL 16 and later it granted the memberships of the others.
            for role in [*self.leftover_roles(), *([self.dba] if self.dba else [])]:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def create_database(server: str, label: str = "db", *, dba: bool | None = None) -> ScratchDatabase:
    """Create an empty database with a fresh prefix on the test server.

    With ``dba`` (default: DBA mode) the database belongs to a new login ``<prefix>dba``, LOGIN
    NOSUPERUSER CREATEROLE CREATEDB with the test password, and ``public`` to
    ``pg_database_owner``, as on managed PostgreSQL; ``conninfo`` then logs in as it.
    """
    token = secrets.token_hex(4)
    name = f"agency_rls_{label}_{token}"
    params = conninfo_to_dict(server)
    janitor = DatabaseJanitor(
        user=str(params.get("user") or "postgres"),
        host=str(params.get("host") or "localhost"),
        port=str(params.get("port") or 5432),
        password=params.get("password"),  # type: ignore[arg-type]
        dbname=name,
        maintenance_dbname=str(params.get("dbname") or "postgres"),
    )
    janitor.init()
    db = ScratchDatabase(server=server, name=name, prefix=f"t{token}_", _janitor=janitor)
    if dba is None:
        dba = DBA_MODE
    if dba:
        try:
            make_dba(db)
        except BaseException:
            db.drop()
            raise
    return db


def make_dba(db: ScratchDatabase) -> None:
    """Hand ``db`` to a new NOSUPERUSER CREATEROLE CREATEDB login ``<prefix>dba`` (as the superuser)."""
    dba = db.role("dba")
    with psycopg.connect(db.server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(dba), sql.Literal(LOGIN_PASSWORD)
            )
        )
        db.dba = dba
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db.name), sql.Identifier(dba))
        )
    with db.superuser_connect() as conn:  # PostgreSQL 15 and later: public belongs to pg_database_owner
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO pg_database_owner"))


@dataclass
class World:
    """A migrated, loaded and provisioned database, and ways to act as its principals."""

    db: ScratchDatabase
    backend: psycopg.Connection

    @property
    def prefix(self) -> str:
        """The role prefix of this world."""
        return self.db.prefix

    def role(self, short: str) -> str:
        """Full role name of a principal given without prefix ('agency_w11')."""
        return self.db.role(short)

    @contextmanager
    def acting_as(self, short: str) -> Iterator[psycopg.Cursor]:
        """A cursor on the backend login connection, after SET LOCAL ROLE; always rolled back."""
        with self.backend.transaction(force_rollback=True), self.backend.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.role(short))))
            yield cur

    @contextmanager
    def login_as(self, short: str) -> Iterator[psycopg.Connection]:
        """A separate connection that authenticates as the principal itself."""
        with psycopg.connect(self.db.login_conninfo(self.role(short))) as conn:
            yield conn

    def admin(self) -> psycopg.Connection:
        """A new connection as the database's administrator (autocommit): the superuser, or in DBA
        mode the NOSUPERUSER database owner, which reads and writes every row through the loader role."""
        return self.db.connect()

    def superuser(self) -> psycopg.Connection:
        """A new superuser connection (autocommit), whatever the mode: for the harness only."""
        return self.db.superuser_connect()


def build_world(db: ScratchDatabase, load: object) -> World:
    """Migrate ``db``, load it with ``load(conn, prefix=…)``, provision with LOGIN, connect the backend."""
    db.migrate()
    with db.connect() as conn:
        with conn.transaction():
            load(conn, prefix=db.prefix)  # type: ignore[operator]
        provision(conn, login=True)
        set_test_passwords(conn, db.prefix)
    backend = psycopg.connect(db.login_conninfo(db.role("rls_backend")))
    return World(db=db, backend=backend)


def build_sample_world(db: ScratchDatabase) -> World:
    """Migrate ``db``, install the sample world scenario (as ``agency-rls check`` and the demo do), make
    its principals LOGIN with the test password, connect the backend."""
    from agency_rls.checks.sample_world import install_sample_world

    db.migrate()
    with db.connect() as conn:
        install_sample_world(conn, prefix=db.prefix)
        provision(conn, login=True)
        set_test_passwords(conn, db.prefix)
    backend = psycopg.connect(db.login_conninfo(db.role("rls_backend")))
    return World(db=db, backend=backend)


@contextmanager
def sample_world_on(server: str, label: str, *, dba: bool | None = None) -> Iterator[World]:
    """A new database holding the sample world; downgraded (roles dropped) and dropped afterwards.

    ``dba``: as for ``create_database`` (default: the mode's choice)."""
    db = create_database(server, label, dba=dba)
    built = None
    try:
        built = build_sample_world(db)
        yield built
    finally:
        if built is not None:
            built.backend.close()
        try:
            db.downgrade_base()
        finally:
            db.drop()


@contextmanager
def triggers_off(db: ScratchDatabase) -> Iterator[psycopg.Connection]:
    """A transaction with ``session_replication_role = replica`` (triggers and keys off), as a bulk
    load or a data-only restore may run: what it writes is the test's premise. Only a superuser may
    set that parameter (managed services keep it for their own admin role), so it is the superuser
    in either mode; what the product then does with the rows runs as ``conninfo``."""
    with db.superuser_connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        yield conn


def set_test_passwords(conn: psycopg.Connection, prefix: str) -> None:
    """Give the backend and every login principal of ``prefix`` the test password."""
    rows = conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolcanlogin AND starts_with(rolname, %s)", (prefix,)
    ).fetchall()
    for (role,) in rows:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(LOGIN_PASSWORD))
        )

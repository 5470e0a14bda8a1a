"""Test harness: real servers, real databases, real roles, and connections as those roles.

Where the server comes from: ``AGENCY_RLS_TEST_DATABASE_URL`` (a superuser URL of a server
that is already running) or, when it is unset, a throwaway cluster this suite starts (as the
``postgres`` OS account when run as root) and removes at the end.

Every test database gets its own role prefix (``t<hex>_``), so tests never collide with each
other or with roles already in the cluster; the finaliser downgrades to base, which drops the
prefix's roles, then drops the database, and finally checks that no role of the prefix is left.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from agency_rls.cluster.database import conninfo_url, libpq_conninfo

SERVER_ENV = "AGENCY_RLS_TEST_DATABASE_URL"
#: Password given to test login roles, so direct logins work under trust, md5 or scram.
LOGIN_PASSWORD = "agency-rls-test-" + secrets.token_hex(8)


def server_conninfo_from_env() -> str | None:
    """The configured test server, if any."""
    url = os.environ.get(SERVER_ENV)
    return libpq_conninfo(url) if url else None


@dataclass
class ScratchDatabase:
    """One database of the test server, with its own role prefix."""

    server: str  # admin conninfo of the server (maintenance database)
    name: str
    prefix: str
    _janitor: DatabaseJanitor | None = field(default=None, repr=False)

    @property
    def conninfo(self) -> str:
        """Superuser conninfo of this database."""
        return make_conninfo(self.server, dbname=self.name)

    @property
    def url(self) -> str:
        """A libpq URL of this database (for Alembic and the command)."""
        return conninfo_url(self.conninfo)

    def role(self, short: str) -> str:
        """A role name of this database's prefix."""
        return self.prefix + short

    def connect(self, **kwargs: object) -> psycopg.Connection:
        """A new superuser connection to this database (autocommit)."""
        return psycopg.connect(self.conninfo, autocommit=True, **kwargs)  # type: ignore[arg-type]

    def login_conninfo(self, role: str) -> str:
        """Conninfo that logs in directly as ``role`` (which must have LOGIN and the test password)."""
        return make_conninfo(self.conninfo, user=role, password=LOGIN_PASSWORD)

    def migrate(self) -> None:
        """``agency-rls migrate`` with this database's prefix."""
        migrations_runner.upgrade(self.url, "head", role_prefix=self.prefix)

    def downgrade_base(self) -> None:
        """``agency-rls downgrade base``."""
        migrations_runner.downgrade(self.url, "base")

    def leftover_roles(self) -> list[str]:
        """Roles of this prefix still in the cluster."""
        with psycopg.connect(self.server, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1", (self.prefix,)
            ).fetchall()
        return [row[0] for row in rows]

    def drop(self) -> None:
        """Drop the database and any role of its prefix that is left (after a failed test)."""
        assert self._janitor is not None
        self._janitor.drop()
        with psycopg.connect(self.server, autocommit=True) as conn:
            for role in self.leftover_roles():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def create_database(server: str, label: str = "db") -> ScratchDatabase:
    """Create an empty database with a fresh prefix on the test server."""
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
    return ScratchDatabase(server=server, name=name, prefix=f"t{token}_", _janitor=janitor)


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
        """A new superuser connection (autocommit)."""
        return self.db.connect()


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
def sample_world_on(server: str, label: str) -> Iterator[World]:
    """A new database holding the sample world; downgraded (roles dropped) and dropped afterwards."""
    db = create_database(server, label)
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


def set_test_passwords(conn: psycopg.Connection, prefix: str) -> None:
    """Give the backend and every login principal of ``prefix`` the test password."""
    rows = conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolcanlogin AND starts_with(rolname, %s)", (prefix,)
    ).fetchall()
    for (role,) in rows:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(LOGIN_PASSWORD))
        )

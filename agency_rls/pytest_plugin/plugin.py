"""pytest plugin for your own row-level security tests (entry point ``pytest11``: ``agency_rls``).

Installed with the package, so it is active in every pytest run of a project that has agency-rls
installed. It must therefore cost nothing until a test asks for one of its fixtures: this module
imports only pytest and the standard library, registers one option, and defines fixtures whose
bodies import the database machinery (``agency_rls.pytest_plugin.database``) and start a server only
when they run. Every name is prefixed ``agency_rls_`` so it cannot clash with a project's own
fixtures (``server``, ``world``, ``db`` …).

Where the server comes from, first found wins:

1. ``--agency-rls-database-url URL``;
2. the environment variable ``AGENCY_RLS_DATABASE_URL``;
3. the ini option ``agency_rls_database_url`` (``[tool.pytest.ini_options]``);
4. otherwise a throwaway PostgreSQL cluster (``agency_rls.cluster.throwaway``: the server binaries
   of the machine, run as the ``postgres`` OS account under root), started on first use and
   removed at the end of the session.

The URL must log in as a superuser (the migrations create roles, one of them BYPASSRLS); the
plugin creates one database of its own on that server and removes it, with its roles, at the end.

Fixtures (all session-scoped, so module- and class-scoped fixtures of yours can use them):

- ``agency_rls_server``: superuser conninfo of the server (override it to reuse a server
  fixture you already have);
- ``agency_rls_database``: ``AgencyRLSDatabase``, the migrated test database (``url``,
  ``conninfo``, ``prefix``, ``role()``, ``backend_conninfo``, ``backend_url()``, ``connect()``);
- ``agency_rls_load_sql(*scripts, reset=True)``: replace the rows with your SQL, then provision;
- ``agency_rls_provision()``: provision (with prune) after rows you wrote yourself;
- ``agency_rls_load_scenario(path)``: replace the rows with a scenario file, provisioned;
- ``agency_rls_connect_as(agency=… | insurer=… | role=… | Principal)``: a context manager
  yielding a psycopg connection of the backend role acting as that principal, rolled back at the end;
- ``agency_rls_session_as(...)``: the same as a SQLAlchemy 2 ``Session``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agency_rls.pytest_plugin.database import AgencyRLSDatabase, ConnectAs, SessionAs
    from agency_rls.rls_policies.provision import ProvisionReport

DATABASE_URL_ENV = "AGENCY_RLS_DATABASE_URL"
_OPTION = "agency_rls_database_url"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register where the server is; nothing is connected or imported here."""
    group = parser.getgroup("agency-rls", "agency-rls row-level security tests")
    group.addoption(
        "--agency-rls-database-url",
        dest=_OPTION,
        default=None,
        metavar="URL",
        help=(
            f"superuser URL of the PostgreSQL server for agency_rls_* fixtures (or {DATABASE_URL_ENV}); "
            "without it a throwaway cluster is started when a fixture needs one"
        ),
    )
    parser.addini(
        _OPTION,
        help=f"superuser URL of the server for agency_rls_* fixtures; --agency-rls-database-url and {DATABASE_URL_ENV} win",
        default="",
    )


def configured_server_url(config: pytest.Config) -> tuple[str, str] | None:
    """The configured server URL and where it came from, or None (start a throwaway cluster)."""
    option = config.getoption(_OPTION)
    if option:
        return str(option), "--agency-rls-database-url"
    env = os.environ.get(DATABASE_URL_ENV)
    if env:
        return env, DATABASE_URL_ENV
    ini = config.getini(_OPTION)
    if ini:
        return str(ini), f"the ini option {_OPTION}"
    return None


@pytest.fixture(scope="session")
def agency_rls_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """Superuser conninfo of the test server: the configured one, or a throwaway cluster started now."""
    configured = configured_server_url(pytestconfig)
    if configured is not None:
        import psycopg

        from agency_rls.cluster.database import libpq_conninfo
        from agency_rls.pytest_plugin.database import SuperuserRequired, check_server

        url, source = configured
        conninfo = libpq_conninfo(url)
        try:
            check_server(conninfo)
        except (psycopg.Error, SuperuserRequired) as error:
            pytest.fail(f"agency-rls: the server given by {source} cannot be used: {error}", pytrace=False)
        yield conninfo
        return

    from agency_rls.cluster.throwaway import ThrowawayCluster

    try:
        cluster = ThrowawayCluster().start()
    except RuntimeError as error:
        pytest.fail(
            f"agency-rls: cannot start a throwaway PostgreSQL cluster ({error}); give a superuser URL of a "
            f"running server with --agency-rls-database-url or {DATABASE_URL_ENV}",
            pytrace=False,
        )
    try:
        yield cluster.conninfo()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def agency_rls_database(agency_rls_server: str) -> Iterator[AgencyRLSDatabase]:
    """A fresh database migrated to head with its own role prefix; downgraded, dropped and its roles gone at the end."""
    from agency_rls.pytest_plugin.database import AgencyRLSDatabase

    database = AgencyRLSDatabase.create(agency_rls_server)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="session")
def agency_rls_load_sql(
    agency_rls_database: AgencyRLSDatabase,
) -> Callable[..., ProvisionReport]:
    """``agency_rls_load_sql(*scripts, reset=True)``: your rows by plain SQL (text or a ``Path``), provisioned.

    Empties the tables first (one world at a time), runs the scripts as the superuser in one
    transaction, then provisions a role for every agency, insurer and principal row.
    """
    return agency_rls_database.load_sql


@pytest.fixture(scope="session")
def agency_rls_provision(agency_rls_database: AgencyRLSDatabase) -> Callable[[], ProvisionReport]:
    """``agency_rls_provision()``: make the roles follow rows you wrote through ``agency_rls_database.connect()``."""
    return agency_rls_database.provision


@pytest.fixture(scope="session")
def agency_rls_load_scenario(agency_rls_database: AgencyRLSDatabase) -> Callable[..., Any]:
    """``agency_rls_load_scenario(path)``: a scenario file (``agency-rls check`` format) in place of the rows.

    Returns the checker's ``LoadedScenario`` (labels to ids and role names). A relative path is
    relative to the current directory; ``Path(__file__).parent / "x.yaml"`` is safer in a test.
    """
    return agency_rls_database.load_scenario


@pytest.fixture(scope="session")
def agency_rls_connect_as(agency_rls_database: AgencyRLSDatabase) -> Iterator[ConnectAs]:
    """``with agency_rls_connect_as(agency="W11") as conn:``: psycopg, as that principal, rolled back after."""
    from agency_rls.pytest_plugin.database import ConnectAs

    connect_as = ConnectAs(agency_rls_database)
    try:
        yield connect_as
    finally:
        connect_as.close()


@pytest.fixture(scope="session")
def agency_rls_session_as(agency_rls_database: AgencyRLSDatabase) -> Iterator[SessionAs]:
    """``with agency_rls_session_as(agency="W11") as session:``: SQLAlchemy 2, as that principal, rolled back after."""
    from agency_rls.pytest_plugin.database import SessionAs

    session_as = SessionAs(agency_rls_database)
    try:
        yield session_as
    finally:
        session_as.close()

"""agency_rls.backend.sqlalchemy: sessions and engines acting as one principal in every transaction.

The same leak cases as tests/test_backend_pool.py, through SQLAlchemy 2's own pool (sync and
asyncio, psycopg 3 driver): principals in turn on one physical connection, every transaction of
a session, failed and dirty transactions, prepared statements and server-side cursors across
principals, threads and asyncio tasks on a shared engine, refusals before any query.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from agency_rls.backend import (
    BackendRoleError,
    InvalidPrincipalName,
    NotAMember,
    NotAPrincipal,
    Principal,
    PrincipalError,
    UnknownPrincipal,
    leftover_state,
)
from agency_rls.backend.hygiene import LeftoverState, require_clean
from agency_rls.backend.sqlalchemy import (
    AsyncPrincipalSession,
    PrincipalSession,
    acting_as,
    acting_as_async,
    async_principal_sessionmaker,
    create_async_engine,
    create_engine,
    principal_sessionmaker,
)
from agency_rls.checks.sample_world import EXPECTED, PRINCIPALS, TABLES, visible_keys
from tests.support import World

CONTRACTS = sa.text("SELECT id FROM public.contract WHERE id > :after")


def sa_url(conninfo: str, driver: str) -> sa.URL:
    """A SQLAlchemy URL for a libpq conninfo (Unix socket or TCP)."""
    params = conninfo_to_dict(conninfo)
    query = {key: str(params[key]) for key in ("host", "port") if params.get(key)}
    return sa.URL.create(
        driver,
        username=str(params["user"]),
        password=None if params.get("password") is None else str(params["password"]),
        database=str(params["dbname"]),
        query=query,
    )


@pytest.fixture
def engine(backend_conninfo: str) -> Iterator[sa.Engine]:
    """One physical connection: every session below runs on it, one after the other."""
    engine = create_engine(sa_url(backend_conninfo, "postgresql+psycopg"), pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def as_principal(world: World, short: str) -> Principal:
    kind, _, code = short.partition("_")
    if kind == "agency":
        return Principal.agency(code.upper())
    if kind == "insurer":
        return Principal.insurer(code.upper())
    return Principal.role(world.role(short))


def contracts_seen(result: sa.Result[Any], keys: dict[Any, str]) -> frozenset[str]:
    return frozenset(keys[row[0]] for row in result)


def assert_clean_backend(world: World, engine: sa.Engine) -> None:
    """The next checkout is a plain backend session: no role, no leftovers, sees nothing."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT current_user, session_user, current_setting('role')")).one()
        assert tuple(row) == (world.role("rls_backend"), world.role("rls_backend"), "none")
        conn.rollback()
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        assert leftover_state(dbapi_connection) == []  # type: ignore[arg-type]
        with pytest.raises(exc.ProgrammingError) as refused:
            conn.execute(sa.text("SELECT count(*) FROM public.contract"))
        assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)


# -- principal A then principal B on the same physical connection ------------------------------------


@pytest.mark.parametrize("check", [False, True], ids=["reset", "reset+check"])
def test_sessions_in_turn_on_one_physical_connection_see_exactly_their_scope(
    world: World, backend_conninfo: str, superuser: psycopg.Connection[Any], check: bool
) -> None:
    engine = create_engine(
        sa_url(backend_conninfo, "postgresql+psycopg"), pool_size=1, max_overflow=0, check=check
    )
    Session = principal_sessionmaker(engine)
    pids: set[int] = set()
    problems: dict[str, dict[str, str]] = {}
    try:
        for short in [*PRINCIPALS, *reversed(PRINCIPALS)]:
            with Session(principal=as_principal(world, short)) as session:
                pid, user = session.execute(sa.text("SELECT pg_backend_pid(), current_user")).one()
                pids.add(pid)
                assert user == world.role(short)
                driver = session.connection().connection.driver_connection
                for table in TABLES:
                    seen = visible_keys(driver, superuser, table, prefix=world.prefix)  # type: ignore[arg-type]
                    if seen != EXPECTED[short][table]:
                        problems.setdefault(short, {})[table] = f"got {sorted(seen)}"
    finally:
        engine.dispose()
    assert len(pids) == 1
    assert problems == {}


def test_every_transaction_of_a_session_acts_as_its_principal(world: World, engine: sa.Engine) -> None:
    Session = principal_sessionmaker(engine)
    who = sa.text("SELECT current_user")
    with Session(agency="W11") as session:
        assert session.principal == Principal.agency("W11")
        assert session.execute(who).scalar() == world.role("agency_w11")
        session.commit()
        assert session.execute(who).scalar() == world.role("agency_w11"), "after commit"
        session.rollback()
        assert session.execute(who).scalar() == world.role("agency_w11"), "after rollback"
        with session.begin_nested():
            assert session.execute(who).scalar() == world.role("agency_w11"), "in a savepoint"
        savepoint = session.begin_nested()
        session.execute(sa.text("SELECT 1"))
        savepoint.rollback()
        assert session.execute(who).scalar() == world.role("agency_w11"), "after a savepoint rollback"
        assert session.connection().execute(who).scalar() == world.role("agency_w11")
    with PrincipalSession(engine, insurer="NL") as session:  # the class works without the factory
        assert session.execute(who).scalar() == world.role("insurer_nl")


# -- failed and dirty transactions --------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing(
    world: World, engine: sa.Engine, contract_keys: dict[Any, str]
) -> None:
    Session = principal_sessionmaker(engine)
    with Session(agency="S1") as session:
        session.execute(sa.text("SET search_path = pg_temp, public"))
        with pytest.raises(exc.DataError):
            session.execute(sa.text("SELECT 1 / 0"))
        session.rollback()
        assert session.execute(sa.text("SELECT current_user")).scalar() == world.role("agency_s1")
    assert_clean_backend(world, engine)
    with Session(agency="W11") as session:
        assert session.execute(sa.text("SHOW search_path")).scalar() == '"$user", public'
        seen = contracts_seen(session.execute(CONTRACTS, {"after": 0}), contract_keys)
        assert seen == EXPECTED["agency_w11"]["contract"]


def test_session_state_committed_by_a_transaction_is_reset(
    world: World, engine: sa.Engine, contract_keys: dict[Any, str]
) -> None:
    Session = principal_sessionmaker(engine)
    with Session(agency="W11") as session:
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        for statement in (
            "DECLARE held CURSOR WITH HOLD FOR SELECT policy_number FROM public.contract",
            "CREATE TEMPORARY TABLE contract (id bigint)",
            "LISTEN agency_events",
            "PREPARE mine AS SELECT policy_number FROM public.contract",
            "SELECT set_config('search_path', 'pg_temp, public', false)",
            f'SET ROLE "{world.role("agency_s1")}"',
        ):
            session.execute(sa.text(statement))
        session.commit()
    assert_clean_backend(world, engine)
    with Session(agency="W12") as session:
        assert session.execute(sa.text("SELECT pg_backend_pid()")).scalar() == pid, "reset, not replaced"
        seen = contracts_seen(session.execute(sa.text("SELECT id FROM contract")), contract_keys)
        assert seen == EXPECTED["agency_w12"]["contract"]
        for statement, error in (
            ("FETCH ALL FROM held", psycopg.errors.InvalidCursorName),
            ("EXECUTE mine", psycopg.errors.InvalidSqlStatementName),
        ):
            with pytest.raises(exc.DBAPIError) as refused, session.begin_nested():
                session.execute(sa.text(statement))
            assert isinstance(refused.value.orig, error)


# -- locks a principal takes (issue 7, lock and storage abuse) ----------------------------------------

#: Session advisory locks a transaction may take: exclusive (twice: they stack), shared, two-key form.
ADVISORY_LOCKS = (
    "SELECT pg_advisory_lock(42), pg_advisory_lock(42)",
    "SELECT pg_advisory_lock_shared(43)",
    "SELECT pg_try_advisory_lock(7, 44)",
)
HELD_BY_ME = sa.text(
    "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
)


def assert_advisory_keys_free(superuser: psycopg.Connection[Any]) -> None:
    """Another session can take every key exclusively at once (then lets go)."""
    keys = "pg_try_advisory_lock(42), pg_try_advisory_lock(43), pg_try_advisory_lock(7, 44)"
    try:
        assert superuser.execute(f"SELECT {keys}").fetchone() == (True, True, True)
    finally:
        superuser.execute("SELECT pg_advisory_unlock_all()")


def held_advisory_modes(superuser: psycopg.Connection[Any], pid: int) -> list[str]:
    rows = superuser.execute(
        "SELECT mode FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = %s ORDER BY 1", (pid,)
    ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("threshold", [5, 0])
def test_lock_and_storage_abuse_session_advisory_lock_released_at_checkin(
    world: World, backend_conninfo: str, superuser: psycopg.Connection[Any], threshold: int
) -> None:
    """Session advisory locks taken as W11 are not held while the connection serves W12 (sync engine)."""
    engine = create_engine(
        sa_url(backend_conninfo, "postgresql+psycopg"),
        pool_size=1,
        max_overflow=0,
        connect_args={"prepare_threshold": threshold},
    )
    Session = principal_sessionmaker(engine)
    try:
        with Session(agency="W11") as session:
            pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            session.execute(sa.text("SET LOCAL lock_timeout = '5s'"))  # fail, not hang, after a failed run
            for statement in ADVISORY_LOCKS:
                session.execute(sa.text(statement))
            assert held_advisory_modes(superuser, pid) == ["ExclusiveLock", "ExclusiveLock", "ShareLock"]
            session.commit()  # the connection goes back to the pool here
        with Session(agency="W12") as session:
            assert session.execute(sa.text("SELECT pg_backend_pid()")).scalar() == pid, "reset, not replaced"
            assert session.execute(sa.text("SELECT current_user")).scalar() == world.role("agency_w12")
            assert session.execute(HELD_BY_ME).scalar() == 0
            assert_advisory_keys_free(superuser)
        with acting_as(engine, agency="W11") as conn:  # Core, and a lock beside other leftovers
            conn.execute(sa.text(ADVISORY_LOCKS[0]))
            conn.execute(sa.text("DECLARE held CURSOR WITH HOLD FOR SELECT 1"))
        with acting_as(engine, agency="W12") as conn:
            assert conn.execute(HELD_BY_ME).scalar() == 0
            assert_advisory_keys_free(superuser)
        assert_clean_backend(world, engine)
    finally:
        engine.dispose()


def test_lock_and_storage_abuse_session_advisory_lock_released_at_checkin_asyncio(
    world: World, backend_conninfo: str, superuser: psycopg.Connection[Any]
) -> None:
    """The same through the asyncio engine's adapted connection (prepare_threshold=0: reset prepared)."""

    async def scenario() -> tuple[int, list[str], int, int]:
        engine: AsyncEngine = create_async_engine(
            sa_url(backend_conninfo, "postgresql+psycopg_async"),
            pool_size=1,
            max_overflow=0,
            connect_args={"prepare_threshold": 0},
        )
        Session = async_principal_sessionmaker(engine)
        try:
            async with Session(agency="W11") as session:
                pid = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
                await session.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                for statement in ADVISORY_LOCKS:
                    await session.execute(sa.text(statement))
                held = held_advisory_modes(superuser, pid)
                await session.commit()  # the connection goes back to the pool here
            async with Session(agency="W12") as session:
                pid_after = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
                left = (await session.execute(HELD_BY_ME)).scalar()
        finally:
            await engine.dispose()
        return pid, held, pid_after, left

    pid, held, pid_after, left = asyncio.run(scenario())
    assert held == ["ExclusiveLock", "ExclusiveLock", "ShareLock"]
    assert pid_after == pid, "reset, not replaced"
    assert left == 0
    assert_advisory_keys_free(superuser)


# -- plan caches and cursors across principals -------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 5])
def test_prepared_statements_and_server_side_cursors_across_principals(
    world: World, backend_conninfo: str, contract_keys: dict[Any, str], threshold: int
) -> None:
    engine = create_engine(
        sa_url(backend_conninfo, "postgresql+psycopg"),
        pool_size=1,
        max_overflow=0,
        connect_args={"prepare_threshold": threshold},
    )
    Session = principal_sessionmaker(engine)
    try:
        for short in ("agency_s1", "agency_w11", "agency_s1", "insurer_gw1", "staff_nl_at_m1", "agency_w11"):
            expected = EXPECTED[short]["contract"]
            with Session(principal=as_principal(world, short)) as session:
                for _ in range(threshold + 3):
                    assert contracts_seen(session.execute(CONTRACTS, {"after": 0}), contract_keys) == expected
                prepared = session.execute(
                    sa.text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE :pattern"),
                    {"pattern": "SELECT id FROM public.contract WHERE id > $1"},
                ).scalar()
                assert prepared == 1, "the query must have been prepared by psycopg"
                streamed = session.execute(
                    CONTRACTS, {"after": 0}, execution_options={"stream_results": True}
                )
                assert contracts_seen(streamed, contract_keys) == expected
    finally:
        engine.dispose()


# -- many threads, asyncio tasks ----------------------------------------------------------------------


def test_threads_with_random_principals_on_a_shared_engine(
    world: World, backend_conninfo: str, contract_keys: dict[Any, str]
) -> None:
    engine = create_engine(sa_url(backend_conninfo, "postgresql+psycopg"), pool_size=3, max_overflow=0)
    Session = principal_sessionmaker(engine)
    failures: list[str] = []
    served: dict[int, set[str]] = {}
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(30):
            short = rng.choice(PRINCIPALS)
            try:
                with Session(principal=as_principal(world, short)) as session:
                    pid, user = session.execute(sa.text("SELECT pg_backend_pid(), current_user")).one()
                    seen = contracts_seen(session.execute(CONTRACTS, {"after": 0}), contract_keys)
                with lock:
                    served.setdefault(pid, set()).add(short)
                    if user != world.role(short) or seen != EXPECTED[short]["contract"]:
                        failures.append(f"{short}: acted as {user}, saw {sorted(seen)}")
            except Exception as error:
                with lock:
                    failures.append(f"{short}: {type(error).__name__}: {error}")

    try:
        workers = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in workers)
    finally:
        engine.dispose()
    assert failures == []
    assert len(served) <= 3
    assert max(len(principals) for principals in served.values()) >= 3


def test_asyncio_sessions_and_connections_with_random_principals(
    world: World, backend_conninfo: str, contract_keys: dict[Any, str]
) -> None:
    async def scenario() -> tuple[list[str], dict[int, set[str]]]:
        engine: AsyncEngine = create_async_engine(
            sa_url(backend_conninfo, "postgresql+psycopg_async"), pool_size=3, max_overflow=0
        )
        Session = async_principal_sessionmaker(engine)
        failures: list[str] = []
        served: dict[int, set[str]] = {}

        async def task(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(10):
                short = rng.choice(PRINCIPALS)
                try:
                    if rng.random() < 0.5:
                        async with Session(principal=as_principal(world, short)) as session:
                            assert isinstance(session, AsyncPrincipalSession)
                            pid, user = (
                                await session.execute(sa.text("SELECT pg_backend_pid(), current_user"))
                            ).one()
                            await session.commit()  # the next transaction acts as the principal again
                            seen = contracts_seen(
                                await session.execute(CONTRACTS, {"after": 0}), contract_keys
                            )
                    else:
                        async with acting_as_async(engine, as_principal(world, short)) as conn:
                            pid, user = (
                                await conn.execute(sa.text("SELECT pg_backend_pid(), current_user"))
                            ).one()
                            seen = contracts_seen(await conn.execute(CONTRACTS, {"after": 0}), contract_keys)
                    served.setdefault(pid, set()).add(short)
                    if user != world.role(short) or seen != EXPECTED[short]["contract"]:
                        failures.append(f"{short}: acted as {user}, saw {sorted(seen)}")
                except Exception as error:
                    failures.append(f"{short}: {type(error).__name__}: {error}")

        try:
            await asyncio.gather(*(task(seed) for seed in range(12)))
            with pytest.raises(UnknownPrincipal):
                async with Session(agency="ZZ9") as session:
                    await session.execute(sa.text("SELECT 1"))
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT current_user"))).scalar() == world.role(
                    "rls_backend"
                )
        finally:
            await engine.dispose()
        return failures, served

    failures, served = asyncio.run(scenario())
    assert failures == []
    assert len(served) <= 3
    assert max(len(principals) for principals in served.values()) >= 3


# -- Core, the backend role, refusals -----------------------------------------------------------------


def test_core_acting_as_and_the_backend_role_after_it(
    world: World, engine: sa.Engine, contract_keys: dict[Any, str]
) -> None:
    with acting_as(engine, role=world.role("staff_nl_at_m1")) as conn:
        seen = contracts_seen(conn.execute(CONTRACTS, {"after": 0}), contract_keys)
        assert seen == EXPECTED["staff_nl_at_m1"]["contract"]
    with pytest.raises(RuntimeError), acting_as(engine, agency="W12") as conn:
        conn.execute(sa.text("SET search_path = pg_temp"))
        raise RuntimeError("handler failed")
    assert_clean_backend(world, engine)


REFUSALS: list[tuple[str, dict[str, str], type[PrincipalError]]] = [
    ("unknown agency code", {"agency": "ZZ9"}, UnknownPrincipal),
    ("group role", {"role": "{prefix}rls_agency"}, NotAPrincipal),
    ("the backend itself", {"role": "{prefix}rls_backend"}, NotAPrincipal),
    ("table owner", {"role": "{prefix}rls_owner"}, NotAMember),
    ("superuser", {"role": "postgres"}, NotAMember),
]


@pytest.mark.parametrize(("case", "given", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_surface_from_the_first_statement_and_leave_nothing(
    world: World, engine: sa.Engine, case: str, given: dict[str, str], expected: type[PrincipalError]
) -> None:
    given = {key: value.format(prefix=world.prefix) for key, value in given.items()}
    Session = principal_sessionmaker(engine)
    with Session(**given) as session, pytest.raises(expected):
        session.execute(sa.text("SELECT 1"))
    assert_clean_backend(world, engine)
    ran = False
    with pytest.raises(expected), acting_as(engine, **given):
        ran = True
    assert not ran
    assert_clean_backend(world, engine)


def test_invalid_names_are_refused_when_the_session_is_made(engine: sa.Engine) -> None:
    Session = principal_sessionmaker(engine)
    for given in ({"agency": 'W11"; RESET ROLE; --'}, {"role": "r" * 64}, {"insurer": ""}):
        with pytest.raises(InvalidPrincipalName):
            Session(**given)
    with pytest.raises(TypeError):
        Session()


def test_a_privileged_login_is_refused(world: World) -> None:
    engine = create_engine(sa_url(world.db.conninfo, "postgresql+psycopg"))
    try:
        with pytest.raises(exc.ProgrammingError) as refused, engine.connect():
            pass
        assert isinstance(refused.value.orig, BackendRoleError)
    finally:
        engine.dispose()


def test_require_clean_refuses_a_dirty_connection(world: World, backend_conninfo: str) -> None:
    """The checkout check (``check=True``) on its own: a connection with leftovers is refused."""
    with psycopg.connect(backend_conninfo, autocommit=True) as conn:
        require_clean(conn)
        conn.execute(f'SET ROLE "{world.role("agency_w11")}"')
        with pytest.raises(LeftoverState, match="role"):
            require_clean(conn)

"""agency_rls.backend.PrincipalPool: one principal per transaction on shared backend connections, no leaks.

Threats 14, 15, 21-23 and attack 17/20 of ``threats.md``, against the real server and a real
psycopg_pool: principals in turn on one physical connection, failed and dirty requests, prepared
statements and server-side cursors reused across principals, many threads on a shared pool, the
backend role after a block, direct logins that try to switch, and refusals before any query.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from agency_rls.backend import (
    BackendRoleError,
    InvalidPrincipalName,
    NotAMember,
    NotAPrincipal,
    Principal,
    PrincipalError,
    PrincipalPool,
    UnknownPrincipal,
    leftover_state,
    set_local_principal,
)
from agency_rls.checks.sample_world import AGENCY_IDS, EXPECTED, PRINCIPALS, TABLES, visible_keys
from tests.support import World

AGENCY_PRINCIPALS = tuple(p for p in PRINCIPALS if p.startswith("agency_"))
PROBE_SCHEMA = "backend_probe"

#: The same question asked five ways; each must return exactly the acting principal's contracts.
CONTRACT_QUERIES: dict[str, str] = {
    "plain": "SELECT policy_number FROM public.contract WHERE id > %s",
    "subquery": (
        "SELECT policy_number FROM public.contract WHERE id IN (SELECT c.id FROM public.contract AS c"
        " WHERE c.id > %s)"
    ),
    "cte": "WITH c AS (SELECT * FROM public.contract WHERE id > %s) SELECT policy_number FROM c",
    "view": f"SELECT policy_number FROM {PROBE_SCHEMA}.contracts WHERE id > %s",
    "sql_function": f"SELECT policy_number FROM {PROBE_SCHEMA}.contracts_after(%s)",
}


@pytest.fixture(scope="module")
def probe_objects(world: World, superuser: psycopg.Connection[Any]) -> Iterator[None]:
    """A security-invoker view and an SQL function over contract, for the plan-cache cases (attack 23)."""
    groups = sql.SQL(", ").join(sql.Identifier(world.role(g)) for g in ("rls_agency", "rls_insurer"))
    schema = sql.Identifier(PROBE_SCHEMA)
    superuser.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    try:
        superuser.execute(
            sql.SQL(
                """
                CREATE VIEW {schema}.contracts WITH (security_invoker = true) AS
                    SELECT id, policy_number FROM public.contract;
                CREATE FUNCTION {schema}.contracts_after(after bigint) RETURNS TABLE (policy_number text)
                    LANGUAGE sql STABLE SECURITY INVOKER
                    SET search_path = pg_catalog, pg_temp
                    AS 'SELECT c.policy_number FROM public.contract AS c WHERE c.id > after';
                GRANT USAGE ON SCHEMA {schema} TO {groups};
                GRANT SELECT ON {schema}.contracts TO {groups};
                REVOKE ALL ON FUNCTION {schema}.contracts_after(bigint) FROM PUBLIC;
                GRANT EXECUTE ON FUNCTION {schema}.contracts_after(bigint) TO {groups};
                """
            ).format(schema=schema, groups=groups)
        )
        yield
    finally:
        superuser.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


def pool_of(conninfo: str, **options: Any) -> PrincipalPool:
    options.setdefault("min_size", 1)
    options.setdefault("max_size", 1)
    return PrincipalPool(conninfo, timeout=10.0, **options)


def as_principal(world: World, short: str) -> Principal:
    """How a backend names each sample principal: agencies and insurers by code, the staff by role."""
    kind, _, code = short.partition("_")
    if kind == "agency":
        return Principal.agency(code.upper())
    if kind == "insurer":
        return Principal.insurer(code.upper())
    return Principal.role(world.role(short))


def contracts_of(rows: list[tuple[Any, ...]]) -> frozenset[str]:
    return frozenset(str(row[0]) for row in rows)


def assert_clean_backend(world: World, pool: PrincipalPool) -> None:
    """The next checkout is a plain backend session: no transaction, no role, no leftovers, sees nothing."""
    with pool.pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT current_user, session_user, current_setting('role')").fetchone() == (
            world.role("rls_backend"),
            world.role("rls_backend"),
            "none",
        )
        assert leftover_state(conn) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM public.contract")


# -- principal A then principal B on the same physical connection (attack 21) -------------------------


@pytest.mark.parametrize("check", [False, True], ids=["reset", "reset+check"])
def test_principals_in_turn_on_one_physical_connection_see_exactly_their_scope(
    world: World, backend_conninfo: str, superuser: psycopg.Connection[Any], check: bool
) -> None:
    order = [*PRINCIPALS, *reversed(PRINCIPALS)]
    pids: set[int] = set()
    problems: dict[str, dict[str, str]] = {}
    with pool_of(backend_conninfo, check=check) as pool:
        for short in order:
            with pool.acting_as(as_principal(world, short)) as conn:
                pid, user = conn.execute("SELECT pg_backend_pid(), current_user").fetchone()  # type: ignore[misc]
                pids.add(pid)
                assert user == world.role(short)
                for table in TABLES:
                    seen = visible_keys(conn, superuser, table, prefix=world.prefix)
                    if seen != EXPECTED[short][table]:
                        problems.setdefault(short, {})[table] = (
                            f"unexpected {sorted(seen - EXPECTED[short][table])}, "
                            f"missing {sorted(EXPECTED[short][table] - seen)}"
                        )
    assert len(pids) == 1, "max_size=1: every block must have run on one physical connection"
    assert problems == {}


def test_codes_and_role_names_resolve_to_the_default_roles(world: World, backend_conninfo: str) -> None:
    with pool_of(backend_conninfo) as pool:
        assert pool.role_name(agency="w11") == world.role("agency_w11")
        assert pool.role_name(agency="W11") == world.role("agency_w11")
        assert pool.role_name(insurer="NL") == world.role("insurer_nl")
        staff = world.role("staff_nl_at_m1")
        assert pool.role_name(role=staff) == staff
        with pool.acting_as(insurer="NL") as conn:
            assert conn.execute("SELECT current_user").fetchone() == (world.role("insurer_nl"),)
        with pool.acting_as(role=staff) as conn:
            rows = conn.execute("SELECT policy_number FROM public.contract").fetchall()
            assert contracts_of(rows) == EXPECTED["staff_nl_at_m1"]["contract"]


# -- failed and dirty requests (attack 22) -----------------------------------------------------------


def test_a_request_that_fails_mid_transaction_leaves_nothing(
    world: World, backend_conninfo: str, superuser: psycopg.Connection[Any]
) -> None:
    marker = f"Leak Probe {secrets.token_hex(4)}"
    with pool_of(backend_conninfo) as pool:
        with pytest.raises(psycopg.errors.DivisionByZero), pool.acting_as(agency="S1") as conn:
            conn.execute("SET search_path = pg_temp, public")  # session-level, inside the transaction
            conn.execute("SELECT set_config('agency.note', 'S1 was here', false)")
            conn.execute("SELECT 1 / 0")
        assert_clean_backend(world, pool)

        class RequestFailed(Exception):
            pass

        with pytest.raises(RequestFailed), pool.acting_as(agency="W11") as conn:
            conn.execute(
                "INSERT INTO public.customer (full_name, registered_by_agency_id) VALUES (%s, %s)",
                (marker, AGENCY_IDS["W11"]),
            )
            raise RequestFailed("the handler failed after writing")
        assert_clean_backend(world, pool)

        with pool.acting_as(agency="W11") as conn:
            assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
            assert conn.execute("SELECT current_setting('agency.note', true)").fetchone() in ((None,), ("",))
            names = {row[0] for row in conn.execute("SELECT full_name FROM public.customer")}
            assert marker not in names
            rows = conn.execute("SELECT policy_number FROM public.contract").fetchall()
            assert contracts_of(rows) == EXPECTED["agency_w11"]["contract"]
    found = superuser.execute(
        "SELECT count(*) FROM public.customer WHERE full_name = %s", (marker,)
    ).fetchone()
    assert found == (0,)


def test_session_state_committed_by_a_block_is_reset_before_the_next_checkout(
    world: World, backend_conninfo: str
) -> None:
    """A block that commits a session SET ROLE, settings, a WITH HOLD cursor, a temp table, LISTEN, PREPARE."""
    with pool_of(backend_conninfo) as pool:
        with pool.acting_as(agency="W11") as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()
            conn.execute("DECLARE held CURSOR WITH HOLD FOR SELECT policy_number FROM public.contract")
            conn.execute("CREATE TEMPORARY TABLE contract (policy_number text)")
            conn.execute("LISTEN agency_events")
            conn.execute("PREPARE mine AS SELECT policy_number FROM public.contract")
            conn.execute("SELECT set_config('search_path', 'pg_temp, public', false)")
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(world.role("agency_s1"))))
        assert_clean_backend(world, pool)
        with pool.acting_as(agency="W12") as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == pid, "reset, not replaced"
            assert conn.execute("SELECT current_user").fetchone() == (world.role("agency_w12"),)
            rows = conn.execute("SELECT policy_number FROM contract").fetchall()  # no temp table shadows it
            assert contracts_of(rows) == EXPECTED["agency_w12"]["contract"]
            with pytest.raises(psycopg.errors.InvalidCursorName), conn.transaction():
                conn.execute("FETCH ALL FROM held")
            with pytest.raises(psycopg.errors.InvalidSqlStatementName), conn.transaction():
                conn.execute("EXECUTE mine")


def test_a_with_hold_cursor_left_open_is_gone_for_the_next_principal(
    world: World, backend_conninfo: str
) -> None:
    """psycopg's server-side cursor WITH HOLD, read as S1 and never closed: W11 cannot fetch S1's rows."""
    with pool_of(backend_conninfo) as pool:
        with pool.acting_as(agency="S1") as conn:
            cursor = conn.cursor(name="s1_contracts", withhold=True)
            cursor.execute("SELECT policy_number FROM public.contract")
            assert cursor.fetchone() is not None  # the rest stays on the server, materialised at commit
        with pool.pool.connection() as conn:
            assert leftover_state(conn) == []
        with pool.acting_as(agency="W11") as conn:
            with pytest.raises(psycopg.errors.InvalidCursorName), conn.transaction():
                conn.execute("FETCH ALL FROM s1_contracts")
            rows = conn.execute("SELECT policy_number FROM public.contract").fetchall()
            assert contracts_of(rows) == EXPECTED["agency_w11"]["contract"]


# -- locks a principal takes (issue 7, lock and storage abuse) ----------------------------------------

#: Session advisory locks a request may take: exclusive (twice: they stack), shared, two-key form.
ADVISORY_LOCKS = (
    "SELECT pg_advisory_lock(42), pg_advisory_lock(42)",
    "SELECT pg_advisory_lock_shared(43)",
    "SELECT pg_try_advisory_lock(7, 44)",
)
ADVISORY_LOCKS_OF = (
    "SELECT mode, classid, objid, objsubid FROM pg_catalog.pg_locks"
    " WHERE locktype = 'advisory' AND pid = %s ORDER BY 1, 2, 3, 4"
)


def assert_advisory_keys_free(superuser: psycopg.Connection[Any]) -> None:
    """Another session can take every key exclusively at once (then lets go)."""
    keys = "pg_try_advisory_lock(42), pg_try_advisory_lock(43), pg_try_advisory_lock(7, 44)"
    try:
        assert superuser.execute(f"SELECT {keys}").fetchone() == (True, True, True)
    finally:
        superuser.execute("SELECT pg_advisory_unlock_all()")


@pytest.mark.parametrize(
    "options",
    [{}, {"check": True, "prepare_threshold": 0}],
    ids=["reset", "reset+check,prepare_threshold=0"],
)
def test_lock_and_storage_abuse_session_advisory_lock_released_at_checkin(
    world: World, backend_conninfo: str, superuser: psycopg.Connection[Any], options: dict[str, Any]
) -> None:
    """Session advisory locks taken as W11 are not held while the connection serves W12."""
    with pool_of(backend_conninfo, **options) as pool:
        with pool.acting_as(agency="W11") as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            conn.execute("SET LOCAL lock_timeout = '5s'")  # fail, not hang, behind a lock a failed run left
            for statement in ADVISORY_LOCKS:
                conn.execute(statement)
            held = superuser.execute(ADVISORY_LOCKS_OF, (pid,)).fetchall()
            assert [row[0] for row in held] == ["ExclusiveLock", "ExclusiveLock", "ShareLock"]
        with pool.acting_as(agency="W12") as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == (pid,), "reset, not replaced"
            assert conn.execute("SELECT current_user").fetchone() == (world.role("agency_w12"),)
            assert conn.execute(ADVISORY_LOCKS_OF, (pid,)).fetchall() == []
            assert_advisory_keys_free(superuser)
        # A lock taken alongside other leftovers goes with DISCARD ALL (the dirty path).
        with pool.acting_as(agency="W11") as conn:
            conn.execute(ADVISORY_LOCKS[0])
            conn.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 1")
        with pool.acting_as(agency="W12") as conn:
            assert conn.execute(ADVISORY_LOCKS_OF, (pid,)).fetchall() == []
            assert_advisory_keys_free(superuser)
        assert_clean_backend(world, pool)


# -- plan caches and cursors across principals (threat 15, attack 23) ---------------------------------


@pytest.mark.parametrize("threshold", [0, 5])
@pytest.mark.parametrize("query_name", sorted(CONTRACT_QUERIES))
def test_prepared_statements_reused_across_principals_return_each_principals_rows(
    world: World, backend_conninfo: str, probe_objects: None, threshold: int, query_name: str
) -> None:
    query = CONTRACT_QUERIES[query_name]
    runs = threshold + 3
    with pool_of(backend_conninfo, prepare_threshold=threshold) as pool:
        for short in ("agency_s1", "agency_w11", "agency_s1", "insurer_gw1", "staff_nl_at_m1", "agency_w11"):
            with pool.acting_as(as_principal(world, short)) as conn:
                for _ in range(runs):
                    assert contracts_of(conn.execute(query, (0,)).fetchall()) == EXPECTED[short]["contract"]
                prepared = conn.execute(
                    "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND statement = %s",
                    (query.replace("%s", "$1"),),
                ).fetchone()
                assert prepared == (1,), "the query must have been prepared by psycopg"


def test_explicitly_prepared_statements_and_server_side_cursors_across_principals(
    world: World, backend_conninfo: str, probe_objects: None
) -> None:
    query = CONTRACT_QUERIES["plain"]
    with pool_of(backend_conninfo, prepare_threshold=None) as pool:
        for short in ("agency_s1", "agency_w11", "agency_s2", "agency_w11"):
            with pool.acting_as(as_principal(world, short)) as conn:
                rows = conn.execute(query, (0,), prepare=True).fetchall()
                assert contracts_of(rows) == EXPECTED[short]["contract"]
                for name in ("reused", "reused_scroll"):
                    with conn.cursor(name=name, scrollable=name.endswith("scroll")) as cursor:
                        cursor.execute(CONTRACT_QUERIES["view"], (0,))
                        assert contracts_of(cursor.fetchall()) == EXPECTED[short]["contract"]


# -- many threads, random principals, one shared pool -------------------------------------------------


def test_threads_with_random_principals_never_see_rows_outside_their_scope(
    world: World, backend_conninfo: str, contract_keys: dict[Any, str]
) -> None:
    principals = list(PRINCIPALS)
    scope = {short: EXPECTED[short]["contract"] for short in principals}
    # Marker rows: contracts that one agency principal sees and no other agency principal does
    # (insurer principals see all their insurer's contracts, so they share every row).
    agencies = [p for p in principals if p in AGENCY_PRINCIPALS]
    markers = {p: scope[p] - frozenset().union(*(scope[q] for q in agencies if q != p)) for p in agencies}
    assert sum(1 for rows in markers.values() if rows) >= 4, "the world must give several principals markers"
    others_markers = {
        p: frozenset().union(*(rows for q, rows in markers.items() if q != p)) - scope[p] for p in principals
    }
    all_contracts = frozenset(contract_keys.values())

    threads, transactions = 8, 40
    failures: list[str] = []
    served: dict[int, set[str]] = {}
    lock = threading.Lock()

    def worker(seed: int, pool: PrincipalPool) -> None:
        rng = random.Random(seed)
        for _ in range(transactions):
            short = rng.choice(principals)
            try:
                with pool.acting_as(as_principal(world, short)) as conn:
                    pid, user = conn.execute("SELECT pg_backend_pid(), current_user").fetchone()  # type: ignore[misc]
                    ids = [row[0] for row in conn.execute("SELECT id FROM public.contract")]
                seen = frozenset(contract_keys[i] for i in ids)
                with lock:
                    served.setdefault(pid, set()).add(short)
                    if user != world.role(short):
                        failures.append(f"{short}: acted as {user}")
                    if seen & others_markers[short]:
                        failures.append(
                            f"{short}: saw others' markers {sorted(seen & others_markers[short])}"
                        )
                    if seen & (all_contracts - scope[short]):
                        failures.append(f"{short}: saw rows outside its scope {sorted(seen - scope[short])}")
                    if seen != scope[short]:
                        failures.append(f"{short}: missed {sorted(scope[short] - seen)}")
            except Exception as error:  # collected, so that one failure does not hide the others
                with lock:
                    failures.append(f"{short}: {type(error).__name__}: {error}")

    with pool_of(backend_conninfo, min_size=2, max_size=4) as pool:
        workers = [threading.Thread(target=worker, args=(seed, pool)) for seed in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in workers)
    assert failures == []
    assert len(served) <= 4
    assert max(len(principals_served) for principals_served in served.values()) >= 3, (
        "connections must have been shared between principals"
    )


# -- the backend role, and direct logins (attacks 17, 20) ----------------------------------------------


def test_after_a_block_the_connection_is_the_backend_again_and_sees_nothing(
    world: World, backend_conninfo: str
) -> None:
    with pool_of(backend_conninfo) as pool:
        with pool.acting_as(agency="S1") as conn:
            assert conn.execute("SELECT count(*) FROM public.contract").fetchone() != (0,)
        with pool.pool.connection() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (world.role("rls_backend"),)
            for table in TABLES:
                if table == "insurer":
                    continue
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))


def test_nothing_the_api_sets_outlives_the_transaction(world: World, backend_conninfo: str) -> None:
    """Without any pool reset: what PgBouncer in transaction mode relies on."""
    with psycopg.connect(backend_conninfo, autocommit=True) as conn:
        for short in ("agency_s1", "insurer_nl", "staff_nl_at_m1"):
            with conn.transaction():
                set_local_principal(conn, world.role(short))
                assert conn.execute("SELECT current_user").fetchone() == (world.role(short),)
            assert conn.execute("SELECT current_user, current_setting('role')").fetchone() == (
                world.role("rls_backend"),
                "none",
            )
            assert conn.execute("SELECT name FROM pg_settings WHERE source = 'session'").fetchall() == []
            assert leftover_state(conn) == []


def test_set_local_principal_outside_a_transaction_is_refused(world: World, backend_conninfo: str) -> None:
    with psycopg.connect(backend_conninfo, autocommit=True) as conn:
        with pytest.raises(psycopg.ProgrammingError, match="inside an open transaction"):
            set_local_principal(conn, world.role("agency_s1"))
        assert conn.execute("SELECT current_user").fetchone() == (world.role("rls_backend"),)


def test_a_principal_logged_in_directly_cannot_switch_to_another(world: World) -> None:
    other = sql.Identifier(world.role("agency_s1"))
    attempts = [
        sql.SQL("SET ROLE {}").format(other),
        sql.SQL("SET LOCAL ROLE {}").format(other),
        sql.SQL("SELECT set_config('role', {}, false)").format(sql.Literal(world.role("agency_s1"))),
        sql.SQL("SELECT set_config('role', {}, true)").format(sql.Literal(world.role("agency_s1"))),
        sql.SQL("SET SESSION AUTHORIZATION {}").format(other),
    ]
    with world.login_as("agency_w11") as conn:
        for attempt in attempts:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)
            conn.rollback()
        with pytest.raises(NotAMember), conn.transaction():
            set_local_principal(conn, world.role("agency_s1"))
        assert conn.execute("SELECT current_user, session_user").fetchone() == (
            world.role("agency_w11"),
            world.role("agency_w11"),
        )
        rows = conn.execute("SELECT policy_number FROM public.contract").fetchall()
        assert contracts_of(rows) == EXPECTED["agency_w11"]["contract"]


def test_a_privileged_login_is_refused(world: World) -> None:
    with pytest.raises(BackendRoleError):
        PrincipalPool(world.db.conninfo, timeout=10.0)


# -- refusals before any query (attack 39) ------------------------------------------------------------


@pytest.fixture(scope="module")
def stray_roles(world: World, superuser: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    """A role the backend is not a member of, and one it reaches that has no principal row."""
    token = secrets.token_hex(3)
    names = {"not_granted": world.role(f"probe_{token}_a"), "no_row": world.role(f"probe_{token}_b")}
    backend = sql.Identifier(world.role("rls_backend"))
    superuser.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names["not_granted"])))
    superuser.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names["no_row"])))
    superuser.execute(
        sql.SQL("GRANT {} TO {}").format(
            sql.Identifier(world.role("rls_agency")), sql.Identifier(names["no_row"])
        )
    )
    superuser.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(names["no_row"]), backend))
    try:
        yield names
    finally:
        for name in names.values():
            superuser.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


REFUSALS: list[tuple[str, dict[str, str], type[PrincipalError]]] = [
    ("unknown agency code", {"agency": "ZZ9"}, UnknownPrincipal),
    ("unknown insurer code", {"insurer": "GW9"}, UnknownPrincipal),
    ("role name in the wrong case", {"role": "{prefix}AGENCY_W11"}, InvalidPrincipalName),
    ("group role", {"role": "{prefix}rls_agency"}, NotAPrincipal),
    ("writer group role", {"role": "{prefix}rls_agency_writer"}, NotAPrincipal),
    ("insurer group role", {"role": "{prefix}rls_insurer"}, NotAPrincipal),
    ("the backend itself", {"role": "{prefix}rls_backend"}, NotAPrincipal),
    ("reachable role without principal row", {"role": "{no_row}"}, NotAPrincipal),
    ("fresh role not granted to the backend", {"role": "{not_granted}"}, NotAMember),
    ("table owner", {"role": "{prefix}rls_owner"}, NotAMember),
    ("helper", {"role": "{prefix}rls_helper"}, NotAMember),
    ("superuser", {"role": "postgres"}, NotAMember),
    ("double quote", {"agency": 'W11" SET ROLE postgres; --'}, InvalidPrincipalName),
    ("single quote", {"role": "{prefix}agency_w11'"}, InvalidPrincipalName),
    ("space", {"agency": "W 11"}, InvalidPrincipalName),
    ("newline", {"insurer": "NL\n"}, InvalidPrincipalName),
    ("64 bytes", {"role": "{prefix}agency_" + "w" * 64}, InvalidPrincipalName),
    ("64 bytes of multibyte", {"agency": "é" * 29}, InvalidPrincipalName),
    ("empty code", {"agency": ""}, InvalidPrincipalName),
    ("predefined role", {"role": "pg_read_all_data"}, InvalidPrincipalName),
]


@pytest.mark.parametrize(("case", "given", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_typed_and_raised_before_any_query(
    world: World,
    backend_conninfo: str,
    stray_roles: dict[str, str],
    case: str,
    given: dict[str, str],
    expected: type[PrincipalError],
) -> None:
    names = {"prefix": world.prefix, **stray_roles}
    given = {key: value.format(**names) for key, value in given.items()}
    ran = False
    with pool_of(backend_conninfo) as pool:
        with pytest.raises(expected) as raised:
            with pool.acting_as(**given):
                ran = True
        assert type(raised.value) is expected
        assert not ran, "the block must not run"
        assert_clean_backend(world, pool)
        with pool.acting_as(agency="W11") as conn:  # the pool still serves
            assert (
                contracts_of(conn.execute("SELECT policy_number FROM public.contract").fetchall())
                == (EXPECTED["agency_w11"]["contract"])
            )


def test_principal_arguments_are_checked(backend_conninfo: str) -> None:
    with pool_of(backend_conninfo) as pool:
        for bad in ({}, {"agency": "W11", "insurer": "NL"}):
            with pytest.raises(TypeError), pool.acting_as(**bad):
                pass
        with pytest.raises(TypeError), pool.acting_as("W11"):  # type: ignore[arg-type]
            pass
    assert issubclass(InvalidPrincipalName, UnknownPrincipal)
    assert Principal.agency("W11") == Principal("agency", "W11")

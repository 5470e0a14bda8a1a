"""Adversarial review of revision 0008: ``agency_rls.planned_insurer_id()``, declared IMMUTABLE so the
planner folds an insurer principal's insurer into the plan, and compared with the caller at every
statement by ``(SELECT agency_rls.insurer_id()) = agency_rls.planned_insurer_id()``.

The claim under attack (scope_functions.sql): a plan folded for another caller or time returns
nothing, never another insurer's rows. Each test names the attack it tries. What the review found:

- a plan folded while the caller's principal row was not visible (a snapshot older than its
  provisioning, a reload of the principal rows) carried NULL for good: nothing invalidates a cached
  plan when a principal row appears, so the backend's prepared statements (psycopg prepares after
  five executions) showed that insurer nothing for the life of the connection, not "until it is
  planned again". The policies now fall back to the statement's own check when the fold is NULL.

The small world of tests/test_hardening.py, extended by tests/test_planned_identity.py's W12:
insurer NL (1) has contracts 1 and 3 and customers 1 and 3; insurer GW1 (2) contract 2, customer 2.
One notice of each insurer is added here.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.rls_policies.provision import provision
from psycopg import sql

from tests.support import World, set_test_passwords
from tests.test_hardening import visible
from tests.test_planned_identity import small  # noqa: F401  (the fixture)

NOTICES = """
INSERT INTO public.notice (id, insurer_id, addressee_agency_id, kind, contract_id) VALUES
    (1, 1, 2, 'renewal', 1), (2, 2, 1, 'renewal', 2);
"""

#: What each insurer principal reads, table by table (ids; contract_handler by contract).
OWN = {
    "insurer_nl": {"contract": [1, 3], "contract_handler": [1, 3], "customer": [1, 3], "notice": [1]},
    "insurer_gw1": {"contract": [2], "contract_handler": [2], "customer": [2], "notice": [2]},
}

#: Per table: a key to list, and a division-by-zero trap that fires on a row of insurer NL (1).
TRAPS = {
    "contract": ("id", "1 / (insurer_id - 1) IS NOT NULL"),
    "contract_handler": ("contract_id", "1 / (insurer_id - 1) IS NOT NULL"),
    "notice": ("id", "1 / (insurer_id - 1) IS NOT NULL"),
    "customer": (
        "id",
        "1 / ((id - 1) * (id - 3)) IS NOT NULL",
    ),  # NL's customers (party_insurer_ids is not granted)
}


@pytest.fixture
def world2(small: World) -> Iterator[World]:  # noqa: F811
    with small.admin() as admin:
        admin.execute(NOTICES)
    yield small


def set_local_role(cur: psycopg.Cursor, world: World, short: str) -> None:
    cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(world.role(short))))


def keys(world: World, short: str, table: str) -> list[int]:
    key, _ = TRAPS[table]
    with world.acting_as(short) as cur:
        cur.execute(
            sql.SQL("SELECT {k} FROM public.{t} ORDER BY {k}").format(
                k=sql.Identifier(key), t=sql.Identifier(table)
            )
        )
        return [row[0] for row in cur.fetchall()]


def test_each_insurer_reads_exactly_its_own_rows(world2: World) -> None:
    """Baseline for the attacks below: the fold gives each insurer its own rows on every table."""
    for short, tables in OWN.items():
        for table, expected in tables.items():
            assert keys(world2, short, table) == expected, (short, table)


@pytest.mark.parametrize("table", sorted(TRAPS))
def test_a_cursor_planned_for_one_insurer_and_read_by_another_springs_no_trap(
    world2: World, table: str
) -> None:
    """Attack: plan folded for another caller, read through a portal. The backend declares a cursor as
    NL (the plan folds insurer 1 and scans NL's rows), switches to GW1 (SET LOCAL ROLE) before the first
    FETCH (the statement's check runs at the first fetch), and filters with a division by zero that
    every NL row springs. The check is a gate above the scan: nothing is read, nothing is raised."""
    key, trap = TRAPS[table]
    backend = world2.backend
    with backend.transaction(force_rollback=True), backend.cursor() as cur:
        set_local_role(cur, world2, "insurer_nl")
        cur.execute(
            sql.SQL(
                "DECLARE review_0008 CURSOR FOR SELECT {k} FROM public.{t} WHERE {trap} ORDER BY 1"
            ).format(k=sql.Identifier(key), t=sql.Identifier(table), trap=sql.SQL(trap))
        )
        set_local_role(cur, world2, "insurer_gw1")
        cur.execute("FETCH ALL FROM review_0008")
        assert cur.fetchall() == []
    # Declared and read as NL, the same trap is sprung by NL's own rows: the trap is real.
    with backend.transaction(force_rollback=True), backend.cursor() as cur:
        set_local_role(cur, world2, "insurer_nl")
        cur.execute(
            sql.SQL("DECLARE review_0008 CURSOR FOR SELECT {k} FROM public.{t} WHERE {trap}").format(
                k=sql.Identifier(key), t=sql.Identifier(table), trap=sql.SQL(trap)
            )
        )
        with pytest.raises(psycopg.errors.DivisionByZero):
            cur.execute("FETCH ALL FROM review_0008")


@pytest.mark.needs_superuser("a function owned by a member of the insurer group")
def test_a_definer_function_shared_by_two_insurers_never_shows_the_first_ones_rows(world2: World) -> None:
    """Attack: a cached plan shared by two callers. PL/pgSQL keeps a SECURITY DEFINER function's plans
    for the session, and PostgreSQL re-plans for the role in force only by current_user, which inside
    the function is its owner: NL's call folds insurer 1, GW1's call in the same backend session runs
    that plan. GW1 gets nothing (the documented wrong deny of a plan folded for another caller), never
    NL's rows; a session that starts with GW1 gets GW1's."""
    owner = world2.role("review_definer")
    with world2.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        su.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(world2.role("rls_insurer")), sql.Identifier(owner)
            )
        )
        su.execute("CREATE SCHEMA review_0008")
        su.execute("GRANT USAGE ON SCHEMA review_0008 TO PUBLIC")
        su.execute(
            "CREATE FUNCTION review_0008.contracts() RETURNS SETOF bigint LANGUAGE plpgsql SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp"
            " AS $$ BEGIN RETURN QUERY SELECT c.id FROM public.contract AS c ORDER BY c.id; END $$"
        )
        su.execute(
            sql.SQL("ALTER FUNCTION review_0008.contracts() OWNER TO {}").format(sql.Identifier(owner))
        )
    try:

        def contracts(short: str) -> list[int]:
            with world2.acting_as(short) as cur:
                return [row[0] for row in cur.execute("SELECT * FROM review_0008.contracts()").fetchall()]

        assert contracts("insurer_nl") == [1, 3]
        assert contracts("insurer_gw1") == []
        assert contracts("insurer_nl") == [1, 3]
        world2.backend.execute("DISCARD PLANS")
        world2.backend.commit()
        assert contracts("insurer_gw1") == [2]
        assert contracts("insurer_nl") == []
    finally:
        world2.backend.execute("DISCARD PLANS")
        world2.backend.commit()
        with world2.superuser() as su:
            su.execute("DROP SCHEMA review_0008 CASCADE")
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


def test_parallel_plans_compare_the_caller_in_the_leader(world2: World) -> None:
    """Attack: parallel workers. With parallel plans forced, the functions are PARALLEL RESTRICTED, so
    the caller's check stays in the leader (above the Gather) and the workers scan only the folded
    insurer's rows: each insurer reads its own rows, and a cursor folded for NL and read as GW1 reads
    nothing and springs no trap."""
    backend = world2.backend
    version = backend.info.server_version
    force = "debug_parallel_query" if version >= 160000 else "force_parallel_mode"
    settings = [
        f"SET LOCAL {force} = on",
        "SET LOCAL parallel_setup_cost = 0",
        "SET LOCAL parallel_tuple_cost = 0",
        "SET LOCAL min_parallel_table_scan_size = 0",
        "SET LOCAL enable_indexscan = off",
        "SET LOCAL enable_bitmapscan = off",
    ]
    for short, tables in OWN.items():
        for table, expected in tables.items():
            key, _ = TRAPS[table]
            with backend.transaction(force_rollback=True), backend.cursor() as cur:
                for setting in settings:
                    cur.execute(setting)
                set_local_role(cur, world2, short)
                query = sql.SQL("SELECT {k} FROM public.{t} ORDER BY 1").format(
                    k=sql.Identifier(key), t=sql.Identifier(table)
                )
                plan = "\n".join(
                    r[0] for r in cur.execute(sql.SQL("EXPLAIN (COSTS OFF) ") + query).fetchall()
                )
                assert "Gather" in plan, plan
                assert [r[0] for r in cur.execute(query).fetchall()] == expected, (short, table, plan)
    for table, (key, trap) in sorted(TRAPS.items()):
        with backend.transaction(force_rollback=True), backend.cursor() as cur:
            for setting in settings:
                cur.execute(setting)
            set_local_role(cur, world2, "insurer_nl")
            cur.execute(
                sql.SQL("DECLARE review_0008 CURSOR FOR SELECT {k} FROM public.{t} WHERE {trap}").format(
                    k=sql.Identifier(key), t=sql.Identifier(table), trap=sql.SQL(trap)
                )
            )
            set_local_role(cur, world2, "insurer_gw1")
            assert cur.execute("FETCH ALL FROM review_0008").fetchall() == [], table


def test_an_agency_principal_in_the_insurer_group_gains_nothing(world2: World) -> None:
    """Attack: a role that is a member of both the agency and the insurer group. W11 (an agency) given the
    insurer group folds NULL and has no insurer: the insurer policies admit nothing (the customer policy
    before 0008 gave it the customers of every insurer that entrusts it)."""
    before = {table: keys(world2, "agency_w11", table) for table in TRAPS}
    with world2.admin() as admin:
        admin.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(world2.role("rls_insurer")), sql.Identifier(world2.role("agency_w11"))
            )
        )
    try:
        assert {table: keys(world2, "agency_w11", table) for table in TRAPS} == before
        with world2.acting_as("agency_w11") as cur:
            assert cur.execute("SELECT agency_rls.planned_insurer_id()").fetchone() == (None,)
    finally:
        with world2.admin() as admin:
            admin.execute(
                sql.SQL("REVOKE {} FROM {}").format(
                    sql.Identifier(world2.role("rls_insurer")), sql.Identifier(world2.role("agency_w11"))
                )
            )


def test_the_insurer_group_itself_folds_null_and_reads_nothing(world2: World) -> None:
    """Attack: a NULL fold. An insurer principal logged in directly SETs ROLE to its group (allowed: it is
    a member): planned_insurer_id() and insurer_id() are both NULL, and NULL = NULL is not true."""
    with world2.login_as("insurer_nl") as conn:
        set_group = sql.SQL("SET ROLE {}").format(sql.Identifier(world2.role("rls_insurer")))
        if conn.info.server_version >= 160000:
            # From PostgreSQL 16 provision grants the groups WITH SET FALSE: the attack stops here.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(set_group)
            return
        conn.execute(set_group)
        for table, (key, _) in TRAPS.items():
            rows = conn.execute(
                sql.SQL("SELECT {} FROM public.{}").format(sql.Identifier(key), sql.Identifier(table))
            )
            assert rows.fetchall() == [], table


def _prepare(world: World) -> None:
    world.backend.execute("SET plan_cache_mode = force_generic_plan")
    for table, (key, _) in TRAPS.items():
        world.backend.execute(
            sql.SQL("PREPARE {} AS SELECT {} FROM public.{} ORDER BY 1").format(
                sql.Identifier(f"review_0008_{table}"), sql.Identifier(key), sql.Identifier(table)
            )
        )
    world.backend.commit()


def _deallocate(world: World) -> None:
    world.backend.rollback()
    world.backend.execute("DEALLOCATE ALL")
    world.backend.execute("RESET plan_cache_mode")
    world.backend.commit()


def _execute(world: World, short: str) -> dict[str, list[int]]:
    with world.acting_as(short) as cur:
        return {
            table: [
                r[0]
                for r in cur.execute(
                    sql.SQL("EXECUTE {}").format(sql.Identifier(f"review_0008_{table}"))
                ).fetchall()
            ]
            for table in TRAPS
        }


def test_a_plan_made_in_a_snapshot_before_provisioning_recovers_in_the_next_transaction(
    world2: World,
) -> None:
    """Finding (availability). Attack: a plan folded while the principal row was not visible. A
    REPEATABLE READ transaction of the backend takes its snapshot, insurer principal GW2 is provisioned
    (its row, role and grants commit), the backend acts as GW2 in that transaction: the prepared
    statements are planned for GW2 with NULL folded and return nothing (the snapshot cannot see GW2).
    From the next transaction on GW2 must read its rows: nothing re-plans a cached plan when a
    principal row appears, so with NULL folded for good it read nothing for the life of the session."""
    role = world2.role("insurer_gw2")
    _prepare(world2)
    try:
        backend = world2.backend
        with backend.transaction(), backend.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT 1")  # the snapshot
            with world2.admin() as admin:
                admin.execute(
                    "INSERT INTO public.principal (role_name, kind, insurer_id) VALUES (%s, 'insurer', 2)",
                    (role,),
                )
                provision(admin, login=True)
                set_test_passwords(admin, world2.prefix)
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            for table in TRAPS:
                rows = cur.execute(
                    sql.SQL("EXECUTE {}").format(sql.Identifier(f"review_0008_{table}"))
                ).fetchall()
                assert rows == [], table
        assert _execute(world2, "insurer_gw2") == OWN["insurer_gw1"]
        assert _execute(world2, "insurer_nl") == OWN["insurer_nl"]
    finally:
        _deallocate(world2)


def test_a_plan_made_while_the_principal_row_was_reloaded_recovers_when_it_is_back(world2: World) -> None:
    """Finding (availability). Attack: a plan folded while the principal row was absent. The principal
    rows are reloaded (deleted, then inserted again in a later transaction: a reload of the same rows
    is accepted); an invalidation in between (here ANALYZE, as autovacuum does) makes the backend plan
    NL's statements again with NULL folded. Once the row is back NL must read its rows again."""
    role = world2.role("insurer_nl")
    _prepare(world2)
    try:
        assert _execute(world2, "insurer_nl") == OWN["insurer_nl"]
        with world2.admin() as admin:
            row = admin.execute(
                "SELECT kind, agency_id, insurer_id FROM public.principal WHERE role_name = %s", (role,)
            ).fetchone()
            admin.execute("DELETE FROM public.principal WHERE role_name = %s", (role,))
            try:
                admin.execute(
                    "ANALYZE public.contract, public.contract_handler, public.customer, public.notice"
                )
                assert _execute(world2, "insurer_nl") == {table: [] for table in TRAPS}
            finally:
                admin.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id) VALUES (%s, %s, %s, %s)",
                    (role, *row),  # type: ignore[misc]
                )
        assert _execute(world2, "insurer_nl") == OWN["insurer_nl"]
    finally:
        _deallocate(world2)


def test_planned_insurer_id_tells_a_principal_only_its_own_insurer(world2: World) -> None:
    """Attack: calling the folded function directly and reading EXPLAIN. Each principal learns only its
    own insurer (NULL for agencies); the backend role cannot call it; EXPLAIN shows the caller's own."""
    assert visible(world2, "insurer_gw1", "contract") == [2]
    for short, expected in (("insurer_nl", 1), ("insurer_gw1", 2), ("agency_s1", None), ("agency_w11", None)):
        with world2.acting_as(short) as cur:
            assert cur.execute("SELECT agency_rls.planned_insurer_id()").fetchone() == (expected,)
    with world2.acting_as("insurer_gw1") as cur:
        plan = "\n".join(
            r[0] for r in cur.execute("EXPLAIN (COSTS OFF) SELECT id FROM public.notice").fetchall()
        )
    assert "'2'::bigint" in plan and "'1'::bigint" not in plan, plan
    with world2.backend.transaction(force_rollback=True), world2.backend.cursor() as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("SELECT agency_rls.planned_insurer_id()")

"""The caller's agencies folded into the plan (revision 0007, ``agency_rls.planned_agency_ids()``),
and an insurer principal's insurer (revision 0008, ``agency_rls.planned_insurer_id()``).

The function is declared IMMUTABLE so that the planner evaluates it once, while planning, and
estimates the caller's own share of contract and customer. It is safe only if (scope_functions.sql):
it only adds candidates (ORed with the agencies of the statement, ANDed with the rule), so a plan
folded for another time or caller never hides a row and never shows one; and a cached plan is
re-planned for another role. The adversarial review of 0007 found the first version (a supervision
trigger re-planning by ALTER FUNCTION) both racy and lockable by any principal: the tests below
guard its cases. These tests pin each of those, in the small world of
tests/test_hardening.py (S1 supervises W11; W11 handles NL-1; S1 handles GW1-1), extended here by
W12 (agency 3), which handles NL-2 (contract 3) and which S1 does not supervise yet.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.support import World
from tests.test_hardening import small_world, visible

W12 = """
INSERT INTO public.agency (id, code, name) VALUES (3, 'W12', 'Working too');
INSERT INTO public.customer (id, full_name) VALUES (3, 'Abe Yui');
INSERT INTO public.contract (id, insurer_id, policy_number, policyholder_id, source)
    VALUES (3, 1, 'NL-2', 3, 'direct');
INSERT INTO public.contract_handler (contract_id, agency_id, valid_from) VALUES (3, 3, now() - interval '1 year');
"""


@pytest.fixture
def small(server: str) -> Iterator[World]:
    with small_world(server, "planned") as built:
        with built.admin() as admin:
            admin.execute(W12)
        yield built


def plan_text(world: World, short: str, query: str) -> str:
    with world.acting_as(short) as cur:
        cur.execute("EXPLAIN (COSTS OFF) " + query)
        return "\n".join(row[0] for row in cur.fetchall())


def test_the_plan_carries_the_callers_agencies_as_a_constant(small: World) -> None:
    """S1 (agency 1) supervises W11 (2): the GIN condition names exactly {1,2}, not an InitPlan."""
    plan = plan_text(small, "agency_s1", "SELECT id FROM public.contract")
    assert "(handler_agency_ids && '{1,2}'::bigint[])" in plan, plan
    plan = plan_text(small, "agency_w11", "SELECT id FROM public.customer")
    assert "(handler_agency_ids && '{2}'::bigint[])" in plan, plan
    # Insurers are not agencies: their contract policy has no overlap at all.
    assert "handler_agency_ids" not in plan_text(small, "insurer_nl", "SELECT id FROM public.contract")


def test_future_supervision_is_planned_for_and_ended_supervision_is_not(small: World) -> None:
    with small.admin() as admin:
        admin.execute(
            "INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)"
            " VALUES (1, 3, now() + interval '1 day')"
        )
        plan = plan_text(small, "agency_s1", "SELECT id FROM public.contract")
        assert "'{1,2,3}'::bigint[]" in plan, plan
        # Planned for, but the rule decides at the statement: W12's contract is not S1's yet.
        assert visible(small, "agency_s1", "contract") == [1, 2]
        admin.execute(
            "UPDATE public.supervision SET valid_to = now() - interval '1 hour' WHERE working_agency_id = 3"
        )
        admin.execute(
            "UPDATE public.supervision SET valid_from = now() - interval '2 hours' WHERE working_agency_id = 3"
        )
        assert "'{1,2}'::bigint[]" in plan_text(small, "agency_s1", "SELECT id FROM public.contract")


def _prepared_contract_ids(world: World, short: str) -> list[int]:
    with world.acting_as(short) as cur:
        cur.execute("EXECUTE planned_identity_contracts")
        return [row[0] for row in cur.fetchall()]


def test_a_plan_folded_before_a_supervision_still_finds_its_rows(small: World) -> None:
    """A generic plan S1 made in a snapshot older than a new supervision keeps {1,2} folded in it.

    The review's case: a REPEATABLE READ transaction plans (and caches) the statement after the
    supervision committed but with a snapshot from before it. The folded arm is stale for good (the
    plan says '{1,2}'); the statement's own arm finds W12's contract from the next transaction on.
    """
    backend = small.backend
    backend.execute("SET plan_cache_mode = force_generic_plan")
    backend.execute("PREPARE planned_identity_contracts AS SELECT id FROM public.contract ORDER BY id")
    backend.commit()
    try:
        with backend.transaction(), backend.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(small.role("agency_s1"))))
            cur.execute("SELECT 1")  # the snapshot is taken here
            with small.admin() as admin:
                admin.execute(
                    "INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)"
                    " VALUES (1, 3, now() - interval '1 day')"
                )
            cur.execute("EXECUTE planned_identity_contracts")  # re-planned in the old snapshot
            assert [row[0] for row in cur.fetchall()] == [1, 2]
        assert _prepared_contract_ids(small, "agency_s1") == [1, 2, 3]
        with small.acting_as("agency_s1") as cur:
            cur.execute("EXPLAIN (COSTS OFF) EXECUTE planned_identity_contracts")
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "'{1,2}'::bigint[]" in plan, "the folded arm should still be the stale one here"
        # The cached plan never serves another principal (re-planned per role).
        assert _prepared_contract_ids(small, "agency_w11") == [1]
    finally:
        backend.execute("DEALLOCATE planned_identity_contracts")
        backend.execute("RESET plan_cache_mode")
        backend.commit()


def test_supervision_writers_wait_for_each_other_without_deadlock(small: World) -> None:
    """T1 writes row a, T2 row b, T1 row b: T1 waits for T2, as it would without row level security.

    (The first 0007 took a lock in an AFTER STATEMENT trigger, after the rows: this deadlocked.)
    """
    with small.admin() as admin:
        admin.execute(
            "INSERT INTO public.supervision (id, supervising_agency_id, working_agency_id, valid_from)"
            " VALUES (100, 1, 3, now() - interval '1 day')"
        )
        (first_id,) = admin.execute(
            "SELECT id FROM public.supervision WHERE working_agency_id = 2"
        ).fetchone()
    first, second = small.admin(), small.admin()
    errors: list[BaseException] = []
    try:
        first.autocommit = second.autocommit = False
        first.execute("UPDATE public.supervision SET valid_to = NULL WHERE id = %s", (first_id,))
        second.execute("UPDATE public.supervision SET valid_to = NULL WHERE id = 100")

        def first_writes_b() -> None:
            try:
                first.execute(
                    "UPDATE public.supervision SET valid_to = now() + interval '1 year' WHERE id = 100"
                )
                first.commit()
            except BaseException as error:  # reported below
                errors.append(error)

        thread = threading.Thread(target=first_writes_b)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the first writer should wait for the second one's row"
        second.commit()
        thread.join(timeout=30)
        assert not thread.is_alive() and errors == []
    finally:
        first.close()
        second.close()
    assert visible(small, "agency_s1", "contract") == [1, 2, 3]


def test_a_principal_cannot_block_supervision_writes(small: World) -> None:
    """Any lock a principal can take (advisory locks are PUBLIC) does not stop a supervision write."""
    with small.login_as("agency_w11") as principal:
        principal.execute(
            "SELECT pg_advisory_lock('pg_catalog.pg_proc'::regclass::oid::integer,"
            " 'agency_rls.planned_agency_ids()'::regprocedure::oid::integer)"
        )
        with small.admin() as admin:
            admin.execute("SET lock_timeout = '5s'")
            admin.execute(
                "INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)"
                " VALUES (1, 3, now() - interval '1 day')"
            )
    assert visible(small, "agency_s1", "contract") == [1, 2, 3]


def test_planned_agencies_are_not_a_grant(small: World) -> None:
    """Calling the function gives a principal nothing it could not see; other roles get nothing."""
    with small.acting_as("agency_w11") as cur:
        cur.execute("SELECT agency_rls.planned_agency_ids()")
        assert cur.fetchone() == ([2],)
    with small.acting_as("insurer_nl") as cur:
        cur.execute("SELECT agency_rls.planned_agency_ids()")
        assert cur.fetchone() == ([],)
    with small.backend.transaction(force_rollback=True), small.backend.cursor() as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("SELECT agency_rls.planned_agency_ids()")


def test_seconded_staff_plans_with_its_insurer_and_no_one_else_does(world: World) -> None:
    """The restriction is folded to an equality for the restricted principal, to nothing for others."""
    from agency_rls.checks.sample_world import INSURER_IDS

    nl = INSURER_IDS["NL"]
    for table in ("contract", "notice"):
        plan = plan_text(world, "staff_nl_at_m1", f"SELECT id FROM public.{table}")
        assert f"(insurer_id = '{nl}'::bigint)" in plan, plan
        plan = plan_text(world, "agency_m1", f"SELECT id FROM public.{table}")
        assert "planned_restriction" not in plan and f"insurer_id = '{nl}'" not in plan, plan
    with world.acting_as("staff_nl_at_m1") as cur:
        assert cur.execute("SELECT agency_rls.planned_restriction()").fetchone() == (nl,)
    with world.acting_as("agency_m1") as cur:
        assert cur.execute("SELECT agency_rls.planned_restriction()").fetchone() == (None,)


def test_the_backend_never_jit_compiles(world: World) -> None:
    """Large principals' RLS plans cost above jit_above_cost: 180 ms of compiling for a 7 ms page."""
    with world.acting_as("agency_s1") as cur:
        assert cur.execute("SHOW jit").fetchone() == ("off",)
    with world.backend.transaction(force_rollback=True):
        world.backend.execute("SET jit = on")
    world.backend.execute("RESET ALL")  # what the pool's check-in does: back to the role's setting
    assert world.backend.execute("SHOW jit").fetchone() == ("off",)
    world.backend.commit()


# Revision 0008: insurer principals ---------------------------------------------------------------

#: An InitPlan's value in EXPLAIN: "$1" up to PostgreSQL 17, "(InitPlan 2).col1" from 18.
PARAM = r"(?:\$\d+|\(InitPlan \d+\)\.col1)"
#: The caller compared with the folded insurer NL (id 1) once per statement.
ONE_TIME_NL = rf"One-Time Filter: \({PARAM} = '1'::bigint\)"


def test_insurers_plan_with_their_own_insurer_checked_once_per_statement(small: World) -> None:
    """The insurer (NL, id 1) is a constant of the plan, and the plan compares it with the caller."""
    for table in ("contract", "contract_handler", "notice"):
        plan = plan_text(small, "insurer_nl", f"SELECT id FROM public.{table}")
        # An index condition on the constant; the caller compared with it once (a one-time filter).
        assert "Index Cond: " in plan and "insurer_id = '1'::bigint)" in plan, plan
        assert re.search(ONE_TIME_NL, plan), plan
    plan = plan_text(small, "insurer_nl", "SELECT id FROM public.customer")
    # On customer the comparison stays in the row filter (PostgreSQL makes a one-time filter of a
    # policy's comparison only through an equality with a column): still one InitPlan and a constant.
    assert re.search(
        rf"Filter: \(\(party_insurer_ids @> '\{{1\}}'::bigint\[\]\) AND \({PARAM} = '1'::bigint\)\)", plan
    ), plan
    # Agencies' plans do not carry it.
    assert "planned_insurer_id" not in plan_text(small, "agency_s1", "SELECT id FROM public.contract")
    with small.acting_as("insurer_nl") as cur:
        assert cur.execute("SELECT agency_rls.planned_insurer_id()").fetchone() == (1,)
    with small.acting_as("agency_s1") as cur:
        assert cur.execute("SELECT agency_rls.planned_insurer_id()").fetchone() == (None,)
    assert visible(small, "insurer_nl", "contract") == [1, 3]


def test_a_plan_folded_for_an_insurer_shows_nothing_once_its_principal_row_is_gone(small: World) -> None:
    """The folded insurer is never the only gate: a cached generic plan of insurer NL, executed after
    its principal row was deleted, returns nothing (the statement's own check), and everything again
    once the row is back."""
    backend = small.backend
    backend.execute("SET plan_cache_mode = force_generic_plan")
    backend.execute("PREPARE planned_identity_contracts AS SELECT id FROM public.contract ORDER BY id")
    backend.commit()
    role = small.role("insurer_nl")
    try:
        assert _prepared_contract_ids(small, "insurer_nl") == [1, 3]
        with small.admin() as admin:
            row = admin.execute(
                "SELECT kind, agency_id, insurer_id FROM public.principal WHERE role_name = %s", (role,)
            ).fetchone()
            admin.execute("DELETE FROM public.principal WHERE role_name = %s", (role,))
            try:
                with small.acting_as("insurer_nl") as cur:
                    cur.execute("EXPLAIN (COSTS OFF) EXECUTE planned_identity_contracts")
                    plan = "\n".join(r[0] for r in cur.fetchall())
                assert "'1'::bigint" in plan, "the cached plan should still carry the folded insurer"
                assert _prepared_contract_ids(small, "insurer_nl") == []
            finally:
                admin.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id) VALUES (%s, %s, %s, %s)",
                    (role, *row),  # type: ignore[misc]
                )
        assert _prepared_contract_ids(small, "insurer_nl") == [1, 3]
    finally:
        backend.execute("DEALLOCATE planned_identity_contracts")
        backend.execute("RESET plan_cache_mode")
        backend.commit()

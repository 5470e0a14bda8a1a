"""The caller's agencies folded into the plan (revision 0007, ``agency_rls.planned_agency_ids()``).

The function is declared IMMUTABLE so that the planner evaluates it once, while planning, and
estimates the caller's own share of contract and customer. It is safe only if (scope_functions.sql):
it only narrows what the per-statement rule admits; a cached plan never serves another role; and a
supervision change re-plans what folded it. These tests pin each of those, in the small world of
tests/test_hardening.py (S1 supervises W11; W11 handles NL-1; S1 handles GW1-1), extended here by
W12 (agency 3), which handles NL-2 (contract 3) and which S1 does not supervise yet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

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
        admin.execute("UPDATE public.supervision SET valid_to = now() - interval '1 hour' WHERE working_agency_id = 3")
        admin.execute("UPDATE public.supervision SET valid_from = now() - interval '2 hours' WHERE working_agency_id = 3")
        assert "'{1,2}'::bigint[]" in plan_text(small, "agency_s1", "SELECT id FROM public.contract")


def _prepared_contract_ids(world: World, short: str) -> list[int]:
    with world.acting_as(short) as cur:
        cur.execute("EXECUTE planned_identity_contracts")
        return [row[0] for row in cur.fetchall()]


def test_a_new_supervision_counts_from_the_next_statement_of_a_cached_plan(small: World) -> None:
    """A generic plan S1 made before S1 supervised W12 is re-planned when the supervision arrives.

    Without the supervision trigger the cached plan keeps S1's old agencies and hides W12's
    contract (the test shows that too, so it can fail): stale only ever hides, never shows.
    """
    backend = small.backend
    backend.execute("SET plan_cache_mode = force_generic_plan")
    backend.execute("PREPARE planned_identity_contracts AS SELECT id FROM public.contract ORDER BY id")
    backend.commit()
    try:
        assert _prepared_contract_ids(small, "agency_s1") == [1, 2]
        with small.superuser() as superuser:
            superuser.execute("ALTER TABLE public.supervision DISABLE TRIGGER supervision_replans_scopes")
            try:
                superuser.execute(
                    "INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)"
                    " VALUES (1, 3, now() - interval '1 day')"
                )
            finally:
                superuser.execute("ALTER TABLE public.supervision ENABLE TRIGGER supervision_replans_scopes")
        assert _prepared_contract_ids(small, "agency_s1") == [1, 2], "the stale plan should have hidden NL-2"
        assert visible(small, "agency_s1", "contract") == [1, 2, 3]  # a new statement plans afresh

        with small.admin() as admin:  # any supervision write re-plans: here an unrelated one
            admin.execute("UPDATE public.supervision SET valid_to = NULL WHERE working_agency_id = 2")
        assert _prepared_contract_ids(small, "agency_s1") == [1, 2, 3]
        # And the cached plan never serves another principal (re-planned per role).
        assert _prepared_contract_ids(small, "agency_w11") == [1]
    finally:
        backend.execute("DEALLOCATE planned_identity_contracts")
        backend.execute("RESET plan_cache_mode")
        backend.commit()


def test_concurrent_supervision_writers_both_commit(small: World) -> None:
    """Two loaders changing supervision at once: the re-plan is serialised, neither fails.

    (Two ALTERs of the one catalog row of planned_agency_ids() would otherwise end one of them
    with "tuple concurrently updated".)
    """
    first = small.admin()
    second = small.admin()
    errors: list[BaseException] = []
    try:
        first.autocommit = False
        second.autocommit = False
        first.execute(
            "INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)"
            " VALUES (1, 3, now() - interval '1 day')"
        )

        def write_second() -> None:
            try:
                second.execute("UPDATE public.supervision SET valid_to = NULL WHERE working_agency_id = 2")
                second.commit()
            except BaseException as error:  # reported below
                errors.append(error)

        thread = threading.Thread(target=write_second)
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive(), "the second writer should wait for the first one's re-plan"
        first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive() and errors == []
    finally:
        first.close()
        second.close()
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

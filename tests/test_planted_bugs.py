"""The fuzzer catches deliberately wrong policies, from generated worlds alone.

Each test takes a fresh migrated database, plants one mistake by SQL as superuser, and lets
Hypothesis search the CI budget of worlds (``agency_rls.reference_model.strategies.worlds``, no hand-written
world) for one on which the database and the reference model disagree; the world found is shrunk
and printed as a scenario. The planted mistakes are the ones behind the incident:

(a) a working agency sees its supervising agency's contracts: a permissive policy showing contracts
    handled by the viewer's supervisor;
(b) notices without the entrustment check: the restrictive entrustment guard on ``notice`` dropped;
(c) an expired entrustment still counts: every scope function that reads ``entrustment`` ignores its
    ``valid_to``.

How the plants find their targets: only names are looked up (``pg_policies`` for the restrictive
guard on ``notice``), except (c), which rewrites the catalog's
function definitions (``pg_get_functiondef``) at test time, replacing ``<alias>.valid_to`` of every
``entrustment`` alias by 'infinity'. The policy SQL is never read by this project's model or tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, find, settings
from psycopg import sql

from agency_rls.reference_model import visible_rows
from agency_rls.reference_model.differential import Differential, Disagreement, Mismatch
from agency_rls.reference_model.scenario import world_to_yaml
from agency_rls.reference_model.strategies import ANCHOR, worlds
from agency_rls.reference_model.world import World
from tests.test_differential import differential_database

CI_BUDGET = 200
"""The planted bug must be found within the CI profile's number of worlds."""
SHRINK_SECONDS = 12.0
"""Time given to shrinking the world found (the search itself is bounded by CI_BUDGET)."""


def plant_supervisor_contracts(admin: psycopg.Connection[Any], prefix: str) -> None:
    """(a) Contracts handled (validly) by one of the viewer's supervisors become visible to it."""
    _create_planted_schema(admin)
    # Owned by the superuser running the test, so it reads past row security. The policy passes the
    # querying role (current_user in a policy expression is the principal in force).
    admin.execute(
        """
        CREATE FUNCTION planted.supervisor_handles(contract bigint, viewer name) RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
          SELECT EXISTS (
            SELECT 1
              FROM public.principal AS p
              JOIN public.supervision AS s ON s.working_agency_id = p.agency_id
              JOIN public.contract_handler AS h ON h.agency_id = s.supervising_agency_id
             WHERE p.role_name = viewer AND p.kind = 'agency' AND h.contract_id = contract
               AND s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
               AND h.valid_from <= now() AND (h.valid_to IS NULL OR now() < h.valid_to))
        $$
        """
    )
    admin.execute(
        sql.SQL(
            "CREATE POLICY planted_supervisor_contracts ON public.contract FOR SELECT TO {}"
            " USING (planted.supervisor_handles(id, current_user))"
        ).format(sql.Identifier(prefix + "rls_agency"))
    )


def plant_notices_without_entrustment(admin: psycopg.Connection[Any], prefix: str) -> None:
    """(b) Agency principals read notices by the spec's notice rule minus ``entrusted(A, N.insurer)``.

    Dropping the restrictive guard alone plants nothing: the permissive notice policy checks the
    entrustment as well (defence in depth; the fuzzer finds no world that tells the difference). So
    the guard and the agencies' permissive SELECT policies on notice go, and one policy takes their
    place: addressed to the viewer or its current supervisor, from the restricted principal's insurer
    if restricted, and contract and customer (if any) visible to the viewer - read through row
    security itself - but no entrustment check.
    """
    agency_group = prefix + "rls_agency"
    names = [
        row[0]
        for row in admin.execute(
            "SELECT policyname FROM pg_policies WHERE schemaname = 'public' AND tablename = 'notice'"
            " AND (permissive = 'RESTRICTIVE' OR (cmd IN ('SELECT', 'ALL') AND %s = ANY (roles)))",
            (agency_group,),
        )
    ]
    assert names, "no notice policy to replace"
    for name in names:
        admin.execute(sql.SQL("DROP POLICY {} ON public.notice").format(sql.Identifier(name)))
    _create_planted_schema(admin)
    admin.execute(
        """
        CREATE FUNCTION planted.addressed(addressee bigint, insurer bigint, viewer name) RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
          SELECT EXISTS (
            SELECT 1 FROM public.principal AS p
             WHERE p.role_name = viewer AND p.kind = 'agency'
               AND (p.insurer_id IS NULL OR p.insurer_id = insurer)
               AND (p.agency_id = addressee
                    OR EXISTS (SELECT 1 FROM public.supervision AS s
                                WHERE s.supervising_agency_id = addressee
                                  AND s.working_agency_id = p.agency_id
                                  AND s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to))))
        $$
        """
    )
    admin.execute(
        sql.SQL(
            "CREATE POLICY planted_notice_read ON public.notice FOR SELECT TO {} USING ("
            " planted.addressed(addressee_agency_id, insurer_id, current_user)"
            " AND (contract_id IS NULL"
            "      OR EXISTS (SELECT 1 FROM public.contract AS k WHERE k.id = contract_id))"
            " AND (customer_id IS NULL"
            "      OR EXISTS (SELECT 1 FROM public.customer AS c WHERE c.id = customer_id)))"
        ).format(sql.Identifier(agency_group))
    )


def _create_planted_schema(admin: psycopg.Connection[Any]) -> None:
    """A schema for the planted helpers, usable by every role (policies call them as the principal)."""
    admin.execute("CREATE SCHEMA planted")
    admin.execute("GRANT USAGE ON SCHEMA planted TO PUBLIC")


_NOT_ALIASES = "WHERE|ON|JOIN|USING|GROUP|ORDER|LIMIT|UNION|LEFT|RIGHT|INNER|CROSS|AND|OR|WINDOW|HAVING"
_ALIAS = re.compile(
    rf"\b(?:public\.)?entrustment\b  (?: \s+ (?:AS\s+)? (?!(?:{_NOT_ALIASES})\b) (\w+) )?",
    re.I | re.X,
)
"""``entrustment`` in a FROM/JOIN clause, and the alias it gets (if any)."""


def ignore_entrustment_end(definition: str) -> tuple[str, int]:
    """``definition`` with every ``<entrustment alias>.valid_to`` replaced by 'infinity', and the count.

    'infinity' rather than NULL: it makes every spelling of the check true (``valid_to IS NULL OR
    now() < valid_to``, ``valid_to > now()``, ``coalesce(...)``, ``tstzrange(valid_from, valid_to)``).
    """
    aliases = {m.group(1) or "entrustment" for m in _ALIAS.finditer(definition)}
    total = 0
    for alias in aliases:
        definition, n = re.subn(rf"\b{re.escape(alias)}\.valid_to\b", "'infinity'::timestamptz", definition)
        total += n
    return definition, total


def plant_expired_entrustment_counts(admin: psycopg.Connection[Any], prefix: str) -> None:
    """(c) Rewrite every agency_rls function reading ``entrustment`` so that valid_to is ignored."""
    functions = admin.execute(
        "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc AS p"
        " WHERE p.pronamespace = 'agency_rls'::regnamespace AND p.prokind = 'f'"
        "   AND p.prosrc ~* '\\mentrustment\\M'"
    ).fetchall()
    rewritten = 0
    for _name, definition in functions:
        changed, count = ignore_entrustment_end(definition)
        if count:
            admin.execute(changed)
            rewritten += count
    assert rewritten, "found no entrustment validity check to plant the bug in"


def _entrustments_never_end(world: World) -> World:
    """What plant (c) makes the database believe: no entrustment ever ends."""
    return replace(world, entrustment=tuple(replace(e, valid_to=None) for e in world.entrustment))


@pytest.fixture
def planted(server: str, request: pytest.FixtureRequest) -> Iterator[Differential]:
    plant: Callable[[psycopg.Connection[Any], str], None] = request.param
    with differential_database(server, "planted") as (differential, db):
        # Planted as the superuser in either mode: rewriting the scope functions needs their owner's
        # privileges, which no DBA has; loading and provisioning the worlds stay the DBA's.
        with db.superuser_connect() as planter, planter.transaction():
            plant(planter, db.prefix)
        yield differential


def find_disagreement(differential: Differential) -> tuple[World, list[Mismatch]]:
    """A generated world on which database and model disagree, found within the CI budget and shrunk
    for at most SHRINK_SECONDS (each candidate costs a database load, so shrinking is what takes time).

    After the budget the condition stops consulting the database and says no to every world it has not
    seen, which ends the shrink with the smallest disagreeing world found so far.
    """
    calls = {"generated": 0, "first_found": 0}
    deadline: list[float] = []
    known: dict[World, bool] = {}  # Hypothesis replays the final world: answers must not change

    def disagrees(world: World) -> bool:
        if world in known:
            return known[world]
        if deadline and time.monotonic() > deadline[0]:
            return False
        calls["generated"] += 1
        try:
            differential.check(world)
            known[world] = False
        except Disagreement:
            if not deadline:
                calls["first_found"] = calls["generated"]
                deadline.append(time.monotonic() + SHRINK_SECONDS)
            known[world] = True
        return known[world]

    world = find(
        worlds(),
        disagrees,
        settings=settings(
            max_examples=CI_BUDGET,
            deadline=None,
            derandomize=True,
            database=None,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        ),
    )
    mismatches, _ = differential.compare(world)  # the last world checked need not be the shrunk one
    print(
        f"\nfirst disagreement at generated world #{calls['first_found']} (budget {CI_BUDGET}),"
        f" {calls['generated'] - calls['first_found']} shrink steps; smallest world found:\n"
        f"{world_to_yaml(world, ANCHOR)}" + "\n".join(str(m) for m in mismatches)
    )
    return world, mismatches


@pytest.mark.parametrize("planted", [plant_supervisor_contracts], indirect=True)
def test_fuzzer_finds_working_agency_seeing_supervisor_contracts(planted: Differential) -> None:
    _, mismatches = find_disagreement(planted)
    assert mismatches
    # Handler rows and notices ask the contract policy per row, so the planted widening reaches them too.
    assert "contract" in {m.table for m in mismatches} <= {"contract", "contract_handler", "notice"}
    assert all(m.database_only and not m.model_only for m in mismatches)


@pytest.mark.parametrize("planted", [plant_notices_without_entrustment], indirect=True)
def test_fuzzer_finds_notices_without_entrustment_check(planted: Differential) -> None:
    _, mismatches = find_disagreement(planted)
    assert mismatches
    assert {m.table for m in mismatches} == {"notice"}
    assert all(m.database_only and not m.model_only for m in mismatches)


@pytest.mark.parametrize("planted", [plant_expired_entrustment_counts], indirect=True)
def test_fuzzer_finds_expired_entrustment_still_counting(planted: Differential) -> None:
    world, mismatches = find_disagreement(planted)
    assert mismatches
    assert all(m.database_only and not m.model_only for m in mismatches)
    # The plant is what it claims: the database now agrees with the model of a world in which no
    # entrustment ends.
    bugged = _entrustments_never_end(world.with_role_prefix(planted.prefix))
    for principal in bugged.principal:
        now, actual = planted.database_view(principal.role_name)
        assert actual == visible_rows(bugged, principal.role_name, now), principal.role_name

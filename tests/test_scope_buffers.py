"""Cost that does not grow with the principal's scope (issue 9), guarded by buffer counts, not timings.

Two agencies whose scopes differ 10x, in a world of ~40,000 contracts: the larger one's point
lookups and pages must read (EXPLAIN ANALYZE BUFFERS: shared hits + reads) less than twice the
buffers of the smaller one. Before revision 0006 every statement built the caller's whole scope
first (an array of every visible id), so the larger agency read ~10x the buffers on every query.
The queries are the bench mix's point lookups and pages (agency_rls.workload.bench runs them at
scale, timed against hand-written SQL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from tests.support import World, build_world, create_database

LARGE, SMALL = 1, 2  # agency ids: 4,000 and 400 handled contracts
#: 20 agencies, one insurer entrusting all; agency 1 handles 4,000 contracts, agency 2 400, the
#: other 18 2,000 each; one policyholder per contract; one notice per contract to its handler.
WORLD = """
INSERT INTO public.insurer (id, code, name, line, kind) VALUES (1, 'NL', 'Non-life', 'non_life', 'operator');
INSERT INTO public.agency (id, code, name) SELECT g, 'A' || g, 'Agency ' || g FROM generate_series(1, 20) AS g;
INSERT INTO public.entrustment (agency_id, insurer_id, valid_from)
    SELECT g, 1, now() - interval '1 year' FROM generate_series(1, 20) AS g;
CREATE TEMPORARY TABLE owner_of ON COMMIT DROP AS
    SELECT g AS contract_id,
           CASE WHEN g <= 4000 THEN 1 WHEN g <= 4400 THEN 2 ELSE 3 + (g % 18) END AS agency_id
      FROM generate_series(1, 40400) AS g;
INSERT INTO public.customer (id, full_name)
    SELECT contract_id, 'Customer ' || md5(contract_id::text) FROM owner_of;
INSERT INTO public.contract (id, insurer_id, policy_number, policyholder_id, source, premium)
    SELECT contract_id, 1, 'NL-' || lpad(contract_id::text, 6, '0'), contract_id, 'direct', 1000
      FROM owner_of ORDER BY (contract_id * 7919) % 40400;
INSERT INTO public.contract_handler (contract_id, agency_id, valid_from)
    SELECT contract_id, agency_id, now() - interval '1 year' FROM owner_of;
INSERT INTO public.notice (insurer_id, addressee_agency_id, kind, contract_id, body, created_at)
    SELECT 1, agency_id, 'renewal', contract_id, 'renewal due', now() - contract_id * interval '1 minute'
      FROM owner_of;
"""

#: The bench mix's point lookups and pages; {0} is the acting agency's own sample key.
QUERIES: dict[str, str] = {
    "contract by policy number": "SELECT * FROM public.contract WHERE insurer_id = 1 AND policy_number = {policy}",
    "customer by id": "SELECT id, full_name, address FROM public.customer WHERE id = {customer}",
    "customers page by name, deep offset": (
        "SELECT id, full_name FROM public.customer ORDER BY full_name, id LIMIT 50 OFFSET 300"
    ),
    "50 newest contracts with policyholders": (
        "SELECT c.id, c.policy_number, cu.full_name FROM public.contract AS c"
        " JOIN public.customer AS cu ON cu.id = c.policyholder_id ORDER BY c.id DESC LIMIT 50"
    ),
    "notice feed": "SELECT * FROM public.notice ORDER BY created_at DESC, id DESC LIMIT 50",
}


def load(conn: Any, *, prefix: str) -> None:
    conn.execute(WORLD)


@pytest.fixture(scope="module")
def scaled(server: str) -> Iterator[World]:
    db = create_database(server, "buffers")
    built = None
    try:
        built = build_world(db, load)
        with db.connect() as conn:
            conn.execute("VACUUM ANALYZE")
        yield built
    finally:
        if built is not None:
            built.backend.close()
        try:
            db.downgrade_base()
        finally:
            db.drop()


def buffers(node: dict[str, Any]) -> int:
    """Shared buffers (hits + reads) of a plan node, its children and sub-plans included."""
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def measure(world: World, agency: int, query: str) -> tuple[int, int]:
    """(buffers, rows) of ``query`` acting as the agency's principal, EXPLAIN ANALYZE BUFFERS."""
    short = f"agency_a{agency}"
    sample = agency_sample(world, agency)
    statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query).format(
        policy=sql.Literal(sample["policy"]), customer=sql.Literal(sample["customer"])
    )
    with world.acting_as(short) as cur:
        cur.execute(statement)  # warm: the first run plans the scope functions
        (plan,) = cur.execute(statement).fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    top = plan[0]["Plan"]
    return buffers(top), int(top["Actual Rows"])


def agency_sample(world: World, agency: int) -> dict[str, Any]:
    """A policy number and a customer id the agency handles (its middle one)."""
    with world.admin() as admin:
        (policy, customer) = admin.execute(
            """
            SELECT c.policy_number, c.policyholder_id
              FROM public.contract_handler AS h JOIN public.contract AS c ON c.id = h.contract_id
             WHERE h.agency_id = %s ORDER BY c.id OFFSET (SELECT count(*) / 2 FROM public.contract_handler
                                                          WHERE agency_id = %s) LIMIT 1
            """,
            (agency, agency),
        ).fetchone()
    return {"policy": policy, "customer": customer}


#: Still growing with the scope after revision 0007 (strict: the day they pass, this list must shrink).
#: Ordered pages read the agency's whole candidate set through an index and sort it: the notice feed
#: gathers every notice of the caller's addressees (an array condition cannot walk the
#: (addressee, created_at) index in order on PostgreSQL 15), and the two pages below read the whole
#: scope through the GIN index, which the planner rightly prefers in this world: an ordered walk
#: would visit ten rows for each one the agency sees. So does the hand-written query, which
#: test_rls_reads_at_most_twice_the_hand_written_query checks against, agency by agency.
GROWING = {"notice feed", "customers page by name, deep offset", "50 newest contracts with policyholders"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name, marks=pytest.mark.xfail(strict=True, reason="ordered page still reads the whole scope")
        )
        if name in GROWING
        else name
        for name in QUERIES
    ],
)
def test_the_larger_scope_reads_less_than_twice_the_buffers(scaled: World, name: str) -> None:
    large_buffers, large_rows = measure(scaled, LARGE, QUERIES[name])
    small_buffers, small_rows = measure(scaled, SMALL, QUERIES[name])
    assert large_rows == small_rows, (
        "both agencies must get a full answer for the comparison to mean anything"
    )
    assert large_buffers < 2 * small_buffers, (
        f"{name}: agency with 4,000 contracts read {large_buffers} buffers, with 400 read {small_buffers}"
    )


#: The same rule written by hand for this world (one insurer entrusting every agency, no
#: supervision, one handler per contract), run by the administrator, without row level security.
HAND_WRITTEN: dict[str, str] = {
    "contract by policy number": (
        "SELECT * FROM public.contract AS c WHERE c.insurer_id = 1 AND c.policy_number = {policy}"
        " AND EXISTS (SELECT FROM public.contract_handler AS h WHERE h.contract_id = c.id AND h.agency_id = {agency})"
    ),
    "customer by id": (
        "SELECT cu.id, cu.full_name, cu.address FROM public.customer AS cu WHERE cu.id = {customer}"
        " AND EXISTS (SELECT FROM public.contract AS c JOIN public.contract_handler AS h ON h.contract_id = c.id"
        " WHERE c.policyholder_id = cu.id AND h.agency_id = {agency})"
    ),
    "customers page by name, deep offset": (
        "SELECT cu.id, cu.full_name FROM public.customer AS cu"
        " WHERE EXISTS (SELECT FROM public.contract AS c JOIN public.contract_handler AS h ON h.contract_id = c.id"
        " WHERE c.policyholder_id = cu.id AND h.agency_id = {agency})"
        " ORDER BY cu.full_name, cu.id LIMIT 50 OFFSET 300"
    ),
    "50 newest contracts with policyholders": (
        "SELECT c.id, c.policy_number, cu.full_name FROM public.contract AS c"
        " JOIN public.customer AS cu ON cu.id = c.policyholder_id"
        " WHERE EXISTS (SELECT FROM public.contract_handler AS h WHERE h.contract_id = c.id AND h.agency_id = {agency})"
        " ORDER BY c.id DESC LIMIT 50"
    ),
    "notice feed": (
        "SELECT * FROM public.notice WHERE addressee_agency_id = {agency} ORDER BY created_at DESC, id DESC LIMIT 50"
    ),
}

#: What resolving the caller costs on top (the policies' InitPlans: principal, entrustment).
IDENTITY_BUFFERS = 50


def measure_hand_written(world: World, agency: int, query: str) -> tuple[int, int]:
    sample = agency_sample(world, agency)
    statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query).format(
        policy=sql.Literal(sample["policy"]), customer=sql.Literal(sample["customer"]), agency=sql.Literal(agency)
    )
    with world.admin() as admin:
        admin.execute(statement)
        (plan,) = admin.execute(statement).fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    top = plan[0]["Plan"]
    return buffers(top), int(top["Actual Rows"])


#: Beyond twice the hand-written query (strict). The feed's policy names the caller's addressees as an
#: array (its agency and the agencies supervising it), which cannot walk the (addressee, created_at)
#: index in order (PostgreSQL 15 and 18 alike, constant or not): it reads every notice of the
#: caller's addressees, each checked against the contract and customer policies, then sorts. By hand,
#: an agency without supervisors is one equality and an ordered walk of 50 rows.
ABOVE_HAND_WRITTEN = {"notice feed"}


@pytest.mark.parametrize("agency", [LARGE, SMALL], ids=["4,000 contracts", "400 contracts"])
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="see ABOVE_HAND_WRITTEN"))
        if name in ABOVE_HAND_WRITTEN
        else name
        for name in QUERIES
    ],
)
def test_rls_reads_at_most_twice_the_hand_written_query(scaled: World, name: str, agency: int) -> None:
    """Per agency, against the best hand-written equivalent: the bench's ratio, in buffers."""
    rls_buffers, rls_rows = measure(scaled, agency, QUERIES[name])
    hand_buffers, hand_rows = measure_hand_written(scaled, agency, HAND_WRITTEN[name])
    assert rls_rows == hand_rows
    assert rls_buffers <= 2 * hand_buffers + IDENTITY_BUFFERS, (
        f"{name}, agency {agency}: row level security read {rls_buffers} buffers, by hand {hand_buffers}"
    )

"""The handler links copied onto contract and customer rows (revision 0006) stay exact under every write.

The policies trust the copies (scope_columns.sql): a stale copy would grant or withhold access. Each
test writes through plain SQL as the loader would (statement-level triggers keep the copies), then
compares every copy with the value recomputed from contract_handler and contract, and checks what
the principals of the small world (S1 supervises W11; W11 handles NL-1; S1 the gateway GW1-1) see.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.rls_policies.maintenance import repair_derived_columns

from tests.support import World, triggers_off
from tests.test_hardening import small_world, visible

#: Copies that differ from a recomputation from the base tables (empty when exact).
STALE_COPIES = """
WITH links AS (
    SELECT c.id,
           coalesce(array_agg(h.agency_id ORDER BY h.id) FILTER (WHERE h.id IS NOT NULL), '{}') AS agencies,
           coalesce(array_agg(agency_rls.validity(h.valid_from, h.valid_to) ORDER BY h.id)
                        FILTER (WHERE h.id IS NOT NULL), '{}') AS windows
      FROM public.contract AS c LEFT JOIN public.contract_handler AS h ON h.contract_id = c.id
     GROUP BY c.id
), parties AS (
    SELECT cu.id,
           coalesce(array_agg(l.agency ORDER BY p.contract_id, l.n) FILTER (WHERE l.agency IS NOT NULL), '{}') AS agencies,
           coalesce(array_agg(p.insurer_id ORDER BY p.contract_id, l.n) FILTER (WHERE l.agency IS NOT NULL), '{}') AS insurers,
           coalesce(array_agg(DISTINCT p.insurer_id) FILTER (WHERE p.insurer_id IS NOT NULL), '{}') AS party_insurers
      FROM public.customer AS cu
      LEFT JOIN LATERAL (SELECT c.id AS contract_id, c.insurer_id FROM public.contract AS c
                          WHERE cu.id IN (c.policyholder_id, c.insured_id)) AS p ON true
      LEFT JOIN LATERAL (SELECT l.agency_id AS agency, l.n
                           FROM public.contract AS c2,
                                unnest(c2.handler_agency_ids) WITH ORDINALITY AS l (agency_id, n)
                          WHERE c2.id = p.contract_id) AS l ON true
     GROUP BY cu.id
)
SELECT 'contract', c.id FROM public.contract AS c JOIN links USING (id)
 WHERE (c.handler_agency_ids, c.handler_windows) IS DISTINCT FROM (links.agencies, links.windows)
UNION ALL
SELECT 'customer', cu.id FROM public.customer AS cu JOIN parties USING (id)
 WHERE (cu.handler_agency_ids, cu.handler_insurer_ids, cu.party_insurer_ids)
       IS DISTINCT FROM (parties.agencies, parties.insurers, parties.party_insurers)
"""


@pytest.fixture
def small(server: str) -> Iterator[World]:
    with small_world(server, "copies") as built:
        yield built


def stale(world: World) -> list[tuple[str, int]]:
    """STALE_COPIES, read as the superuser in either mode (agency_rls.validity is not the DBA's to call)."""
    with world.superuser() as conn:
        return [(str(t), int(i)) for t, i in conn.execute(STALE_COPIES).fetchall()]


def test_copies_follow_every_write_of_a_loader(small: World) -> None:
    with small.admin() as admin:
        assert stale(small) == []
        assert visible(small, "agency_w11", "contract") == [1]
        # A new joint handler: W11 now handles the gateway contract (not entrusted by GW1: still hidden).
        admin.execute(
            "INSERT INTO public.contract_handler (contract_id, agency_id, role) VALUES (2, 2, 'joint')"
        )
        assert stale(small) == []
        assert visible(small, "agency_w11", "contract") == [1]
        admin.execute("INSERT INTO public.entrustment (agency_id, insurer_id) VALUES (2, 2)")
        assert visible(small, "agency_w11", "contract") == [1, 2]
        assert visible(small, "agency_w11", "customer") == [1, 2]
        # The link ends: access ends at the next statement, with no job to run.
        admin.execute(
            "UPDATE public.contract_handler SET valid_to = now() WHERE contract_id = 2 AND agency_id = 2"
        )
        assert stale(small) == []
        assert visible(small, "agency_w11", "contract") == [1]
        assert visible(small, "agency_w11", "customer") == [1]
        # The policyholder changes: the customer copies move with it.
        admin.execute("UPDATE public.contract SET policyholder_id = 2 WHERE id = 1")
        assert stale(small) == []
        assert visible(small, "agency_w11", "customer") == [2]
        assert visible(small, "insurer_nl", "customer") == [2]
        admin.execute("UPDATE public.contract SET policyholder_id = 1 WHERE id = 1")
        # Handler rows deleted, then the whole table truncated.
        admin.execute("DELETE FROM public.contract_handler WHERE contract_id = 1")
        assert stale(small) == []
        assert visible(small, "agency_w11", "contract") == []
        assert visible(small, "agency_s1", "contract") == [2]
        admin.execute("TRUNCATE public.contract_handler")
        assert stale(small) == []
        assert visible(small, "agency_s1", "contract") == []
        assert visible(small, "agency_s1", "customer") == []
        assert visible(small, "insurer_gw1", "customer") == [2]  # insurers do not need handlers


def test_a_copy_written_by_hand_is_recomputed(small: World) -> None:
    """Incident case 1 planted through the copies: W11 written into the gateway contract's links."""
    with small.admin() as admin:
        admin.execute("INSERT INTO public.entrustment (agency_id, insurer_id) VALUES (2, 2)")
        admin.execute(
            "UPDATE public.contract SET handler_agency_ids = '{1,2}',"
            " handler_windows = ARRAY['(,)'::tstzrange, '(,)'::tstzrange] WHERE id = 2"
        )
        admin.execute(
            "UPDATE public.customer SET handler_agency_ids = '{2}', handler_insurer_ids = '{2}',"
            " handler_windows = ARRAY['(,)'::tstzrange] WHERE id = 2"
        )
        assert stale(small) == []
        assert visible(small, "agency_w11", "contract") == [1]
        assert visible(small, "agency_w11", "customer") == [1]


def test_a_load_with_triggers_off_is_repaired_by_provision(small: World) -> None:
    with small.admin() as admin:
        admin.execute("INSERT INTO public.entrustment (agency_id, insurer_id) VALUES (2, 2)")
        with triggers_off(small.db) as loader:
            loader.execute(
                "INSERT INTO public.contract_handler (contract_id, agency_id, insurer_id) VALUES (2, 2, 2)"
            )
        assert stale(small) != []
        assert visible(small, "agency_w11", "contract") == [1]  # stale: the copy does not name W11 yet
        repair_derived_columns(admin)
        assert stale(small) == []
        assert visible(small, "agency_w11", "contract") == [1, 2]


def test_principals_never_read_the_customer_copies(small: World) -> None:
    """They would tell a viewer about the customer's other contracts (insurers, agencies)."""
    for persona in ("agency_w11", "insurer_nl"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), small.acting_as(persona) as cur:
            cur.execute("SELECT party_insurer_ids FROM public.customer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), small.acting_as(persona) as cur:
            cur.execute("SELECT id FROM public.customer WHERE handler_agency_ids && '{1}'")

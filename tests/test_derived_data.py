"""Derived data that can drift (issue 7 §5): loads with triggers and keys off.

``contract_handler.insurer_id`` is kept exact by a trigger and a cascading key; a load with
``SET session_replication_role = replica`` turns both off. ``provision`` recomputes the derived
column (``agency_rls.rls_policies.maintenance.repair_derived_columns``) and refuses source rows that only
the disabled keys would have refused.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from agency_rls.rls_policies.provision import ProvisionError, provision

from tests.support import ScratchDatabase, World, build_world, triggers_off

HANDLERS = "SELECT id FROM public.contract_handler ORDER BY id"


def _two_insurers(conn: psycopg.Connection[Any], *, prefix: str) -> None:
    """NL and GW1 both entrust A1, which handles one contract of each (handlers 1 and 2)."""
    del prefix  # default principals only: provision creates them
    conn.execute(
        """
        INSERT INTO public.insurer (id, code, name, line, kind) VALUES
            (1, 'NL', 'Non-life', 'non_life', 'operator'), (2, 'GW1', 'Gateway 1', 'non_life', 'gateway');
        INSERT INTO public.agency (id, code, name) VALUES (1, 'A1', 'Agency one');
        INSERT INTO public.entrustment (id, agency_id, insurer_id) VALUES (1, 1, 1), (2, 1, 2);
        INSERT INTO public.customer (id, full_name) VALUES (1, 'Sato Hanako'), (2, 'Mori Akira');
        INSERT INTO public.contract (id, insurer_id, policy_number, policyholder_id, source)
            VALUES (1, 1, 'NL-1', 1, 'direct'), (2, 2, 'GW1-1', 2, 'gateway');
        INSERT INTO public.contract_handler (id, contract_id, agency_id) VALUES (1, 1, 1), (2, 2, 1);
        """
    )


def visible(world: World, principal: str, query: str = HANDLERS) -> list[int]:
    with world.acting_as(principal) as cur:
        return [row[0] for row in cur.execute(query)]  # type: ignore[arg-type]


def replica_load(world: World, statements: str) -> None:
    """Run ``statements`` as a loader with triggers and keys off (one transaction; the superuser's)."""
    with triggers_off(world.db) as loader:
        loader.execute(statements)  # type: ignore[arg-type]


@pytest.fixture
def two_insurers(fresh_db: ScratchDatabase) -> Any:
    world: World | None = None
    try:
        world = build_world(fresh_db, _two_insurers)
        assert visible(world, "insurer_nl") == [1] and visible(world, "insurer_gw1") == [2]
        yield world
    finally:
        if world is not None:
            world.backend.close()
        fresh_db.downgrade_base()


def test_derived_data_drift_after_replica_load_is_repaired_by_provision(two_insurers: World) -> None:
    world = two_insurers
    # A handler row of GW1's gateway contract, loaded naming NL: the trigger would have corrected it.
    replica_load(
        world,
        "INSERT INTO public.contract_handler (id, contract_id, agency_id, insurer_id) VALUES (3, 2, 1, 1)",
    )
    assert visible(world, "insurer_nl") == [1, 3]  # NL reads a handler row of GW1's contract
    assert visible(world, "insurer_gw1") == [2]

    with world.admin() as admin:
        report = provision(admin)
    assert visible(world, "insurer_nl") == [1]
    assert visible(world, "insurer_gw1") == [2, 3]
    assert report.derived_rows_repaired == 1
    assert report.as_dict()["derived_rows_repaired"] == 1
    with world.admin() as admin:
        assert provision(admin).derived_rows_repaired == 0  # nothing left to repair


def test_derived_data_drift_contract_moved_in_replica_mode_is_repaired(two_insurers: World) -> None:
    world = two_insurers
    # The contract moves to GW1 with keys off: the cascade to its handler rows does not run.
    replica_load(world, "UPDATE public.contract SET insurer_id = 2 WHERE id = 1")
    assert visible(world, "insurer_nl") == [1]  # NL still reads the handler row of a contract it lost
    assert visible(world, "insurer_gw1") == [2]

    with world.admin() as admin:
        assert provision(admin).derived_rows_repaired == 1
    assert visible(world, "insurer_nl") == []
    assert visible(world, "insurer_gw1") == [1, 2]


def test_derived_data_source_rows_the_keys_refuse_stop_provision(two_insurers: World) -> None:
    """A notice issued by another insurer than its contract's, and a handler row of no contract.

    Neither is derived: which side is right is the loader's knowledge. ``provision`` names them,
    changes nothing, and works again once they are fixed.
    """
    world = two_insurers
    replica_load(
        world,
        """
        INSERT INTO public.notice (id, insurer_id, addressee_agency_id, kind, contract_id, body)
            VALUES (7, 2, 1, 'pending_paperwork', 1, 'NL-1 papers');
        INSERT INTO public.contract_handler (id, contract_id, agency_id, insurer_id) VALUES (8, 99, 1, 1);
        INSERT INTO public.contract_handler (id, contract_id, agency_id, insurer_id) VALUES (9, 2, 1, 1);
        """,
    )
    notices = "SELECT id FROM public.notice"
    assert visible(world, "insurer_gw1", notices) == [7]  # GW1 reads a notice about NL's contract

    with world.admin() as admin:
        with pytest.raises(ProvisionError) as refused:
            provision(admin)
        message = str(refused.value)
        assert "contract_handler row(s) whose contract does not exist (id 8)" in message
        assert "notice row(s) about a contract that does not exist or another insurer holds (id 7)" in message
        assert "nothing changed" in message
        # all or nothing: the repairable row 9 was not repaired either
        row = admin.execute("SELECT insurer_id FROM public.contract_handler WHERE id = 9").fetchone()
        assert row == (1,)

        admin.execute("DELETE FROM public.contract_handler WHERE id = 8")
        admin.execute("UPDATE public.notice SET insurer_id = 1 WHERE id = 7")
        assert provision(admin).derived_rows_repaired == 1  # row 9
    assert visible(world, "insurer_gw1", notices) == []
    assert visible(world, "insurer_nl", notices) == [7]
    assert visible(world, "insurer_nl") == [1]

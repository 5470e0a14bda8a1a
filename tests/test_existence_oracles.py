"""Existence oracles (issue 7 §4): what a principal can learn about rows it cannot read.

Identity sequences behind explicitly loaded ids: loaders may supply ids, PostgreSQL then leaves the
identity sequence behind, and an agency's own prospect insert takes the id of a hidden row: it
fails with 23505 on ``customer_pkey``, and ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``
answers "does row N exist?". Every shipped loader and ``provision`` move the sequences past every id.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from agency_rls.rls_policies.provision import provision
from agency_rls.schema import ALL_TABLES
from psycopg import sql

from agency_rls.checks.sample_world import sample_scenario
from agency_rls.reference_model.database import load_world, world_from_connection
from tests.support import ScratchDatabase, World, build_world

IDENTITY_TABLES = tuple(t for t in ALL_TABLES if t != "principal")  # principal is keyed by role_name

PROSPECT = "INSERT INTO public.customer (full_name, registered_by_agency_id) VALUES (%s, 1)"
PROBE = PROSPECT + " ON CONFLICT DO NOTHING RETURNING id"


def lagging_sequences(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """Tables whose identity would next hand out an id a row already holds: {table: (next id, max id)}.

    Read by the superuser from the sequence relation itself (last_value, is_called), without
    consuming a value, independently of ``agency_rls.rls_policies.maintenance``.
    """
    lagging = {}
    for table in IDENTITY_TABLES:
        row = conn.execute(
            sql.SQL("SELECT pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {})").format(
                sql.Literal(f"public.{table}"), sql.Identifier("public", table)
            )
        ).fetchone()
        assert row is not None and row[0] is not None, table
        sequence, top = row
        state = conn.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(sequence))
        ).fetchone()
        assert state is not None
        next_id = state[0] + 1 if state[1] else state[0]
        if top is not None and next_id <= top:
            lagging[table] = (next_id, top)
    return lagging


def next_customer_id(conn: psycopg.Connection) -> int:
    state = conn.execute("SELECT last_value, is_called FROM public.customer_id_seq").fetchone()
    assert state is not None
    return state[0] + 1 if state[1] else state[0]


def _two_agencies(conn: psycopg.Connection[Any], *, prefix: str) -> None:
    del prefix  # default principals only: provision creates them
    conn.execute(
        """
        INSERT INTO public.insurer (id, code, name, line, kind) VALUES (1, 'NL', 'Non-life', 'non_life', 'operator');
        INSERT INTO public.agency (id, code, name) VALUES (1, 'A1', 'Agency one'), (2, 'B2', 'Agency two');
        INSERT INTO public.entrustment (id, agency_id, insurer_id) VALUES (1, 1, 1), (2, 2, 1);
        INSERT INTO public.customer (id, full_name, registered_by_agency_id) VALUES (1, 'Prospect of A1', 1);
        """
    )


def test_existence_oracle_identity_sequence_behind_loaded_ids(fresh_db: ScratchDatabase) -> None:
    world: World | None = None
    try:
        world = build_world(fresh_db, _two_agencies)
        with world.admin() as admin:
            # A later load by plain SQL with explicit ids: B2's prospects take the very ids the
            # customer sequence hands out next (a loader numbering rows itself, as loaders may).
            row = admin.execute("SELECT max(id) FROM public.customer").fetchone()
            assert row is not None
            taken = max(next_customer_id(admin), row[0] + 1)
            hidden = list(range(taken, taken + 5))
            with admin.cursor() as cur:
                cur.executemany(
                    "INSERT INTO public.customer (id, full_name, registered_by_agency_id) VALUES (%s, %s, 2)",
                    [(i, f"Hidden {i}") for i in hidden],
                )
            top = hidden[-1]
            assert lagging_sequences(admin)["customer"][1] == top

            # The oracle as it stands after such a load: A1 cannot see B2's prospects ...
            with world.acting_as("agency_a1") as cur:
                seen = {row[0] for row in cur.execute("SELECT id FROM public.customer")}
                assert seen == {1}
            # ... yet its own insert collides with one, and ON CONFLICT DO NOTHING confirms the next
            # (each attempt consumes one value: the principal walks the ids one by one).
            with pytest.raises(psycopg.errors.UniqueViolation) as collided:
                with world.acting_as("agency_a1") as cur:
                    cur.execute(PROSPECT, ("Probe",))
            assert collided.value.diag.constraint_name == "customer_pkey"
            with world.acting_as("agency_a1") as cur:
                assert cur.execute(PROBE, ("Probe",)).fetchall() == []  # "id taken + 1 exists"

            report = provision(admin)
            with world.acting_as("agency_a1") as cur:
                row = cur.execute(PROSPECT + " RETURNING id", ("New Prospect",)).fetchone()
                assert row is not None and row[0] > top
                probed = cur.execute(PROBE, ("Another Prospect",)).fetchall()
                assert len(probed) == 1 and probed[0][0] > row[0]  # every probe inserts: it tells nothing
            assert lagging_sequences(admin) == {}
            assert report.sequences_advanced == {"customer": top}
            assert report.as_dict()["sequences_advanced"] == {"customer": top}
            # and the principal cannot aim at an id of its choosing: the id column is not granted.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with world.acting_as("agency_a1") as cur:
                    cur.execute(
                        "INSERT INTO public.customer (id, full_name, registered_by_agency_id)"
                        " VALUES (%s, 'x', 1) ON CONFLICT DO NOTHING RETURNING id",
                        (taken,),
                    )
            assert provision(admin).sequences_advanced == {}  # idempotent: nothing lags any more
    finally:
        if world is not None:
            world.backend.close()
        fresh_db.downgrade_base()


def test_existence_oracle_shipped_loaders_leave_sequences_ahead(fresh_db: ScratchDatabase) -> None:
    """The loaders this project ships move every sequence past the ids they insert, without provision."""
    fresh_db.migrate()
    try:
        with fresh_db.connect() as conn:
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            with conn.transaction():  # install_scenario's loader (check, the demo, the plugin), unprovisioned
                load_world(conn, sample_scenario().world(row[0]), prefix=fresh_db.prefix)
            assert lagging_sequences(conn) == {}
            loaded = world_from_connection(conn)
            tables = sql.SQL(", ").join(sql.Identifier("public", t) for t in ALL_TABLES)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))
            with conn.transaction():
                load_world(conn, loaded)  # the same loader, ids as read back (the fuzzer loads so too)
            assert lagging_sequences(conn) == {}
    finally:
        fresh_db.downgrade_base()


def test_existence_oracle_session_world_sequences_ahead(world: World) -> None:
    with world.admin() as conn:
        assert lagging_sequences(conn) == {}

"""Attack 40: migrations go down and up while a principal keeps reading; it never sees a row
outside its scope at any instant (every revision's change is one transaction)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision

from agency_rls.checks.sample_world import EXPECTED
from tests.support import WALKS_REVISIONS, World, sample_world_on, set_test_passwords

READER = "agency_w11"


@pytest.fixture
def churned_world(server: str) -> Iterator[World]:
    with sample_world_on(server, "churn") as built:
        yield built


@WALKS_REVISIONS  # down to 0001 and back up, revision by revision
def test_40_no_out_of_scope_row_while_migrating_down_and_up(churned_world: World) -> None:
    allowed = EXPECTED[READER]["contract"]
    seen: set[str] = set()
    reads = 0
    stop = threading.Event()

    def read_forever() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                with psycopg.connect(churned_world.db.login_conninfo(churned_world.role(READER))) as conn:
                    conn.execute("SET lock_timeout = '2s'")
                    while not stop.is_set():
                        rows = conn.execute("SELECT policy_number FROM public.contract").fetchall()
                        conn.rollback()
                        seen.update(row[0] for row in rows)
                        reads += 1
            except psycopg.Error:
                time.sleep(0.01)  # refused or dropped while the schema is down: reconnect

    reader = threading.Thread(target=read_forever, daemon=True)
    reader.start()
    try:
        for _ in range(3):
            migrations_runner.downgrade(churned_world.db.url, "0001")
            time.sleep(0.05)
            migrations_runner.upgrade(churned_world.db.url, "head")
            with churned_world.admin() as conn:
                provision(conn, login=True)
                set_test_passwords(conn, churned_world.prefix)
            time.sleep(0.2)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert reads > 0, "the reader never got through"
    assert seen <= allowed, f"out of scope at some instant: {sorted(seen - allowed)}"

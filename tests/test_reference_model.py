"""The reference model against the hand-written sample world and its EXPECTED rows.

Why: the sample world's ``expect`` (``scenarios/sample_world.yaml``, read as ``sample_world.EXPECTED``)
is a reading of the spec made by hand, the model is another one made as code; both were written
from ``scope-rules.md`` alone. They must agree row for row
before the model is trusted as the oracle of the differential fuzzer. The sample world is read back
from the session's database (``world_from_connection``), so the loader is checked on the way, and
the database is compared with the model on it too.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import pytest

from agency_rls.checks.sample_world import EXPECTED, PRINCIPALS, id_to_key, key_query
from agency_rls.reference_model import visible_rows
from agency_rls.reference_model.database import world_from_connection
from agency_rls.reference_model.world import TABLES, World
from tests.support import World as DatabaseWorld


class SampleWorld(NamedTuple):
    world: World  # as the model sees it, read back from the database
    keys: dict[str, dict[object, str]]  # table -> id -> readable key (sample_world.id_to_key)
    now: dt.datetime  # the database's now()


@pytest.fixture(scope="module")
def sample(world: DatabaseWorld) -> SampleWorld:
    with world.admin() as conn:
        model_world = world_from_connection(conn)
        keys = {t: id_to_key(conn, t, prefix=world.prefix) for t in TABLES}
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return SampleWorld(model_world, keys, row[0])


def _diff(left: str, left_rows: frozenset[object], right: str, right_rows: frozenset[object]) -> str:
    only_left, only_right = sorted(left_rows - right_rows, key=str), sorted(right_rows - left_rows, key=str)
    return f"{left} only: {only_left}; {right} only: {only_right}"


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_model_reproduces_expected(world: DatabaseWorld, sample: SampleWorld, principal: str) -> None:
    seen = visible_rows(sample.world, world.role(principal), sample.now)
    problems = {}
    for table in TABLES:
        actual = frozenset(sample.keys[table].get(x, f"#{x}") for x in seen[table])
        expected = EXPECTED[principal][table]
        if actual != expected:
            problems[table] = _diff("model", actual, "EXPECTED", expected)
    assert problems == {}


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_model_agrees_with_database(world: DatabaseWorld, sample: SampleWorld, principal: str) -> None:
    problems = {}
    with world.acting_as(principal) as cur:
        row = cur.execute("SELECT now()").fetchone()
        assert row is not None
        seen = visible_rows(sample.world, world.role(principal), row[0])
        for table in TABLES:
            actual = frozenset(r[0] for r in cur.execute(key_query(table)).fetchall())
            if actual != seen[table]:
                problems[table] = _diff("database", actual, "model", seen[table])
    assert problems == {}


def test_a_role_that_is_no_principal_sees_no_protected_row(sample: SampleWorld) -> None:
    seen = visible_rows(sample.world, "not_a_principal", sample.now)
    assert all(not seen[t] for t in TABLES if t != "insurer")
    assert seen["insurer"] == frozenset(i.id for i in sample.world.insurer)


def test_a_naive_now_is_refused(sample: SampleWorld) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        visible_rows(sample.world, "x", sample.now.replace(tzinfo=None))

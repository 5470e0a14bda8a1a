"""Differential fuzzing: random worlds, the database as every principal vs the reference model.

For each world Hypothesis generates (``agency_rls.reference_model.strategies.worlds``), the world is loaded
into one migrated scratch database (truncate, plain-SQL load, ``provision(prune=True)``), and for
every principal and every table the rows the database returns under ``SET LOCAL ROLE`` must be
exactly the rows ``reference_model`` computes from the spec. A failing world is shrunk and printed
as a YAML scenario that replays it.

Budget: the ``ci`` profile (default) runs 200 worlds, derandomized: the same worlds on every run and
machine, so that a red CI reproduces anywhere and the rule-coverage check below cannot flake.
``AGENCY_RLS_FUZZ_PROFILE=thorough`` runs 5000 random worlds (new ones each run: that is where new
disagreements are found), and ``AGENCY_RLS_FUZZ_EXAMPLES=N`` sets the number of worlds of either
profile, e.g. ``AGENCY_RLS_FUZZ_PROFILE=thorough AGENCY_RLS_FUZZ_EXAMPLES=20000 pytest
tests/test_differential.py``.

After the worlds, every rule clause must have decided at least one row each way (shown / hidden,
see ``agency_rls.reference_model.coverage``): a generator that never builds, say, a supervisor handling a
contract its entrusted working agency does not handle, would otherwise pass without testing the
incident.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from agency_rls.rls_policies.provision import provision
from hypothesis import HealthCheck, given, settings

from agency_rls.reference_model.database import world_from_connection, world_to_sql
from agency_rls.reference_model.differential import TRUNCATE, Differential
from agency_rls.reference_model.scenario import world_from_yaml, world_to_scenario, world_to_yaml
from agency_rls.reference_model.strategies import ANCHOR, worlds
from agency_rls.reference_model.world import World
from tests.support import ScratchDatabase, create_database, set_test_passwords

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile("thorough", settings.get_profile("ci"), max_examples=5000, derandomize=False)


def fuzz_settings() -> settings:
    """The profile named by AGENCY_RLS_FUZZ_PROFILE (default ci), AGENCY_RLS_FUZZ_EXAMPLES worlds."""
    profile = settings.get_profile(os.environ.get("AGENCY_RLS_FUZZ_PROFILE", "ci"))
    examples = int(os.environ.get("AGENCY_RLS_FUZZ_EXAMPLES", "0")) or profile.max_examples
    return settings(profile, max_examples=examples)


def _provision(conn: psycopg.Connection) -> object:
    return provision(conn, prune=True)


@contextmanager
def differential_database(server: str, label: str) -> Iterator[tuple[Differential, ScratchDatabase]]:
    """A migrated scratch database with a backend login, ready for ``Differential.check``; removed after."""
    db = create_database(server, label)
    backend = None
    try:
        db.migrate()
        with db.connect() as conn:
            set_test_passwords(conn, db.prefix)
        backend = psycopg.connect(db.login_conninfo(db.role("rls_backend")))
        with db.connect() as admin:
            yield Differential(admin, backend, db.prefix, _provision, dump_now=ANCHOR), db
    finally:
        if backend is not None:
            backend.close()
        try:
            db.downgrade_base()
        finally:
            db.drop()


@pytest.fixture(scope="module")
def fuzz(server: str) -> Iterator[Differential]:
    with differential_database(server, "fuzz") as (differential, _):
        yield differential


def test_database_matches_reference_model_on_generated_worlds(fuzz: Differential) -> None:
    @fuzz_settings()
    @given(world=worlds())
    def database_matches_model(world: World) -> None:
        fuzz.check(world)

    database_matches_model()
    print(f"\n{fuzz.worlds_checked} worlds; rule clauses that decided a row (shown / hidden):")
    print(fuzz.tally.report())
    missing = fuzz.tally.unexercised()
    assert not missing, "rule clauses the generated worlds never exercised:\n" + "\n".join(missing)


def test_world_to_sql_and_scenarios_round_trip(fuzz: Differential) -> None:
    """The SQL script and the YAML scenario of a world load back as the same world."""

    @settings(fuzz_settings(), max_examples=15)
    @given(world=worlds())
    def round_trip(world: World) -> None:
        with fuzz.admin.transaction():
            fuzz.admin.execute(TRUNCATE)
            fuzz.provision(fuzz.admin)  # drops the last world's principal roles: never remapped in place
        fuzz.admin.execute(world_to_sql(world, prefix=fuzz.prefix))
        assert world_from_connection(fuzz.admin) == world.with_role_prefix(fuzz.prefix).sorted()
        assert world_from_yaml(world_to_yaml(world, ANCHOR), now=ANCHOR) == world
        later = ANCHOR + dt.timedelta(days=40, hours=5)  # replayed another day: same windows around now
        replayed = world_from_yaml(world_to_yaml(world, ANCHOR), now=later)
        assert world_to_scenario(replayed, later) == world_to_scenario(world, ANCHOR)

    round_trip()

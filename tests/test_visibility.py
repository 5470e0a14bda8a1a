"""What every principal of the sample world reads, table by table, with exact expected rows.

The expectations (the `sees` lists of scenarios/sample_world.yaml, read by
agency_rls.checks.sample_world as EXPECTED) were derived by hand from scope-rules.md,
independently of the policy SQL. Each principal is checked twice: through the backend login
role with SET LOCAL ROLE (how applications connect), and by logging in as itself.
"""

from __future__ import annotations

import psycopg
import pytest

from agency_rls.checks.sample_world import EXPECTED, INCIDENT_CHECKS, PRINCIPALS, TABLES, visible_keys
from tests.support import World


def describe(expected: frozenset[str], actual: frozenset[str]) -> str:
    return f"unexpected: {sorted(actual - expected)}; missing: {sorted(expected - actual)}"


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_principal_sees_exactly_its_scope_via_set_local_role(
    world: World, superuser: psycopg.Connection, principal: str
) -> None:
    problems = {}
    for table in TABLES:
        with world.acting_as(principal):
            actual = visible_keys(world.backend, superuser, table, prefix=world.prefix)
        if actual != EXPECTED[principal][table]:
            problems[table] = describe(EXPECTED[principal][table], actual)
    assert problems == {}


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_principal_sees_exactly_its_scope_via_direct_login(
    world: World, superuser: psycopg.Connection, principal: str
) -> None:
    problems = {}
    with world.login_as(principal) as conn:
        for table in TABLES:
            actual = visible_keys(conn, superuser, table, prefix=world.prefix)
            if actual != EXPECTED[principal][table]:
                problems[table] = describe(EXPECTED[principal][table], actual)
    assert problems == {}


@pytest.mark.parametrize("check", INCIDENT_CHECKS, ids=[c.label for c in INCIDENT_CHECKS])
def test_incident_case(world: World, check: object) -> None:
    """The incident cases, the renewal case, seconded staff and insurers, each named by its label."""
    label, role, query, expected = check  # type: ignore[misc]
    with world.acting_as(role) as cur:
        assert cur.execute(query).fetchone() == (expected,), label


def test_the_backend_role_without_set_role_sees_nothing(world: World) -> None:
    """Attack 20: the backend login role is NOINHERIT; without SET ROLE it is refused every table."""
    for table in TABLES:
        if table == "insurer":
            continue
        with world.backend.transaction(force_rollback=True), world.backend.cursor() as cur:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                cur.execute(f"SELECT count(*) FROM public.{table}")


def test_every_role_reads_insurer(world: World, superuser: psycopg.Connection) -> None:
    """insurer holds no personal data: even the backend role without SET ROLE reads all of it."""
    every = superuser.execute("SELECT code FROM public.insurer ORDER BY code").fetchall()
    with world.backend.transaction(force_rollback=True):
        seen = world.backend.execute("SELECT code FROM public.insurer ORDER BY code").fetchall()
    assert seen == every and len(every) > 0

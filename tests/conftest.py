"""Fixtures: the test server, fresh databases, and the sample world acting as its principals."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from agency_rls.cluster.binaries import find_bindir, server_version
from agency_rls.cluster.throwaway import ThrowawayCluster
from tests.support import (
    DBA_MODE,
    SERVER_ENV,
    TEST_AS_ENV,
    ScratchDatabase,
    World,
    create_database,
    sample_world_on,
    server_conninfo_from_env,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=None,
        metavar="N",
        help="differential fuzzing: run N random worlds and N/2 write sequences (new ones each run) instead of the CI's fixed set",
    )


def pytest_configure(config: pytest.Config) -> None:
    """--fuzz-examples N is the thorough profile with N worlds (tests/test_differential.py reads these)."""
    examples = config.getoption("--fuzz-examples")
    if examples:
        os.environ["AGENCY_RLS_FUZZ_PROFILE"] = "thorough"
        os.environ["AGENCY_RLS_FUZZ_EXAMPLES"] = str(examples)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """DBA mode skips what only a superuser can do, and the wheel install (it does not use the mode)."""
    if not DBA_MODE:
        return
    for item in items:
        marker = item.get_closest_marker("needs_superuser")
        if marker is not None:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            item.add_marker(
                pytest.mark.skip(reason=f"{TEST_AS_ENV}=dba: needs SUPERUSER" + (f" ({why})" if why else ""))
            )
        elif item.get_closest_marker("slow") is not None:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"{TEST_AS_ENV}=dba: the wheel install does not depend on who runs the product;"
                    " the superuser runs cover it"
                )
            )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which server the run uses: CI runs the suite on two majors and its log must say which; and as whom."""
    who = (
        f"agency-rls runs as: a NOSUPERUSER CREATEROLE CREATEDB database owner per database ({TEST_AS_ENV}=dba)"
        if DBA_MODE
        else f"agency-rls runs as: the superuser ({TEST_AS_ENV}=dba runs it as a non-superuser DBA)"
    )
    if server_conninfo_from_env() is not None:
        return [f"agency-rls server: the configured one ({SERVER_ENV})", who]
    try:
        bindir = find_bindir()
    except RuntimeError as exc:
        return [f"agency-rls server: {exc}", who]
    return [
        f"agency-rls server: throwaway cluster, {server_version(bindir) or '(version unknown)'} from {bindir}",
        who,
    ]


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """Admin conninfo of the test server: the configured one, or a throwaway cluster."""
    configured = server_conninfo_from_env()
    if configured is not None:
        yield configured
        return
    with ThrowawayCluster() as cluster:
        yield cluster.conninfo()


@pytest.fixture
def fresh_db(server: str) -> Iterator[ScratchDatabase]:
    """An empty database with its own role prefix; removed, with every role of the prefix, afterwards."""
    db = create_database(server, "fresh")
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="session")
def world(server: str) -> Iterator[World]:
    """The sample world (scenarios/sample_world.yaml), migrated and provisioned with login principals."""
    with sample_world_on(server, "world") as built:
        yield built


@pytest.fixture(scope="module")
def superuser(world: World) -> Iterator[psycopg.Connection]:
    """An administrator's connection to the sample world (autocommit), for reading keys and changing
    state: the superuser, or in DBA mode the database's NOSUPERUSER owner (through the loader role)."""
    with world.admin() as conn:
        yield conn


@pytest.fixture(scope="module")
def backend_conninfo(world: World) -> str:
    """Conninfo that logs in as the sample world's backend role."""
    return world.db.login_conninfo(world.role("rls_backend"))


@pytest.fixture(scope="module")
def contract_keys(superuser: psycopg.Connection) -> dict[int, str]:
    """Contract id -> policy number, read once by the administrator (threads then need no connection of it)."""
    from agency_rls.checks.sample_world import id_to_key

    return id_to_key(superuser, "contract")

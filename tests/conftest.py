"""Fixtures: the test server, fresh databases, and the sample world acting as its principals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.throwaway_cluster import ThrowawayCluster
from tests.support import ScratchDatabase, World, create_database, sample_world_on, server_conninfo_from_env


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
    """The sample world (scripts.sample_world), migrated and provisioned with login principals."""
    with sample_world_on(server, "world") as built:
        yield built

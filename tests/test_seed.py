"""``agency-rls seed``: a reproducible synthetic world, bulk-loaded (``agency_rls.workload.seed``).

The tiny preset is seeded once per module; the world must be the same for the same seed, hold
exactly the preset's counts, exercise the rules (the incident's shapes included), and get its
principals provisioned. A second seed of a database holding rows, or of one not migrated, is
refused with one line. Dates are checked against the world's ``as_of``, not the server's clock.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from agency_rls.scripts.cli import app
from psycopg import sql
from typer.testing import CliRunner

from agency_rls.workload.seed import COLUMNS, SCALES, SeedError, SeedReport, seed_world
from agency_rls.workload.synthetic import Blueprint, solve_zipf_exponent
from tests.support import ScratchDatabase, create_database

AS_OF = dt.date(2026, 1, 1)
SEED = 7
TINY = SCALES["tiny"]


@pytest.fixture(scope="module")
def seeded(server: str) -> Iterator[tuple[ScratchDatabase, SeedReport]]:
    """A database migrated and seeded with the tiny preset (seed 7, as of 2026-01-01)."""
    db = create_database(server, "seed")
    try:
        db.migrate()
        with db.connect() as conn:
            report = seed_world(conn, scale="tiny", seed=SEED, as_of=AS_OF)
        yield db, report
    finally:
        try:
            db.downgrade_base()
        finally:
            db.drop()


@pytest.fixture
def conn(seeded: tuple[ScratchDatabase, SeedReport]) -> Iterator[psycopg.Connection[Any]]:
    with seeded[0].connect() as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        yield connection


def scalar(conn: psycopg.Connection[Any], query: str, params: object = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def checksums(conn: psycopg.Connection[Any], prefix: str) -> dict[str, str]:
    """Per table, an md5 of the seeded columns of every row in key order (principals without the prefix)."""
    sums = {}
    for table, columns in COLUMNS.items():
        if table == "principal":
            query = sql.SQL(
                "SELECT md5(string_agg(concat_ws('|', substr(role_name, {}), kind, agency_id, insurer_id), ','"
                " ORDER BY role_name)) FROM public.principal"
            ).format(sql.Literal(len(prefix) + 1))
        else:
            query = sql.SQL(
                "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM (SELECT {} FROM {}) AS t"
            ).format(sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier("public", table))
        sums[table] = scalar(conn, query)
    return sums


def test_the_presets_are_the_issues() -> None:
    bench = SCALES["bench"]
    assert (bench.contracts, bench.customers, bench.agencies, bench.notices) == (
        10_000_000,
        3_000_000,
        5_000,
        2_000_000,
    )
    assert bench.supervising_agencies == 100 and bench.working_per_supervisor == (10, 50)
    exponent = solve_zipf_exponent(bench.agencies, bench.largest_agency_share)
    weights = [r**-exponent for r in range(1, bench.agencies + 1)]
    assert weights[0] / sum(weights) == pytest.approx(0.02, rel=1e-3)  # the largest: ~200,000 contracts
    assert [s.contracts for s in SCALES.values()] == sorted(s.contracts for s in SCALES.values())


def test_generation_is_deterministic_in_python() -> None:
    def contracts(seed: int) -> list[tuple[object, ...]]:
        blueprint = Blueprint.build(TINY, seed, AS_OF)
        list(blueprint.customer_rows())
        return list(blueprint.contract_rows())

    assert contracts(SEED) == contracts(SEED)
    assert contracts(SEED) != contracts(SEED + 1)


def test_counts_match_the_preset(
    seeded: tuple[ScratchDatabase, SeedReport], conn: psycopg.Connection
) -> None:
    db, report = seeded
    counts = {
        table: scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))
        for table in COLUMNS
    }
    assert counts == report.rows
    assert counts["insurer"] == 20
    assert counts["agency"] == TINY.agencies
    assert counts["customer"] == TINY.customers
    assert counts["contract"] == TINY.contracts
    assert counts["notice"] == TINY.notices
    assert counts["principal"] == TINY.agencies + 20 + TINY.seconded_principals
    assert counts["contract_handler"] >= TINY.contracts
    assert counts["notice_receipt"] > 0
    assert report.scale == "tiny" and report.seed == SEED and report.as_of == "2026-01-01"
    assert report.prefix == db.prefix
    assert set(report.seconds) >= {*COLUMNS, "provision", "vacuum"}
    assert report.database_bytes > sum(report.table_bytes.values()) > 0


def test_same_seed_same_rows(seeded: tuple[ScratchDatabase, SeedReport], fresh_db: ScratchDatabase) -> None:
    db, _ = seeded
    fresh_db.migrate()
    try:
        with fresh_db.connect() as other:
            seed_world(other, scale="tiny", seed=SEED, as_of=AS_OF, chunk_rows=700, vacuum=False)
            again = checksums(other, fresh_db.prefix)
        with db.connect() as first:
            assert checksums(first, db.prefix) == again
    finally:
        fresh_db.downgrade_base()


def test_the_world_exercises_the_rules(conn: psycopg.Connection) -> None:
    at = dt.datetime.combine(AS_OF, dt.time(12), tzinfo=dt.UTC)

    def count(query: str) -> int:
        return int(scalar(conn, query, {"at": at}))

    valid = "{0}.valid_from <= %(at)s AND ({0}.valid_to IS NULL OR %(at)s < {0}.valid_to)"
    # Notices about a contract: by its insurer, to an agency that handles it or that agency's supervisor.
    assert (
        count(
            "SELECT count(*) FROM notice n JOIN contract c ON c.id = n.contract_id WHERE c.insurer_id <> n.insurer_id"
        )
        == 0
    )
    assert (
        count(
            """SELECT count(*) FROM notice n WHERE n.contract_id IS NOT NULL AND NOT EXISTS (
                 SELECT FROM contract_handler h WHERE h.contract_id = n.contract_id
                    AND (h.agency_id = n.addressee_agency_id OR EXISTS (
                         SELECT FROM supervision s WHERE s.working_agency_id = h.agency_id
                            AND s.supervising_agency_id = n.addressee_agency_id)))"""
        )
        == 0
    )
    assert count("SELECT count(DISTINCT kind) FROM notice") == 6
    assert count("SELECT count(*) FROM notice WHERE contract_id IS NULL AND customer_id IS NOT NULL") > 0
    assert (
        count(
            "SELECT count(*) FROM notice WHERE kind IN ('message', 'general') AND (contract_id IS NOT NULL OR customer_id IS NOT NULL)"
        )
        == 0
    )
    assert (
        count(
            "SELECT count(*) FROM notice_receipt r JOIN notice n ON n.id = r.notice_id WHERE r.agency_id <> n.addressee_agency_id"
        )
        == 0
    )
    # Every contract has a handler; most are handled at as_of; joint handlers; links ended and starting later.
    assert (
        count(
            "SELECT count(*) FROM contract c WHERE NOT EXISTS (SELECT FROM contract_handler h WHERE h.contract_id = c.id)"
        )
        == 0
    )
    handled_now = count(
        f"SELECT count(DISTINCT h.contract_id) FROM contract_handler h WHERE {valid.format('h')}"
    )
    assert handled_now > TINY.contracts * 0.4
    assert count("SELECT count(*) FROM contract_handler WHERE role = 'joint'") > 0
    assert count("SELECT count(*) FROM contract_handler WHERE valid_to <= %(at)s") > 0
    assert count("SELECT count(*) FROM contract_handler WHERE valid_from > %(at)s") > 0
    # Renewal chains: the renewed generation's link is closed; expired and future contracts.
    assert (
        count("SELECT count(*) FROM contract WHERE previous_contract_id IS NOT NULL") > TINY.contracts * 0.2
    )
    assert (
        count(
            """SELECT count(*) FROM contract_handler h
                WHERE h.valid_to IS NULL AND h.role = 'primary'
                  AND EXISTS (SELECT FROM contract c WHERE c.previous_contract_id = h.contract_id)"""
        )
        == 0
    )
    assert count("SELECT count(*) FROM contract WHERE expires_on < %(at)s::date") > 0
    assert count("SELECT count(*) FROM contract WHERE starts_on > %(at)s::date") > 0
    # Gateway contracts (~20%) from the gateway insurers only; the operators' are direct.
    gateway = count("SELECT count(*) FROM contract WHERE source = 'gateway'")
    assert 0.1 * TINY.contracts < gateway < 0.35 * TINY.contracts
    assert (
        count(
            "SELECT count(*) FROM contract c JOIN insurer i ON i.id = c.insurer_id WHERE (c.source = 'gateway') <> (i.kind = 'gateway')"
        )
        == 0
    )
    assert count("SELECT count(*) FROM insurer WHERE kind = 'operator'") == 2
    # Customers as policyholder and insured (not the same one), prospects.
    assert count("SELECT count(*) FROM contract WHERE insured_id <> policyholder_id") > 0
    assert count("SELECT count(*) FROM customer WHERE registered_by_agency_id IS NOT NULL") > 0
    # The incident's shape: an agency handles (now) contracts of an insurer that does not entrust it now.
    assert (
        count(
            f"""SELECT count(DISTINCT h.agency_id) FROM contract_handler h
                 WHERE {valid.format("h")}
                   AND NOT EXISTS (SELECT FROM entrustment e WHERE e.agency_id = h.agency_id
                                      AND e.insurer_id = h.insurer_id AND {valid.format("e")})"""
        )
        > 0
    )
    # ... and a working agency without an entrustment its supervisor holds, which gets notices from it.
    assert (
        count(
            f"""SELECT count(*) FROM supervision s
                  JOIN notice n ON n.addressee_agency_id = s.supervising_agency_id
                 WHERE {valid.format("s")}
                   AND NOT EXISTS (SELECT FROM entrustment e WHERE e.agency_id = s.working_agency_id
                                      AND e.insurer_id = n.insurer_id AND {valid.format("e")})"""
        )
        > 0
    )
    # Supervision: every supervising agency has 10-30 (the tiny preset's range) working agencies at as_of.
    sizes = [
        row[0]
        for row in conn.execute(
            f"SELECT count(*) FROM supervision s WHERE {valid.format('s')} GROUP BY supervising_agency_id",
            {"at": at},
        )
    ]
    assert len(sizes) == TINY.supervising_agencies
    assert all(TINY.working_per_supervisor[0] <= size <= TINY.working_per_supervisor[1] for size in sizes)
    assert count("SELECT count(*) FROM supervision WHERE valid_to <= %(at)s") > 0
    assert count("SELECT count(*) FROM supervision WHERE valid_from > %(at)s") > 0
    assert count("SELECT count(*) FROM entrustment WHERE valid_to <= %(at)s") > 0
    assert count("SELECT count(*) FROM entrustment WHERE valid_from > %(at)s") > 0
    # Every agency is entrusted by at least one insurer at as_of.
    assert (
        count(
            f"SELECT count(*) FROM agency a WHERE NOT EXISTS (SELECT FROM entrustment e WHERE e.agency_id = a.id AND {valid.format('e')})"
        )
        == 0
    )


def test_principals_are_provisioned(
    seeded: tuple[ScratchDatabase, SeedReport], conn: psycopg.Connection
) -> None:
    db, report = seeded
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM principal p WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = p.role_name)",
        )
        == 0
    )
    restricted = conn.execute(
        "SELECT role_name, agency_id, insurer_id FROM principal WHERE kind = 'agency' AND insurer_id IS NOT NULL"
    ).fetchall()
    assert len(restricted) == TINY.seconded_principals
    for role, agency_id, insurer_id in restricted:
        assert role.startswith(db.prefix + "staff_")
        # Seconded to an agency that the insurer entrusts.
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM entrustment WHERE agency_id = %s AND insurer_id = %s",
                (agency_id, insurer_id),
            )
            > 0
        )
    assert report.principals == TINY.agencies + 20 + TINY.seconded_principals
    roles = {principal["role"] for principal in report.notable.values()}
    assert scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = ANY (%s)", (list(roles),)) == len(
        roles
    )
    assert {
        "largest_agency",
        "median_agency",
        "smallest_agency",
        "working_agency",
        "seconded_principal",
    } <= set(report.notable)
    # Identity sequences are past the loaded ids: the next default id is free.
    assert scalar(conn, "SELECT nextval(pg_get_serial_sequence('public.customer', 'id'))") > TINY.customers


def test_refuses_a_database_holding_rows(
    seeded: tuple[ScratchDatabase, SeedReport], conn: psycopg.Connection
) -> None:
    before = checksums(conn, seeded[0].prefix)
    with pytest.raises(
        SeedError, match=r"already holds rows \(insurer, agency, supervision and 7 more\).*nothing changed"
    ):
        seed_world(conn, scale="tiny", seed=SEED + 1, as_of=AS_OF)
    assert checksums(conn, seeded[0].prefix) == before


def test_refuses_a_database_not_migrated(fresh_db: ScratchDatabase) -> None:
    with fresh_db.connect() as conn, pytest.raises(SeedError, match="not migrated"):
        seed_world(conn, scale="tiny")


def test_command_seeds_with_migrate_and_prints_json(fresh_db: ScratchDatabase) -> None:
    args = ["seed", "--database-url", fresh_db.url, "--migrate", "--role-prefix", fresh_db.prefix]
    args += ["--scale", "tiny", "--seed", "3", "--as-of", "2026-01-01", "--format", "json"]
    result = CliRunner().invoke(app, args)
    try:
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["rows"]["contract"] == TINY.contracts
        assert report["seed"] == 3 and report["prefix"] == fresh_db.prefix
        assert report["notable"]["largest_agency"]["role"].startswith(fresh_db.prefix + "agency_")
        again = CliRunner().invoke(app, ["seed", "--database-url", fresh_db.url, "--scale", "tiny"])
        assert again.exit_code == 1
        assert again.stderr.startswith("agency-rls: this database already holds rows")
        assert len(again.stderr.strip().splitlines()) == 1
    finally:
        fresh_db.downgrade_base()


@pytest.mark.skipif(
    "dba" not in inspect.signature(create_database).parameters, reason="tests.support has no DBA databases"
)
def test_a_dba_without_superuser_seeds_through_the_loader_role(server: str) -> None:
    """COPY FROM is refused under row level security: the DBA's rows go through a temporary table."""
    db = create_database(server, "seeddba", dba=True)  # type: ignore[call-arg]
    try:
        db.migrate()
        with db.connect() as conn:
            assert scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
            report = seed_world(conn, scale="tiny", seed=SEED, as_of=AS_OF, chunk_rows=900)
            assert report.loaded_by == "staged copy"
            assert report.rows["contract"] == TINY.contracts
            assert scalar(conn, "SELECT count(*) FROM public.contract") == TINY.contracts
    finally:
        try:
            db.downgrade_base()
        finally:
            db.drop()


#: The values the schema derives (scope copies and the handler's insurer), per table: what a load
#: with triggers off must write itself (agency_rls.workload.scope_copies).
DERIVED = {
    "contract": ("id", "handler_agency_ids", "handler_windows"),
    "contract_handler": ("id", "insurer_id"),
    "customer": ("id", "handler_agency_ids", "handler_insurer_ids", "handler_windows", "party_insurer_ids"),
}


def derived_checksums(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {
        table: scalar(
            conn,
            sql.SQL(
                "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM (SELECT {} FROM {}) AS t"
            ).format(sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier("public", table)),
        )
        for table, columns in DERIVED.items()
    }


@pytest.mark.needs_superuser("compares the superuser's load with triggers off against the DBA's with them on")
@pytest.mark.skipif(
    "dba" not in inspect.signature(create_database).parameters, reason="tests.support has no DBA databases"
)
def test_a_load_with_triggers_off_writes_what_the_triggers_would(
    seeded: tuple[ScratchDatabase, SeedReport], server: str
) -> None:
    """The superuser's fast load (session_replication_role = replica) writes the scope copies and the
    handlers' insurer itself; provision's repair found nothing to rewrite, and the world is the one
    the DBA's load through every trigger and key produces, copies included."""
    db, report = seeded
    assert report.loaded_by == "copy, triggers off"
    assert report.rows_repaired == {"contract": 0, "contract_handler": 0, "customer": 0}
    dba_db = create_database(server, "seedcopies", dba=True)  # type: ignore[call-arg]
    try:
        dba_db.migrate()
        with dba_db.connect() as conn:
            staged = seed_world(conn, scale="tiny", seed=SEED, as_of=AS_OF, vacuum=False)
            assert staged.loaded_by == "staged copy" and staged.rows_repaired == {}
            by_triggers = derived_checksums(conn), checksums(conn, dba_db.prefix)
        with db.connect() as conn:
            assert (derived_checksums(conn), checksums(conn, db.prefix)) == by_triggers
            # Not vacuous: the copies are there (a contract with two links, a customer with several).
            assert scalar(conn, "SELECT max(cardinality(handler_agency_ids)) FROM public.contract") >= 2
            assert scalar(conn, "SELECT max(cardinality(party_insurer_ids)) FROM public.customer") >= 2
    finally:
        try:
            dba_db.downgrade_base()
        finally:
            dba_db.drop()


@pytest.mark.needs_superuser("loads with session_replication_role = replica")
def test_a_wrong_copy_of_the_loader_is_repaired_and_counted(
    fresh_db: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the loader's copies and the schema ever disagree, provision's repair rewrites the rows (the
    data stays exact) and the report says how many: the count the other test requires to be zero."""
    from agency_rls.workload import scope_copies

    real = scope_copies.ScopeCopies.handler_rows

    def wrong_insurer(self: scope_copies.ScopeCopies, rows: Any) -> Iterator[tuple[object, ...]]:
        for row in real(self, rows):
            yield (*row[:-1], 1 if row[0] == 5 else row[-1])  # handler 5 names insurer 1

    monkeypatch.setattr(scope_copies.ScopeCopies, "handler_rows", wrong_insurer)
    fresh_db.migrate()
    try:
        with fresh_db.connect() as conn:
            report = seed_world(conn, scale="tiny", seed=SEED, as_of=AS_OF, vacuum=False)
            right = scalar(
                conn,
                "SELECT insurer_id <> 1 FROM public.contract WHERE id ="
                " (SELECT contract_id FROM public.contract_handler WHERE id = 5)",
            )
            assert report.rows_repaired["contract_handler"] == (1 if right else 0)
            assert (
                scalar(
                    conn,
                    "SELECT count(*) FROM public.contract_handler AS h JOIN public.contract AS c ON c.id = h.contract_id"
                    " WHERE h.insurer_id IS DISTINCT FROM c.insurer_id",
                )
                == 0
            )
    finally:
        fresh_db.downgrade_base()

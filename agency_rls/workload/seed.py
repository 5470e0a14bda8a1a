"""``agency-rls seed``: a reproducible synthetic world at scale, bulk-loaded with COPY.

    report = seed_world(conn, scale="small", seed=1)   # or SCALES["bench"], a Scale of your own

Into a database migrated by this project (at head) whose tables are empty, in one transaction:
the world of ``agency_rls.workload.synthetic`` (same seed and ``as_of``, same rows), table after
table in dependency order with explicit ids, each table in ``COPY`` statements of at most
``chunk_rows`` rows (bounded memory on both sides: the rows are generated as they are sent, and
the server's queue of foreign-key checks and the statement triggers' transition tables hold one
statement's rows); then ``provision`` (every agency's and insurer's principal row and role, the
seconded principals' roles, identity sequences moved past the loaded ids), all or nothing. After
the commit, ``VACUUM (ANALYZE)`` of the tables: the visibility map and hint bits a benchmark would
otherwise pay for on its first reads, and planner statistics. ``conn`` must be in autocommit.

Who loads: a superuser copies straight into the tables with triggers and key checks off
(``session_replication_role = replica``), writing the scope copies and derived columns the
triggers would have written (``agency_rls.workload.scope_copies``); ``provision`` then runs the
database's own repair over every row, and the report counts the rows it had to rewrite
(``rows_repaired``: zero unless the generator and the schema disagree). Principal rows are
loaded with triggers on: their guard is not ours to skip. A DBA without SUPERUSER (a member of
``<prefix>rls_loader`` and the table owner, with CREATEROLE for provisioning) cannot: PostgreSQL
refuses ``COPY FROM`` into a table with row level security for anyone it applies to, so each
statement's rows are copied into a temporary table and moved with ``INSERT ... SELECT`` (through
the loader's policies), with every trigger and key on: ten times slower, exact by the schema.

Refused, before anything changes, with one line: a database not migrated to head, one whose
tables already hold rows, a role that may not load or provision.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from agency_rls.migrations.runner import head_revision
from agency_rls.migrations.version_table import VERSION_SCHEMA
from agency_rls.rls_policies.names import ManagementRoles, default_principal_role
from agency_rls.rls_policies.privileges import MissingPrivilege, require_provision
from agency_rls.rls_policies.provision import ProvisionError, provision, stored_prefix
from agency_rls.schema import ALL_TABLES
from agency_rls.workload.scope_copies import ScopeCopies
from agency_rls.workload.synthetic import SCALES, Blueprint, Scale
from agency_rls.workload.xact_stats import rows_updated

__all__ = ["COLUMNS", "SCALES", "Progress", "Scale", "SeedError", "SeedReport", "seed_world"]

#: The columns seed writes, per table, in load (dependency) order. Derived columns are the schema's.
COLUMNS: dict[str, tuple[str, ...]] = {
    "insurer": ("id", "code", "name", "line", "kind"),
    "agency": ("id", "code", "name"),
    "supervision": ("id", "supervising_agency_id", "working_agency_id", "valid_from", "valid_to"),
    "entrustment": ("id", "agency_id", "insurer_id", "valid_from", "valid_to"),
    "customer": (
        "id",
        "full_name",
        "full_name_kana",
        "address",
        "phone",
        "fax",
        "email",
        "birth_date",
        "gender",
        "registered_by_agency_id",
    ),
    "contract": (
        "id",
        "insurer_id",
        "policy_number",
        "previous_contract_id",
        "product_type",
        "policyholder_id",
        "insured_id",
        "beneficiary_name",
        "starts_on",
        "expires_on",
        "premium",
        "has_changes",
        "has_claims",
        "source",
    ),
    "contract_handler": ("id", "contract_id", "agency_id", "role", "valid_from", "valid_to"),
    "notice": (
        "id",
        "insurer_id",
        "addressee_agency_id",
        "kind",
        "contract_id",
        "customer_id",
        "body",
        "created_at",
    ),
    "notice_receipt": ("id", "notice_id", "agency_id", "read_at"),
    "principal": ("role_name", "kind", "agency_id", "insurer_id"),
}
assert tuple(COLUMNS) == ALL_TABLES, "seed loads every table of the schema, in its dependency order"

#: The tables whose derived values provision's repair may rewrite after a load with triggers off.
_DERIVED_TABLES = ("contract", "contract_handler", "customer")
#: Rows per COPY statement.
CHUNK_ROWS = 500_000
#: How often (rows) the progress callback hears of a table.
_PROGRESS_EVERY = 5_000


class SeedError(RuntimeError):
    """Seeding refused or failed; the transaction rolled back and the database is as it was."""


class Progress(Protocol):
    """Told how far each step is: a table (rows), then ``provision`` and ``vacuum`` (0 of 1, 1 of 1)."""

    def __call__(self, step: str, done: int, total: int) -> None: ...


@dataclass
class SeedReport:
    """What ``seed_world`` loaded, how long each step took, and principals worth acting as."""

    scale: str
    seed: int
    as_of: str
    prefix: str
    #: 'copy, triggers off' (superuser; copies written by the loader, repaired by provision) or
    #: 'staged copy' (COPY to a temporary table, INSERT ... SELECT, every trigger and key on)
    loaded_by: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per table, provision, vacuum
    total_seconds: float = 0.0
    table_bytes: dict[str, int] = field(default_factory=dict)  # heap, indexes and TOAST, after vacuum
    database_bytes: int = 0
    principals: int = 0
    roles_created: int = 0
    #: Rows provision's repair rewrote after a load with triggers off, per table (should be zero:
    #: anything else means the loader's copies and the schema's definition disagree).
    rows_repaired: dict[str, int] = field(default_factory=dict)
    #: Principals worth acting as: label -> role, ids, contracts handled now (a link valid at as_of)
    #: and contracts it has a link to at any time.
    notable: dict[str, dict[str, Any]] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)  # shape: gateway share, renewals, ...

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


def seed_world(
    conn: psycopg.Connection[Any],
    *,
    scale: Scale | str = "small",
    seed: int = 1,
    as_of: dt.date | None = None,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
    vacuum: bool = True,
) -> SeedReport:
    """Generate the world of ``scale`` from ``seed`` and load it into the empty, migrated database of ``conn``.

    ``as_of`` is the world's "today" (default: the server's current UTC date): validity windows,
    contract dates and notices are laid out around it, so the same ``seed`` and ``as_of`` give
    the same rows. ``conn`` must be in autocommit: the load is one transaction of its own, committed
    here, and ``VACUUM`` (``vacuum=False``: only ``ANALYZE``) runs outside it. Raises ``SeedError``
    with a one-line reason, the database unchanged.
    """
    if isinstance(scale, str):
        if scale not in SCALES:
            raise SeedError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
        scale = SCALES[scale]
    if chunk_rows < 1:
        raise SeedError("chunk_rows must be at least 1")
    if not conn.autocommit:
        raise SeedError(
            "seed needs a connection in autocommit mode: it commits its own transaction, then vacuums"
        )
    started = time.perf_counter()
    tell = progress or _silent
    prefix = _check_ready(conn)
    superuser = _is_superuser(conn)
    if as_of is None:
        row = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()
        assert row is not None
        as_of = row[0]
        assert isinstance(as_of, dt.date)
    report = SeedReport(
        scale=scale.name,
        seed=seed,
        as_of=as_of.isoformat(),
        prefix=prefix,
        loaded_by="copy, triggers off" if superuser else "staged copy",
    )
    try:
        with conn.transaction():
            _lock_and_check_empty(conn)
            # One commit at the end: nothing to wait for per statement. The statement triggers'
            # set-based refreshes get room for their hashes and sorts.
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute("SET LOCAL work_mem = '64MB'")
            blueprint = Blueprint.build(scale, seed, as_of)
            copier = _Copier(conn, staged=not superuser, chunk_rows=chunk_rows, progress=tell)
            copies = ScopeCopies(blueprint) if superuser else None
            for table, columns, rows, total in _streams(blueprint, prefix, copies):
                began = time.perf_counter()
                # Triggers and keys off for the loader's own rows (their derived values are
                # written, then checked by provision); on for the principal rows and their guard.
                if copies is not None:  # (a superuser's: nobody else may set it)
                    replica = table != "principal"
                    conn.execute(f"SET LOCAL session_replication_role = {'replica' if replica else 'origin'}")
                report.rows[table] = copier.load(table, columns, rows(), total())
                report.seconds[table] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            tell("provision", 0, 1)
            updates_before = rows_updated(conn, _DERIVED_TABLES)
            provisioned = provision(conn)
            if copies is not None:
                report.rows_repaired = {
                    table: count - updates_before.get(table, 0)
                    for table, count in rows_updated(conn, _DERIVED_TABLES).items()
                }
            tell("provision", 1, 1)
            report.seconds["provision"] = round(time.perf_counter() - began, 3)
            report.principals = provisioned.principals
            report.roles_created = len(provisioned.roles_created)
            report.rows["principal"] = _count(conn, "principal")
    except ProvisionError as error:
        raise SeedError(f"provisioning the seeded world failed, nothing was loaded: {error}") from None
    began = time.perf_counter()
    step = "vacuum" if vacuum else "analyze"
    tell(step, 0, 1)
    _vacuum_analyze(conn, vacuum=vacuum)
    tell(step, 1, 1)
    report.seconds[step] = round(time.perf_counter() - began, 3)
    report.table_bytes, report.database_bytes = _sizes(conn)
    handled = blueprint.handled()
    report.notable = _notable(blueprint, prefix, handled)
    report.world = _world_shape(blueprint, handled)
    report.total_seconds = round(time.perf_counter() - started, 3)
    return report


Stream = tuple[str, tuple[str, ...], Callable[[], Iterable[tuple[object, ...]]], Callable[[], int]]


def _streams(blueprint: Blueprint, prefix: str, copies: ScopeCopies | None) -> list[Stream]:
    """Per table in load order: its columns, its rows, and how many (known once the tables before
    it are generated). With ``copies`` (triggers off), the derived columns are appended and the
    customers come after the contracts they are party to; otherwise dependency order."""
    scale = blueprint.scale
    streams: list[Stream] = [
        ("insurer", COLUMNS["insurer"], blueprint.insurer_rows, lambda: len(blueprint.insurers)),
        ("agency", COLUMNS["agency"], blueprint.agency_rows, lambda: len(blueprint.agencies)),
        (
            "supervision",
            COLUMNS["supervision"],
            blueprint.supervision_rows,
            lambda: len(blueprint.supervision),
        ),
        (
            "entrustment",
            COLUMNS["entrustment"],
            blueprint.entrustment_rows,
            lambda: len(blueprint.entrustment),
        ),
    ]
    if copies is None:
        streams += [
            ("customer", COLUMNS["customer"], blueprint.customer_rows, lambda: scale.customers),
            ("contract", COLUMNS["contract"], blueprint.contract_rows, lambda: scale.contracts),
            (
                "contract_handler",
                COLUMNS["contract_handler"],
                blueprint.handler_rows,
                lambda: blueprint.handler_count,
            ),
        ]
    else:
        streams += [
            (
                "contract",
                COLUMNS["contract"] + ScopeCopies.CONTRACT_COLUMNS,
                lambda: copies.contract_rows(blueprint.contract_rows()),
                lambda: scale.contracts,
            ),
            (
                "contract_handler",
                COLUMNS["contract_handler"] + ScopeCopies.HANDLER_COLUMNS,
                lambda: copies.handler_rows(blueprint.handler_rows()),
                lambda: blueprint.handler_count,
            ),
            (
                "customer",
                COLUMNS["customer"] + ScopeCopies.CUSTOMER_COLUMNS,
                lambda: copies.customer_rows(blueprint.customer_rows()),
                lambda: scale.customers,
            ),
        ]
    streams += [
        ("notice", COLUMNS["notice"], blueprint.notice_rows, lambda: scale.notices),
        (
            "notice_receipt",
            COLUMNS["notice_receipt"],
            blueprint.receipt_rows,
            lambda: blueprint.receipt_count,
        ),
        (
            "principal",
            COLUMNS["principal"],
            lambda: blueprint.principal_rows(prefix),
            lambda: len(blueprint.seconded),
        ),
    ]
    return streams


def _silent(step: str, done: int, total: int) -> None:
    pass


# -- refusals ---------------------------------------------------------------------------------------


def _check_ready(conn: psycopg.Connection[Any]) -> str:
    """The stored role prefix, after checking the revision and the connecting role's privileges."""
    revision = None
    for table in (f"{VERSION_SCHEMA}.alembic_version", "public.alembic_version"):  # public: before the move
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if row and row[0]:
            found = conn.execute(f"SELECT version_num FROM {table}").fetchone()  # type: ignore[arg-type]
            revision = found[0] if found else None
            break
    if revision is None:
        raise SeedError(
            "this database is not migrated: run 'agency-rls migrate' first (or 'agency-rls seed --migrate')"
        )
    head = head_revision()
    if revision != head:
        raise SeedError(
            f"this database is at revision {revision}, not head ({head}): run 'agency-rls migrate' first"
        )
    try:
        prefix = stored_prefix(conn)
        require_provision(conn, ManagementRoles(prefix))
    except (ProvisionError, MissingPrivilege) as error:
        raise SeedError(f"seed loads every table and provisions: {error}") from None
    return prefix


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def _lock_and_check_empty(conn: psycopg.Connection[Any]) -> None:
    """Keep other writers out until the commit (readers may read), then refuse tables holding rows."""
    tables = sql.SQL(", ").join(sql.Identifier("public", table) for table in ALL_TABLES)
    conn.execute("SET LOCAL lock_timeout = '30s'")
    try:
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(tables))
    except psycopg.errors.LockNotAvailable:
        raise SeedError(
            "another session holds a lock on the tables (see pg_stat_activity); nothing changed, try again"
        ) from None
    conn.execute("SET LOCAL lock_timeout = 0")
    row = conn.execute(
        sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                sql.SQL("EXISTS (SELECT FROM {})").format(sql.Identifier("public", table))
                for table in ALL_TABLES
            )
        )
    ).fetchone()
    assert row is not None
    holding = [table for table, found in zip(ALL_TABLES, row, strict=True) if found]
    if holding:
        named = ", ".join(holding[:3]) + (f" and {len(holding) - 3} more" if len(holding) > 3 else "")
        raise SeedError(
            f"this database already holds rows ({named}): seed loads only into the empty tables of a freshly "
            "migrated database; nothing changed"
        )


# -- loading ----------------------------------------------------------------------------------------


@dataclass
class _Copier:
    """COPY rows into a table in statements of ``chunk_rows``; staged through a temporary table if asked."""

    conn: psycopg.Connection[Any]
    staged: bool
    chunk_rows: int
    progress: Progress

    def load(self, table: str, names: tuple[str, ...], rows: Iterable[tuple[object, ...]], total: int) -> int:
        columns = sql.SQL(", ").join(sql.Identifier(column) for column in names)
        target = sql.Identifier("public", table)
        stage = sql.Identifier("pg_temp", f"seed_{table}")
        if self.staged:
            self.conn.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    sql.Identifier(f"seed_{table}"), columns, target
                )
            )
        copy_into = sql.SQL("COPY {} ({}) FROM STDIN").format(stage if self.staged else target, columns)
        move = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(target, columns, columns, stage)
        empty = sql.SQL("TRUNCATE {}").format(stage)
        tell, chunk = self.progress, self.chunk_rows
        tell(table, 0, total)
        iterator = iter(rows)
        done = 0
        with self.conn.cursor() as cur:
            while True:
                first = next(iterator, None)
                if first is None:
                    break
                written = 1
                with cur.copy(copy_into, writer=QueuedLibpqWriter(cur)) as copy:
                    write = copy.write_row
                    write(first)
                    for row in islice(iterator, chunk - 1):
                        write(row)
                        written += 1
                        if written % _PROGRESS_EVERY == 0:
                            tell(table, done + written, total)
                if self.staged:
                    cur.execute(move)
                    cur.execute(empty)
                done += written
                tell(table, done, total)
        if done != total:
            raise SeedError(f"internal error: {done} {table} rows generated, {total} expected")
        return done


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))).fetchone()
    assert row is not None
    return int(row[0])


def _vacuum_analyze(conn: psycopg.Connection[Any], *, vacuum: bool) -> None:
    """VACUUM (ANALYZE) the tables (visibility map, hint bits, planner statistics), or only ANALYZE them."""
    tables = sql.SQL(", ").join(sql.Identifier("public", table) for table in ALL_TABLES)
    if vacuum:
        conn.execute("SET maintenance_work_mem = '1GB'")  # one pass over the indexes for the dead rows
        try:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(tables))
        finally:
            conn.execute("RESET maintenance_work_mem")
    else:
        conn.execute(sql.SQL("ANALYZE {}").format(tables))


def _sizes(conn: psycopg.Connection[Any]) -> tuple[dict[str, int], int]:
    rows = conn.execute(
        "SELECT t.name, pg_catalog.pg_total_relation_size(format('public.%%I', t.name)::regclass)"
        " FROM unnest(%s::text[]) AS t(name)",
        (list(ALL_TABLES),),
    ).fetchall()
    database = conn.execute("SELECT pg_catalog.pg_database_size(current_database())").fetchone()
    assert database is not None
    return {str(name): int(size) for name, size in rows}, int(database[0])


# -- the report -------------------------------------------------------------------------------------


def _notable(blueprint: Blueprint, prefix: str, handled: tuple[array, array]) -> dict[str, dict[str, Any]]:
    """Agencies by contracts handled now (smallest with any, median, largest), a working agency,
    the incident's working agency, a seconded principal, an operator and a gateway insurer."""
    now, ever = handled
    agencies = blueprint.agencies

    def agency(label: str, agency_id: int, **extra: Any) -> tuple[str, dict[str, Any]]:
        a = agencies[agency_id - 1]
        return label, {
            "role": default_principal_role(prefix, "agency", a.code),
            "agency_id": a.id,
            "code": a.code,
            "contracts_now": now[a.id],
            "contracts_ever": ever[a.id],
            **extra,
        }

    by_size = sorted((a.id for a in agencies if now[a.id] > 0), key=lambda i: (now[i], i)) or [1]
    largest_supervisor = max(blueprint.working_of, key=lambda s: (now[s], -s))
    working = blueprint.working_of[largest_supervisor]
    notable = dict(
        [
            agency("largest_agency", by_size[-1]),
            agency("median_agency", by_size[len(by_size) // 2]),
            agency("smallest_agency", by_size[0]),
            agency("supervising_agency", largest_supervisor, working_agencies=len(working)),
        ]
    )
    if working:
        busiest = max(working, key=lambda w: (now[w], -w))
        notable.update([agency("working_agency", busiest, supervising_agency_id=largest_supervisor)])
        lacking = working[0]  # lacks the non-life entrustment its supervisor holds (synthetic._entrustments)
        missing = sorted(agencies[largest_supervisor - 1].entrusted - agencies[lacking - 1].entrusted)
        notable.update(
            [
                agency(
                    "incident_working_agency",
                    lacking,
                    supervising_agency_id=largest_supervisor,
                    not_entrusted_by=[blueprint.insurers[i - 1].code for i in missing],
                )
            ]
        )
    unentrusted = [a for a in agencies if a.handles_unentrusted is not None]
    if unentrusted:
        a = max(unentrusted, key=lambda a: (now[a.id], -a.id))
        notable.update(
            [
                agency(
                    "unentrusted_handler",
                    a.id,
                    handles_for_insurer=blueprint.insurers[a.handles_unentrusted - 1].code,  # type: ignore[operator]
                    entrustment=a.unentrusted_why,
                )
            ]
        )
    if blueprint.seconded:
        name, agency_id, insurer_id = blueprint.seconded[0]
        notable["seconded_principal"] = {
            "role": prefix + name,
            "agency_id": agency_id,
            "insurer_id": insurer_id,
            "insurer": blueprint.insurers[insurer_id - 1].code,
        }
    for label, insurer in (
        ("operator_insurer", blueprint.insurers[0]),
        ("gateway_insurer", blueprint.insurers[2]),
    ):
        notable[label] = {
            "role": default_principal_role(prefix, "insurer", insurer.code),
            "insurer_id": insurer.id,
            "code": insurer.code,
            "contracts": sum(1 for i in blueprint.contract_insurer[1:] if i == insurer.id),
        }
    return notable


def _world_shape(blueprint: Blueprint, handled: tuple[array, array]) -> dict[str, Any]:
    stats = dict(blueprint.stats)
    contracts = max(1, blueprint.scale.contracts)
    sizes = sorted(handled[0][1:])
    working = sorted(len(ws) for ws in blueprint.working_of.values())
    return {
        **stats,
        "gateway_share": round(stats.get("gateway", 0) / contracts, 4),
        "largest_agency_share_now": round(sizes[-1] / contracts, 4) if sizes else 0,
        "median_agency_contracts_now": statistics.median(sizes) if sizes else 0,
        "supervising_agencies": len(blueprint.working_of),
        "working_agencies": len(blueprint.supervisor_of),
        "working_per_supervisor": [working[0], working[-1]] if working else [],
        "unentrusted_handlers": {
            why: sum(1 for a in blueprint.agencies if a.unentrusted_why == why)
            for why in ("ended", "future", "none")
        },
        "seconded_principals": len(blueprint.seconded),
    }

"""``agency-rls bench-writes``: what keeping the scope copies exact costs a write.

Revisions 0006/0007 copy each contract's handler links onto the contract row and onto its
customers' rows (``rls_policies/sql/scope_columns.sql``), and statement-level AFTER triggers on
``contract_handler``, ``contract`` and ``customer`` refresh those copies in the writing transaction.
Issue 9's target: a write that keeps the copies exact costs at most 1.2x the plain write, for one
row and for a 10,000-row batch. This module measures exactly that difference:

- WITH: the write as the application issues it, every trigger on;
- PLAIN: the same statement in a transaction that first ran ``ALTER TABLE ... DISABLE TRIGGER`` for
  the scope-copy triggers only (``SCOPE_TRIGGERS``). Keys and the derived-column trigger
  (``contract_handler.insurer_id``) stay on in both, so only the copies' cost differs.

Every sample is one transaction that is ROLLED BACK: the database never changes (new rows get
explicit ids past the largest, so no identity sequence moves either); what remains is dead row
versions in the tables and their indexes, which autovacuum removes (after a long run on a benchmark
database, ``VACUUM (ANALYZE)`` the three tables before timing reads). The WITH side runs the same
``ALTER TABLE`` statements, disabling and re-enabling the triggers, so both sides take the same
locks and pay the same catalog change; the three tables are then read once (``LIMIT 0``) so that the
rebuilt relation caches are not billed to the timed write.

How time is measured (server-side): one simple-query round trip ``SELECT clock_timestamp(); <the
write's statements>; SELECT clock_timestamp()`` inside the transaction; the difference covers
planning and executing the write, its key checks, the derived-column trigger and the statement's
AFTER triggers (they fire before the statement returns), not the network, the ``ALTER TABLE``, the
exactness check or the rollback. WITH and PLAIN alternate in random order within every round,
after untimed warm-up rounds; p50 and p95 are nearest-rank.

Exactness: after every WITH write (and before the rollback) the copies of the written contracts
and of every customer party to them (old and new policyholders included) are recomputed from
``contract_handler`` by a query written independently of the refresh functions, and compared. A
difference is a finding (the run's ``ok`` is false). After every PLAIN write the same check must
find stale copies; it proves the triggers really were off (and that the check can see staleness).

Which rows: the agency with the most current handler links (ties: lowest id), and a sample of the
contracts it handles now, drawn with ``random.Random(seed)``: the same database and seed give the
same rows. The single-row write uses the first of them, the batch the first ``batch_rows``.

Who may run it: ``ALTER TABLE`` needs the tables' owner: a superuser, or the DBA who is a member of
``<prefix>rls_owner`` (managed PostgreSQL). Anyone else gets a one-line ``WriteCostError``.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from agency_rls.workload.bench import percentile
from agency_rls.workload.xact_stats import rows_updated

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "KINDS",
    "SCOPE_TRIGGERS",
    "TARGET",
    "InexactCopies",
    "KindResult",
    "Picked",
    "WriteCostError",
    "WriteCostReport",
    "format_json",
    "inexact_copies",
    "markdown_from_json",
    "measure_write_cost",
    "pick_rows",
    "render_text",
]

#: Issue 9: a write keeping the copies exact costs at most this multiple of the plain write.
TARGET = 1.2
DEFAULT_BATCH_ROWS = 10_000
DEFAULT_ROUNDS = 20
DEFAULT_BATCH_ROUNDS = 5
DEFAULT_WARMUP = 2
#: A lock the ALTER TABLE waits for longer than this fails the run (someone else writes the tables).
LOCK_TIMEOUT = "10s"
#: Tries of one sample whose ALTER TABLE timed out or deadlocked with another session's DDL.
LOCK_ATTEMPTS = 3
#: Prefix of the policy numbers of contracts the bench inserts (and rolls back).
POLICY_PREFIX = "WRITE-COST-"

#: The statement-level triggers of scope_columns.sql that keep the copies exact, per table.
SCOPE_TRIGGERS: dict[str, tuple[str, ...]] = {
    "contract_handler": (
        "contract_scope_after_insert",
        "contract_scope_after_update",
        "contract_scope_after_delete",
        "contract_scope_after_truncate",
    ),
    "contract": (
        "customer_scope_after_insert",
        "customer_scope_after_update",
        "customer_scope_after_delete",
        "customer_scope_after_truncate",
    ),
    "customer": ("customer_scope_after_insert", "customer_scope_after_update"),
}

SIDES = ("with", "plain")
SIZES = ("single", "batch")


class WriteCostError(RuntimeError):
    """The measurement cannot run; the message is the one-line reason. Nothing was changed."""


# -- which rows -----------------------------------------------------------------------------------------


@dataclass
class Picked:
    """The rows every write kind works on, aligned by position (position 0 is the single-row write)."""

    agency_id: int  # the agency with the most current handler links
    joint_agency_id: int  # an agency handling none of the contracts: the new joint handler
    contract_ids: list[int]
    handler_ids: list[int]  # the agency's current handler row on each contract
    insurer_ids: list[int]
    policyholder_ids: list[int | None]
    insured_ids: list[int | None]
    new_policyholder_ids: list[int]  # another existing customer for each contract
    next_contract_id: int  # new contracts get ids above these (no identity sequence moves)
    next_handler_id: int

    def size(self, size: str) -> int:
        return 1 if size == "single" else len(self.contract_ids)

    def contracts(self, n: int) -> list[int]:
        """The contracts a write of ``n`` rows touches, and those a contract insert would create."""
        return self.contract_ids[:n] + [self.next_contract_id + i for i in range(1, n + 1)]

    def customers(self, n: int) -> list[int]:
        """Every customer whose copy a write of ``n`` rows may change: parties, old and new."""
        found = {
            c
            for column in (self.policyholder_ids, self.insured_ids, self.new_policyholder_ids)
            for c in column[:n]
            if c is not None
        }
        return sorted(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency_id": self.agency_id,
            "joint_agency_id": self.joint_agency_id,
            "batch_rows": len(self.contract_ids),
            "single_contract_id": self.contract_ids[0],
        }


def _current(alias: str) -> str:
    return f"{alias}.valid_from <= now() AND ({alias}.valid_to IS NULL OR now() < {alias}.valid_to)"


def pick_rows(conn: psycopg.Connection[Any], *, batch_rows: int, seed: int) -> Picked:
    """Choose the rows deterministically (same database and seed, same rows); read-only."""
    top = conn.execute(
        f"""
        SELECT h.agency_id, count(*) AS links
          FROM public.contract_handler AS h
         WHERE {_current("h")}
         GROUP BY h.agency_id
         ORDER BY links DESC, h.agency_id
         LIMIT 1"""
    ).fetchone()
    if top is None:
        raise WriteCostError("no contract has a current handler: seed the database first (agency-rls seed)")
    agency_id = int(top[0])
    rows = conn.execute(
        f"""
        SELECT h.contract_id, min(h.id) AS handler_id
          FROM public.contract_handler AS h
         WHERE h.agency_id = %s AND {_current("h")}
         GROUP BY h.contract_id
         ORDER BY h.contract_id""",
        (agency_id,),
    ).fetchall()
    rng = random.Random(seed)
    chosen = rng.sample(rows, k=min(batch_rows, len(rows)))
    contract_ids = [int(r[0]) for r in chosen]
    parties = {
        int(r[0]): (int(r[1]), r[2], r[3])
        for r in conn.execute(
            "SELECT c.id, c.insurer_id, c.policyholder_id, c.insured_id FROM public.contract AS c"
            " WHERE c.id = ANY (%s)",
            (contract_ids,),
        )
    }
    joint = conn.execute(
        """
        SELECT a.id
          FROM public.agency AS a
         WHERE a.id <> %s
           AND NOT EXISTS (SELECT FROM public.contract_handler AS h
                            WHERE h.agency_id = a.id AND h.contract_id = ANY (%s))
         ORDER BY a.id
         LIMIT 1""",
        (agency_id, contract_ids),
    ).fetchone()
    if joint is None:
        joint = conn.execute("SELECT min(id) FROM public.agency WHERE id <> %s", (agency_id,)).fetchone()
    if joint is None or joint[0] is None:
        raise WriteCostError("the database has one agency: a joint handler needs another one")
    bounds = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM public.contract),"
        " (SELECT coalesce(max(id), 0) FROM public.contract_handler),"
        " (SELECT min(id) FROM public.customer), (SELECT max(id) FROM public.customer)"
    ).fetchone()
    assert bounds is not None
    next_contract_id, next_handler_id, low, high = bounds
    old = [parties[c][1] for c in contract_ids]
    return Picked(
        agency_id=agency_id,
        joint_agency_id=int(joint[0]),
        contract_ids=contract_ids,
        handler_ids=[int(r[1]) for r in chosen],
        insurer_ids=[parties[c][0] for c in contract_ids],
        policyholder_ids=old,
        insured_ids=[parties[c][2] for c in contract_ids],
        new_policyholder_ids=_other_customers(conn, rng, low, high, old),
        next_contract_id=int(next_contract_id),
        next_handler_id=int(next_handler_id),
    )


def _other_customers(
    conn: psycopg.Connection[Any],
    rng: random.Random,
    low: int | None,
    high: int | None,
    old: Sequence[int | None],
) -> list[int]:
    """For each contract an existing customer other than its policyholder, drawn at random: the first
    customer id at or above a random point of the id range (one query, however sparse the ids)."""
    if low is None or high is None or low == high:
        raise WriteCostError("the database needs at least two customers to move a policyholder")
    points = [rng.randint(low, high) for _ in range(len(old) + 1)]
    existing = [
        int(r[0])
        for r in conn.execute(
            "SELECT (SELECT cu.id FROM public.customer AS cu WHERE cu.id >= p.id ORDER BY cu.id LIMIT 1)"
            " FROM unnest(%s::bigint[]) WITH ORDINALITY AS p (id, n) ORDER BY p.n",
            (points,),
        )
    ]
    chosen: list[int] = []
    for i, previous in enumerate(old):
        j = i
        while existing[j % len(existing)] == previous:
            j += 1
            if j - i > len(existing):  # every draw hit the one policyholder: take the next customer
                row = conn.execute(
                    "SELECT id FROM public.customer WHERE id <> %s ORDER BY id LIMIT 1", (previous,)
                ).fetchone()
                assert row is not None
                existing[j % len(existing)] = int(row[0])
        chosen.append(existing[j % len(existing)])
    return chosen


# -- the write kinds ------------------------------------------------------------------------------------


def _ids(values: Sequence[int | None]) -> sql.Composable:
    return sql.SQL("{}::bigint[]").format(
        sql.Literal("{" + ",".join("NULL" if v is None else str(v) for v in values) + "}")
    )


def _handler_insert(p: Picked, n: int) -> list[sql.Composable]:
    if n == 1:
        return [
            sql.SQL(
                "INSERT INTO public.contract_handler (id, contract_id, agency_id, role, valid_from)\n"
                "VALUES ({}, {}, {}, 'joint', now())"
            ).format(p.next_handler_id + 1, p.contract_ids[0], p.joint_agency_id)
        ]
    return [
        sql.SQL(
            "INSERT INTO public.contract_handler (id, contract_id, agency_id, role, valid_from)\n"
            "SELECT {} + row_number() OVER (ORDER BY c.id), c.id, {}, 'joint', now()\n"
            "  FROM public.contract AS c\n"
            " WHERE c.id = ANY ({})"
        ).format(p.next_handler_id, p.joint_agency_id, _ids(p.contract_ids[:n]))
    ]


def _handler_end(p: Picked, n: int) -> list[sql.Composable]:
    where = (
        sql.SQL("id = {}").format(p.handler_ids[0])
        if n == 1
        else sql.SQL("id = ANY ({})").format(_ids(p.handler_ids[:n]))
    )
    return [sql.SQL("UPDATE public.contract_handler SET valid_to = now() WHERE {}").format(where)]


def _handler_delete(p: Picked, n: int) -> list[sql.Composable]:
    where = (
        sql.SQL("id = {}").format(p.handler_ids[0])
        if n == 1
        else sql.SQL("id = ANY ({})").format(_ids(p.handler_ids[:n]))
    )
    return [sql.SQL("DELETE FROM public.contract_handler WHERE {}").format(where)]


def _contract_insert(p: Picked, n: int) -> list[sql.Composable]:
    columns = sql.SQL(
        "INSERT INTO public.contract (id, insurer_id, policy_number, policyholder_id, insured_id, starts_on, source)\n"
    )
    handler = sql.SQL("INSERT INTO public.contract_handler (id, contract_id, agency_id, role, valid_from)\n")
    if n == 1:
        new_id = p.next_contract_id + 1
        return [
            columns
            + sql.SQL("VALUES ({}, {}, {}, {}, {}, current_date, 'direct')").format(
                new_id, p.insurer_ids[0], POLICY_PREFIX + str(new_id), p.policyholder_ids[0], p.insured_ids[0]
            ),
            handler
            + sql.SQL("VALUES ({}, {}, {}, 'primary', now())").format(
                p.next_handler_id + 1, new_id, p.agency_id
            ),
        ]
    return [
        columns
        + sql.SQL(
            "SELECT {base} + t.n, t.insurer_id, {prefix} || ({base} + t.n), t.policyholder_id, t.insured_id,\n"
            "       current_date, 'direct'\n"
            "  FROM unnest({insurers}, {holders}, {insured}) WITH ORDINALITY\n"
            "       AS t (insurer_id, policyholder_id, insured_id, n)"
        ).format(
            base=p.next_contract_id,
            prefix=POLICY_PREFIX,
            insurers=_ids(p.insurer_ids[:n]),
            holders=_ids(p.policyholder_ids[:n]),
            insured=_ids(p.insured_ids[:n]),
        ),
        handler
        + sql.SQL(
            "SELECT {} + g.n, {} + g.n, {}, 'primary', now() FROM generate_series(1, {}) AS g (n)"
        ).format(p.next_handler_id, p.next_contract_id, p.agency_id, n),
    ]


def _contract_policyholder(p: Picked, n: int) -> list[sql.Composable]:
    if n == 1:
        return [
            sql.SQL("UPDATE public.contract SET policyholder_id = {} WHERE id = {}").format(
                p.new_policyholder_ids[0], p.contract_ids[0]
            )
        ]
    return [
        sql.SQL(
            "UPDATE public.contract AS c\n"
            "   SET policyholder_id = t.policyholder_id\n"
            "  FROM unnest({}, {}) AS t (id, policyholder_id)\n"
            " WHERE c.id = t.id"
        ).format(_ids(p.contract_ids[:n]), _ids(p.new_policyholder_ids[:n]))
    ]


@dataclass(frozen=True)
class WriteKind:
    """One kind of write: what it does (for the table) and its statements for n rows."""

    name: str
    description: str
    statements: Callable[[Picked, int], list[sql.Composable]]


KINDS: tuple[WriteKind, ...] = (
    WriteKind(
        "handler_insert",
        "a new joint handler on an existing contract (INSERT contract_handler)",
        _handler_insert,
    ),
    WriteKind("handler_end", "end a handler link (UPDATE contract_handler SET valid_to)", _handler_end),
    WriteKind("handler_delete", "remove a handler link (DELETE FROM contract_handler)", _handler_delete),
    WriteKind(
        "contract_insert",
        "a new contract with its handler (INSERT contract, INSERT contract_handler)",
        _contract_insert,
    ),
    WriteKind(
        "contract_policyholder", "change a contract's policyholder (UPDATE contract)", _contract_policyholder
    ),
)


# -- the exactness check --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InexactCopies:
    """How many of the checked rows hold a copy that differs from the one recomputed from the links."""

    contracts: int
    customers: int

    @property
    def total(self) -> int:
        return self.contracts + self.customers


#: The copies recomputed from contract_handler, written apart from the refresh functions on purpose
#: (it reads no copy, so a stale contract copy cannot make a customer copy look right).
_CONTRACT_CHECK = """
SELECT count(*)
  FROM public.contract AS c
 CROSS JOIN LATERAL (
       SELECT coalesce(array_agg(h.agency_id ORDER BY h.id), '{}') AS agency_ids,
              coalesce(array_agg(CASE WHEN h.valid_to <= h.valid_from THEN 'empty'::tstzrange
                                      ELSE tstzrange(h.valid_from, h.valid_to, '[)') END ORDER BY h.id),
                       '{}') AS windows
         FROM public.contract_handler AS h
        WHERE h.contract_id = c.id) AS fresh
 WHERE c.id = ANY (%s)
   AND (c.handler_agency_ids, c.handler_windows) IS DISTINCT FROM (fresh.agency_ids, fresh.windows)"""

_CUSTOMER_CHECK = """
SELECT count(*)
  FROM public.customer AS cu
 CROSS JOIN LATERAL (
       SELECT coalesce(array_agg(h.agency_id ORDER BY c.id, h.id) FILTER (WHERE h.id IS NOT NULL), '{}')
                  AS agency_ids,
              coalesce(array_agg(c.insurer_id ORDER BY c.id, h.id) FILTER (WHERE h.id IS NOT NULL), '{}')
                  AS insurer_ids,
              coalesce(array_agg(CASE WHEN h.valid_to <= h.valid_from THEN 'empty'::tstzrange
                                      ELSE tstzrange(h.valid_from, h.valid_to, '[)') END ORDER BY c.id, h.id)
                           FILTER (WHERE h.id IS NOT NULL), '{}') AS windows,
              coalesce(array_agg(DISTINCT c.insurer_id), '{}') AS party_insurer_ids
         FROM public.contract AS c
         LEFT JOIN public.contract_handler AS h ON h.contract_id = c.id
        WHERE c.policyholder_id = cu.id OR c.insured_id = cu.id) AS fresh
 WHERE cu.id = ANY (%s)
   AND (cu.handler_agency_ids, cu.handler_insurer_ids, cu.handler_windows, cu.party_insurer_ids)
       IS DISTINCT FROM (fresh.agency_ids, fresh.insurer_ids, fresh.windows, fresh.party_insurer_ids)"""


def inexact_copies(
    conn: psycopg.Connection[Any], contract_ids: Iterable[int], customer_ids: Iterable[int]
) -> InexactCopies:
    """Count the given contracts and customers whose copies differ from the handler links (read-only)."""
    contracts = conn.execute(_CONTRACT_CHECK, (list(contract_ids),)).fetchone()
    customers = conn.execute(_CUSTOMER_CHECK, (list(customer_ids),)).fetchone()
    assert contracts is not None and customers is not None
    return InexactCopies(contracts=int(contracts[0]), customers=int(customers[0]))


# -- measuring ------------------------------------------------------------------------------------------


@dataclass
class KindResult:
    """One write kind at one size: WITH and PLAIN statement times (ms), and what the check found."""

    kind: str
    size: str
    rows: int
    description: str
    samples: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    #: Rows of contract / customer the WITH write updated beyond the PLAIN write: the copies written.
    copies_written: dict[str, int] = field(default_factory=dict)
    #: Largest number of inexact copies found after a WITH write (0: exact every time).
    inexact_after_with: int = 0
    #: Smallest number of stale copies found after a PLAIN write (more than 0: the triggers were off).
    stale_after_plain: int | None = None

    def p50(self, side: str) -> float | None:
        return statistics.median(self.samples[side]) if self.samples[side] else None

    def p95(self, side: str) -> float | None:
        return percentile(self.samples[side], 0.95)

    def ratio(self, which: Callable[[str], float | None]) -> float | None:
        with_, plain = which("with"), which("plain")
        return None if with_ is None or plain is None or plain <= 0 else with_ / plain

    @property
    def meets_target(self) -> bool | None:
        ratio = self.ratio(self.p50)
        return None if ratio is None else ratio <= TARGET

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "size": self.size,
            "rows": self.rows,
            "description": self.description,
            **{
                side: {
                    "p50_ms": _round(self.p50(side)),
                    "p95_ms": _round(self.p95(side)),
                    "samples": len(self.samples[side]),
                }
                for side in SIDES
            },
            "ratio": {"p50": _round(self.ratio(self.p50), 3), "p95": _round(self.ratio(self.p95), 3)},
            "meets_target": self.meets_target,
            "copies_written": self.copies_written,
            "inexact_after_with": self.inexact_after_with,
            "stale_after_plain": self.stale_after_plain,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


TIMING = (
    "server-side: clock_timestamp() read right before and right after the write's statements in one"
    " simple-query round trip inside the transaction (planning, execution, key checks, the derived-column"
    " trigger and the statement's AFTER triggers; not the network, the ALTER TABLE, the check or the rollback)"
)


@dataclass
class WriteCostReport:
    """Everything one run measured, and the facts needed to read it."""

    database: str
    server_version: str
    machine: str
    started_at: str
    rounds: int
    batch_rounds: int
    warmup: int
    seed: int
    picked: dict[str, Any]
    world: dict[str, int]
    #: Other sessions running a statement when the run started and ended (a busy server skews times).
    busy_sessions: list[int] = field(default_factory=list)
    results: list[KindResult] = field(default_factory=list)
    timing: str = TIMING
    target: float = TARGET

    @property
    def ok(self) -> bool:
        """True when every WITH write left the copies exact (the ratios do not decide it)."""
        return all(result.inexact_after_with == 0 for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "server_version": self.server_version,
            "machine": self.machine,
            "started_at": self.started_at,
            "rounds": self.rounds,
            "batch_rounds": self.batch_rounds,
            "warmup": self.warmup,
            "seed": self.seed,
            "picked": self.picked,
            "world": self.world,
            "busy_sessions": self.busy_sessions,
            "timing": self.timing,
            "target": self.target,
            "ok": self.ok,
            "results": [result.as_dict() for result in self.results],
        }


def _check_can_run(conn: psycopg.Connection[Any]) -> None:
    """One line instead of a failure halfway: the triggers exist and are on, and we may ALTER the tables."""
    rows = conn.execute(
        """
        SELECT c.relname, t.tgname, t.tgenabled
          FROM pg_catalog.pg_trigger AS t
          JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s) AND NOT t.tgisinternal""",
        (list(SCOPE_TRIGGERS),),
    ).fetchall()
    present = {(table, name): enabled for table, name, enabled in rows}
    missing = [f"{t}.{n}" for t, names in SCOPE_TRIGGERS.items() for n in names if (t, n) not in present]
    if missing:
        raise WriteCostError(
            f"the scope-copy triggers are missing ({', '.join(missing)}): migrate the database to head first"
        )
    disabled = [f"{t}.{n}" for t, names in SCOPE_TRIGGERS.items() for n in names if present[(t, n)] == "D"]
    if disabled:
        raise WriteCostError(
            f"scope-copy triggers are disabled in the database ({', '.join(disabled)}): the copies are not"
            " being kept; enable them (and repair the copies with agency-rls provision) before measuring"
        )
    not_owner = conn.execute(
        """
        SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner)
          FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s)
           AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')
         ORDER BY 1""",
        (list(SCOPE_TRIGGERS),),
    ).fetchall()
    if not_owner:
        user = conn.execute("SELECT current_user").fetchone()
        raise WriteCostError(
            f"ALTER TABLE ... DISABLE TRIGGER needs the owner of the tables: {user[0] if user else '?'} is neither"
            f" a superuser nor a member of {not_owner[0][1]} (owner of public.{not_owner[0][0]}); connect as"
            " the DBA who installed agency-rls"
        )


def _trigger_switch(side: str) -> sql.Composable:
    """PLAIN: the scope triggers off. WITH: off and on again, so both sides change the same catalog rows."""
    statements: list[sql.Composable] = [
        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT))
    ]
    actions = ("DISABLE",) if side == "plain" else ("DISABLE", "ENABLE")
    for action in actions:
        for table, names in SCOPE_TRIGGERS.items():
            statements.append(
                sql.SQL("ALTER TABLE {} {}").format(
                    sql.Identifier("public", table),
                    sql.SQL(", ").join(
                        sql.SQL(action + " TRIGGER {}").format(sql.Identifier(n)) for n in names
                    ),
                )
            )
    for table in SCOPE_TRIGGERS:  # rebuild the relation caches the ALTER invalidated, untimed
        statements.append(sql.SQL("SELECT FROM {} LIMIT 0").format(sql.Identifier("public", table)))
    return sql.SQL(";\n").join(statements)


@dataclass
class _Sample:
    ms: float
    inexact: InexactCopies
    updates: dict[str, int]


def _run_once(conn: psycopg.Connection[Any], kind: WriteKind, picked: Picked, n: int, side: str) -> _Sample:
    """One rolled-back transaction: switch the triggers, time the write, check the copies."""
    write = sql.SQL(";\n").join(kind.statements(picked, n))
    timed = sql.SQL("SELECT clock_timestamp();\n{};\nSELECT clock_timestamp()").format(write)
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(_trigger_switch(side))
                before = rows_updated(conn, ("contract", "customer"))
                cur = conn.execute(timed)
                start = cur.fetchone()
                while cur.nextset():
                    pass
                end = cur.fetchone()
                assert start is not None and end is not None
                inexact = inexact_copies(conn, picked.contracts(n), picked.customers(n))
                after = rows_updated(conn, ("contract", "customer"))
                updates = {table: after.get(table, 0) - before.get(table, 0) for table in after}
            break
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as error:
            if attempt == LOCK_ATTEMPTS:
                raise WriteCostError(
                    f"another session keeps locking the tables ({' '.join(str(error).split()[:8])} ...);"
                    " nothing changed"
                ) from None
    return _Sample(ms=(end[0] - start[0]) / dt.timedelta(milliseconds=1), inexact=inexact, updates=updates)


def _world(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {
        str(r[0]): int(r[1])
        for r in conn.execute(
            "SELECT relname, greatest(reltuples, 0)::bigint FROM pg_catalog.pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            " AND relname IN ('agency', 'contract', 'contract_handler', 'customer') ORDER BY relname"
        )
    }


def _busy(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE state = 'active' AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'"
    ).fetchone()
    return int(row[0]) if row else 0


def measure_write_cost(
    conn: psycopg.Connection[Any],
    *,
    rounds: int = DEFAULT_ROUNDS,
    batch_rounds: int = DEFAULT_BATCH_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    seed: int = 1,
    kinds: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> WriteCostReport:
    """Measure every write kind WITH the scope-copy triggers and PLAIN, single-row and batch.

    ``conn`` must be in autocommit (each sample is its own transaction, rolled back). ``rounds``
    timed samples per side for single-row writes, ``batch_rounds`` for batches, each after
    ``warmup`` untimed rounds.
    """
    if rounds < 1 or batch_rounds < 1 or warmup < 0 or batch_rows < 2:
        raise WriteCostError(
            "rounds and batch rounds must be at least 1, warm-up at least 0, batch rows at least 2"
        )
    if not conn.autocommit:
        raise WriteCostError(
            "the connection must be in autocommit: every sample is its own rolled-back transaction"
        )
    chosen = list(KINDS)
    if kinds:
        unknown = sorted(set(kinds) - {k.name for k in KINDS})
        if unknown:
            raise WriteCostError(
                f"unknown write kind {', '.join(unknown)}: choose from {', '.join(k.name for k in KINDS)}"
            )
        chosen = [k for k in KINDS if k.name in kinds]
    _check_can_run(conn)
    say = progress or (lambda message: None)
    picked = pick_rows(conn, batch_rows=batch_rows, seed=seed)
    info = conn.info
    report = WriteCostReport(
        database=info.dbname,
        server_version=str(conn.execute("SHOW server_version").fetchone()[0]),  # type: ignore[index]
        machine=f"{platform.system()} {platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()},"
        f" psycopg {psycopg.__version__}",
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        rounds=rounds,
        batch_rounds=batch_rounds,
        warmup=warmup,
        seed=seed,
        picked=picked.as_dict(),
        world=_world(conn),
        busy_sessions=[_busy(conn)],
    )
    rng = random.Random(seed)
    for size in SIZES:
        n = picked.size(size)
        results = {k.name: KindResult(k.name, size, n, k.description) for k in chosen}
        timed_rounds = rounds if size == "single" else batch_rounds
        for number in range(warmup + timed_rounds):
            warm = number < warmup
            say(
                f"{size} {'warm-up' if warm else 'round'} {number + 1 - (0 if warm else warmup)}"
                f"/{warmup if warm else timed_rounds}"
            )
            order = list(chosen)
            rng.shuffle(order)
            for kind in order:
                sides = list(SIDES)
                rng.shuffle(sides)
                outcome: dict[str, _Sample] = {side: _run_once(conn, kind, picked, n, side) for side in sides}
                result = results[kind.name]
                result.inexact_after_with = max(result.inexact_after_with, outcome["with"].inexact.total)
                stale = outcome["plain"].inexact.total
                result.stale_after_plain = (
                    stale if result.stale_after_plain is None else min(result.stale_after_plain, stale)
                )
                result.copies_written = {
                    table: outcome["with"].updates.get(table, 0) - outcome["plain"].updates.get(table, 0)
                    for table in ("contract", "customer")
                }
                if not warm:
                    for side in SIDES:
                        result.samples[side].append(outcome[side].ms)
        report.results.extend(results.values())
    report.busy_sessions.append(_busy(conn))
    return report


def _cpus() -> int | str:
    import os

    return os.cpu_count() or "?"


# -- output ---------------------------------------------------------------------------------------------


def format_json(report: WriteCostReport) -> str:
    """The report as JSON (CI, and the Markdown table later without the database)."""
    return json.dumps(report.as_dict(), indent=2)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _x(value: float | None) -> str:
    if value is None:
        return "—"
    return f"**{value:.2f}**" if value > TARGET else f"{value:.2f}"


def markdown_from_json(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md table, from ``format_json``'s output (a saved run renders without the database)."""
    picked = data.get("picked", {})
    world = ", ".join(f"{name} {rows:,}" for name, rows in data.get("world", {}).items())
    lines = [
        f"PostgreSQL {data.get('server_version', '?')}; {data.get('machine', '?')}; world (reltuples): {world};"
        f" agency {picked.get('agency_id')} (most current handler links), joint agency"
        f" {picked.get('joint_agency_id')}, seed {data.get('seed')}; {data.get('rounds')} single-row and"
        f" {data.get('batch_rounds')} batch rounds after {data.get('warmup')} warm-up rounds; sessions running a"
        f" statement beside it (start, end): {', '.join(str(b) for b in data.get('busy_sessions', []))}.",
        "",
        f"Times in ms, {data.get('timing')}. Ratio = WITH / PLAIN; **bold** above {data.get('target')}."
        " Copies written = contract / customer rows the refresh updated. Exact = copies checked after every"
        " WITH write (stale after PLAIN: the check sees the triggers were off).",
        "",
        "| write | rows | WITH p50 | WITH p95 | PLAIN p50 | PLAIN p95 | ratio p50 | ratio p95 | copies written | exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in data.get("results", []):
        copies = row.get("copies_written", {})
        exact = (
            "yes"
            if row.get("inexact_after_with") == 0
            else f"**NO: {row.get('inexact_after_with')} inexact**"
        )
        lines.append(
            f"| {row['kind']} | {row['rows']:,} | {_ms(row['with']['p50_ms'])} | {_ms(row['with']['p95_ms'])}"
            f" | {_ms(row['plain']['p50_ms'])} | {_ms(row['plain']['p95_ms'])} | {_x(row['ratio']['p50'])}"
            f" | {_x(row['ratio']['p95'])} | {copies.get('contract', 0):,} / {copies.get('customer', 0):,}"
            f" | {exact} (stale after PLAIN: {row.get('stale_after_plain')}) |"
        )
    return "\n".join(lines) + "\n"


def render_text(report: WriteCostReport, console: Any) -> None:
    """Print the report on a rich ``Console``: header and one table."""
    from rich.table import Table

    picked = report.picked
    console.print(
        f"agency-rls bench-writes: database {report.database}, PostgreSQL {report.server_version}; {report.machine}",
        highlight=False,
    )
    console.print(
        f"agency {picked['agency_id']} (most current handler links), joint agency {picked['joint_agency_id']},"
        f" batch {picked['batch_rows']:,} rows, seed {report.seed}; {report.rounds} single-row and"
        f" {report.batch_rounds} batch rounds after {report.warmup} warm-up rounds",
        highlight=False,
    )
    console.print(f"times in ms, {report.timing}; target: WITH / PLAIN <= {TARGET}", highlight=False)
    table = Table()
    for column in (
        "write",
        "rows",
        "WITH p50",
        "WITH p95",
        "PLAIN p50",
        "PLAIN p95",
        "x p50",
        "x p95",
        "copies c/cu",
        "exact",
    ):
        table.add_column(column, justify="left" if column in ("write", "exact") else "right")
    for result in report.results:
        ratio50, ratio95 = result.ratio(result.p50), result.ratio(result.p95)
        table.add_row(
            result.kind,
            f"{result.rows:,}",
            _ms(result.p50("with")),
            _ms(result.p95("with")),
            _ms(result.p50("plain")),
            _ms(result.p95("plain")),
            "—" if ratio50 is None else f"{ratio50:.2f}x",
            "—" if ratio95 is None else f"{ratio95:.2f}x",
            f"{result.copies_written.get('contract', 0):,}/{result.copies_written.get('customer', 0):,}",
            "yes" if result.inexact_after_with == 0 else f"NO ({result.inexact_after_with} inexact)",
        )
    console.print(table)
    if not report.ok:
        console.print(
            "copies left inexact by a WITH write: the triggers do not keep them exact", style="bold red"
        )

"""``agency-rls bench``: the query mix timed under row level security against hand-written queries.

For each query of the mix (``agency_rls.workload.queries``) and each chosen principal, the bench
runs the application's plain query *acting as the principal through the backend API*
(``PrincipalPool.acting_as``) and the best hand-written equivalent over the base tables without
row level security ("H", on the DBA's connection), in the same database and the same run, warm,
interleaved, and reports p50 and p95 of each, their ratio, the buffers each touches, the shape of
the RLS plan and what in it does not scale (``agency_rls.workload.plans``). Every pair must
return the same rows: a mismatch is a finding about the policies (or about the hand-written rule),
reported with the differing rows, and fails the run.

Principals (picked from the data, as the DBA, with the hand-written rule): the smallest, median
and largest agency by currently visible contracts (the smallest among those that see any), a
working agency (currently supervised; the one under the largest supervisor), a supervising agency
(the most working agencies), a seconded-staff principal (an agency principal restricted to one
insurer) and the insurer with the most contracts. Each one's inputs (a policy number, a customer
id, a deep offset) are chosen from its own visible set, so point lookups find a row.

Where a query has several hand-written shapes (``Query.alternatives``: no one shape is best for
every scope size), each is run three times on the principal's data first, they must return the
same rows, and the fastest is the principal's "H" (the JSON names it and the trials' medians).

How the timing is fair:

- one transaction per sample on both sides; the statement alone is timed (execute + fetch), and
  the RLS side's whole transaction (checkout, ``SET LOCAL ROLE`` and the principal check, the
  statement, commit) is reported beside it;
- RLS and H alternate pair by pair, in random order, and principals come in a new random order
  every round, so drift hits both sides alike;
- two pooled backend sessions, "a" and "b". PL/pgSQL keeps each function's plans per session,
  shaped by its first caller: session "a" is first used by the principals from the smallest scope
  up, session "b" from the largest down, then rounds alternate between them with principals mixed.
  A p50 that differs between the sessions by more than 2x is reported as session coupling;
- the pool's check-in reset runs in its worker thread (as in an application); the bench waits for
  it before the next sample, so it never overlaps the other side's statement.

Who the bench logs in as: the DBA connection (``--database-url``) must read every row for the
hand-written side: a superuser, or a member of ``<prefix>rls_loader`` (whose policies open every
row). The RLS side needs a session of the backend role ``<prefix>rls_backend``, the pool refusing
anything privileged. In order:

1. ``backend_conninfo`` (``--backend-url``): the application's own backend login;
2. a superuser DBA: the pool's connections log in with the DBA's parameters and become the
   backend with ``SET SESSION AUTHORIZATION <prefix>rls_backend`` (superusers only), so
   ``session_user`` is the backend exactly as after a login and ``SET ROLE`` is checked against
   it; nothing changes in the catalog (no password is set, no role created) and nothing outlives
   the run;
3. otherwise a login as the backend with the DBA's parameters without its password (trust or peer
   authentication, a ``.pgpass`` entry); when that fails the error asks for ``--backend-url``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agency_rls.backend import PrincipalPool
from agency_rls.backend.hygiene import refuse_privileged_login
from agency_rls.cluster.database import libpq_conninfo
from agency_rls.rls_policies.names import ManagementRoles
from agency_rls.rls_policies.provision import stored_prefix
from agency_rls.workload.plans import Explained, PlanFlag, explain_analyze, plan_flags, plan_shape, table_rows
from agency_rls.workload.queries import (
    QUERIES,
    Query,
    Viewer,
    contract_in_scope,
    customer_ids_cte,
    deep_offset,
)

__all__ = [
    "DEFAULT_ROUNDS",
    "DEFAULT_WARMUP",
    "BenchError",
    "BenchPrincipal",
    "BenchReport",
    "PairResult",
    "Side",
    "format_json",
    "pick_params",
    "pick_principals",
    "render_text",
    "run_bench",
]

DEFAULT_ROUNDS = 30
DEFAULT_WARMUP = 3
#: A statement running longer is cancelled, and its pair reported as timed out (not retried).
DEFAULT_STATEMENT_TIMEOUT_S = 60.0
#: Per-session p50s further apart than this factor (and 1 ms) are reported as session coupling.
SESSION_COUPLING = 2.0
#: Runs of each hand-written shape when a query has several; the fastest median becomes "H".
VARIANT_TRIALS = 3
#: Samples each session needs before its p50 is compared with the other's.
COUPLING_SAMPLES = 5
SESSIONS = ("a", "b")

#: The labels of picked principals, in report order.
LABELS = ("smallest", "median", "largest", "working", "supervising", "seconded", "insurer", "chosen")


class BenchError(RuntimeError):
    """The bench cannot run; the message is the one-line reason."""


def _valid(alias: str) -> str:
    return f"{alias}.valid_from <= now() AND ({alias}.valid_to IS NULL OR now() < {alias}.valid_to)"


# -- results ------------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (p95 of 20 samples is the 19th smallest); None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class BenchPrincipal:
    """A principal the bench acts as, why it was picked, and its query inputs."""

    role: str
    viewer: Viewer
    labels: list[str] = field(default_factory=list)
    visible_contracts: int = 0
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "labels": self.labels,
            "kind": self.viewer.kind,
            "agency_id": self.viewer.agency_id,
            "insurer_id": self.viewer.insurer_id,
            "restricted": self.viewer.restricted,
            "visible_contracts": self.visible_contracts,
            "inputs": {key: value for key, value in self.values.items() if not key.startswith("_")},
        }


@dataclass
class Side:
    """One side (RLS or H) of one pair: statement times in ms, and its analysed plan."""

    samples: list[float] = field(default_factory=list)
    by_session: dict[str, list[float]] = field(default_factory=dict)
    buffers: int | None = None
    flags: list[PlanFlag] = field(default_factory=list)
    shape: str | None = None
    timed_out: bool = False

    @property
    def p50(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p95(self) -> float | None:
        return percentile(self.samples, 0.95)

    def session_p50(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.by_session.items() if values}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "p50_ms": _round(self.p50),
            "p95_ms": _round(self.p95),
            "samples": len(self.samples),
            "timed_out": self.timed_out,
            "buffers": self.buffers,
            "flags": [flag.as_dict() for flag in self.flags],
            "shape": self.shape,
        }
        if self.by_session:
            out["session_p50_ms"] = {name: _round(value) for name, value in self.session_p50().items()}
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(rls: float | None, hand: float | None) -> float | None:
    if rls is None or hand is None or hand <= 0:
        return None
    return rls / hand


@dataclass
class PairResult:
    """One principal × one query."""

    principal: BenchPrincipal
    query: Query
    rls_sql: str
    hand_sql: str
    args: tuple[Any, ...]
    hand_variants: dict[str, str] = field(default_factory=dict)  # name -> text; hand_sql is the chosen one
    hand_variant: str = "default"
    variant_ms: dict[str, float] = field(default_factory=dict)  # name -> median of the trials
    rls: Side = field(default_factory=Side)
    hand: Side = field(default_factory=Side)
    transaction: list[float] = field(default_factory=list)  # RLS: whole acting_as block, ms
    rows: int | None = None
    mismatch: str | None = None
    mismatches: int = 0
    comparisons: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        """No more samples: an error or a timeout stopped the pair."""
        return self.error is not None or self.rls.timed_out or self.hand.timed_out

    @property
    def overhead_p50(self) -> float | None:
        """Median of (whole transaction - statement) on the RLS side: what acting through the API adds."""
        extra = [txn - stmt for txn, stmt in zip(self.transaction, self.rls.samples, strict=True)]
        return statistics.median(extra) if extra else None

    @property
    def ratio_p50(self) -> float | None:
        return _ratio(self.rls.p50, self.hand.p50)

    @property
    def ratio_p95(self) -> float | None:
        return _ratio(self.rls.p95, self.hand.p95)

    @property
    def shared_flags(self) -> set[tuple[str, str]]:
        """RLS flags the hand-written plan has too (same kind, and same table for a seq scan)."""
        hand_kinds = {flag.kind for flag in self.hand.flags}
        hand_keys = {flag.key for flag in self.hand.flags}
        return {
            flag.key
            for flag in self.rls.flags
            if (flag.key in hand_keys if flag.kind == "seq_scan" else flag.kind in hand_kinds)
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal.role,
            "labels": self.principal.labels,
            "query": self.query.name,
            "rows": self.rows,
            "matched": self.mismatch is None and self.error is None and self.comparisons > 0,
            "comparisons": self.comparisons,
            "mismatches": self.mismatches,
            "mismatch": self.mismatch,
            "error": self.error,
            "rls": self.rls.as_dict(),
            "hand": {
                **self.hand.as_dict(),
                "variant": self.hand_variant,
                "variant_trials_ms": {name: _round(value) for name, value in self.variant_ms.items()},
            },
            "rls_transaction": {
                "p50_ms": _round(statistics.median(self.transaction) if self.transaction else None),
                "p95_ms": _round(percentile(self.transaction, 0.95)),
                "overhead_p50_ms": _round(self.overhead_p50),
            },
            "ratio": {"p50": _round(self.ratio_p50, 3), "p95": _round(self.ratio_p95, 3)},
            "rls_flags_also_in_hand": sorted(f"{kind}:{where}" for kind, where in self.shared_flags),
        }


@dataclass
class BenchReport:
    """Everything one run measured."""

    database: str
    server_version: str
    server: str
    machine: str
    backend_login: str
    rounds: int
    warmup: int
    world: dict[str, float]
    principals: list[BenchPrincipal]
    results: list[PairResult]
    warnings: list[str] = field(default_factory=list)
    prefix: str = ""

    @property
    def mismatched(self) -> list[PairResult]:
        return [result for result in self.results if result.mismatch is not None]

    @property
    def failed(self) -> list[PairResult]:
        return [result for result in self.results if result.error is not None]

    @property
    def ok(self) -> bool:
        """Every pair ran and returned the same rows on both sides."""
        return not self.mismatched and not self.failed

    @property
    def overhead_p50(self) -> float | None:
        """Median, over every RLS sample, of what the transaction around the statement took."""
        extra = [
            txn - stmt
            for result in self.results
            for txn, stmt in zip(result.transaction, result.rls.samples, strict=True)
        ]
        return statistics.median(extra) if extra else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "server_version": self.server_version,
            "server": self.server,
            "machine": self.machine,
            "backend_login": self.backend_login,
            "role_prefix": self.prefix,
            "rounds": self.rounds,
            "warmup": self.warmup,
            "world": {name: int(rows) for name, rows in self.world.items()},
            "principals": [principal.as_dict() for principal in self.principals],
            "queries": {
                name: {"title": query.title, "rls": query.rls}
                for name, query in QUERIES.items()
                if any(result.query.name == name for result in self.results)
            },
            "results": [result.as_dict() for result in self.results],
            "mismatches": len(self.mismatched),
            "errors": len(self.failed),
            "ok": self.ok,
            "api_overhead_p50_ms": _round(self.overhead_p50),
            "warnings": self.warnings,
        }


# -- principals -----------------------------------------------------------------------------------------

_AGENCY_SCOPES = f"""
WITH viewer AS (
    SELECT DISTINCT ON (p.agency_id) p.agency_id, p.role_name
      FROM public.principal AS p
      JOIN public.agency AS a ON a.id = p.agency_id
      JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
     WHERE p.kind = 'agency' AND p.insurer_id IS NULL
       AND pg_catalog.pg_has_role(%(backend)s::name, r.oid, 'MEMBER')
     ORDER BY p.agency_id, p.role_name <> %(prefix)s || 'agency_' || lower(a.code), p.role_name
), scope AS (
    SELECT v.agency_id AS viewer, v.agency_id AS handler FROM viewer AS v
    UNION
    SELECT s.supervising_agency_id, s.working_agency_id FROM public.supervision AS s
     WHERE s.supervising_agency_id IN (SELECT agency_id FROM viewer) AND {_valid("s")}
), visible AS (
    SELECT sc.viewer, count(DISTINCT h.contract_id) AS contracts
      FROM scope AS sc
      JOIN public.contract_handler AS h ON h.agency_id = sc.handler AND {_valid("h")}
      JOIN public.entrustment AS e ON e.agency_id = sc.viewer AND e.insurer_id = h.insurer_id AND {_valid("e")}
     GROUP BY sc.viewer
)
SELECT v.agency_id, v.role_name, coalesce(vis.contracts, 0),
       ARRAY(SELECT s.supervising_agency_id FROM public.supervision AS s
              WHERE s.working_agency_id = v.agency_id AND {_valid("s")}),
       (SELECT count(DISTINCT s.working_agency_id) FROM public.supervision AS s
         WHERE s.supervising_agency_id = v.agency_id AND {_valid("s")})
  FROM viewer AS v LEFT JOIN visible AS vis ON vis.viewer = v.agency_id
 ORDER BY v.agency_id
"""

_INSURERS = """
SELECT p.role_name, p.insurer_id, coalesce(n.contracts, 0) AS contracts
  FROM public.principal AS p
  JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
  LEFT JOIN (SELECT c.insurer_id, count(*) AS contracts FROM public.contract AS c GROUP BY c.insurer_id) AS n
    ON n.insurer_id = p.insurer_id
 WHERE p.kind = 'insurer' AND pg_catalog.pg_has_role(%(backend)s::name, r.oid, 'MEMBER')
 ORDER BY contracts DESC, p.role_name
 LIMIT 1
"""

_SECONDED = """
SELECT p.role_name, p.agency_id, p.insurer_id
  FROM public.principal AS p
  JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
 WHERE p.kind = 'agency' AND p.insurer_id IS NOT NULL
   AND pg_catalog.pg_has_role(%(backend)s::name, r.oid, 'MEMBER')
 ORDER BY p.role_name
"""


def pick_principals(
    dba: psycopg.Connection[Any], prefix: str, backend_user: str, wanted: Sequence[str] | None = None
) -> tuple[list[BenchPrincipal], list[str]]:
    """The principals to bench and warnings about the ones missing; inputs are filled by ``pick_params``.

    ``wanted``: role names (with or without the role prefix) instead of the automatic choice.
    Only principals whose role exists and that ``backend_user`` may act as are considered.
    """
    if wanted:
        return _named_principals(dba, prefix, wanted), []
    warnings: list[str] = []
    picked: dict[str, BenchPrincipal] = {}

    def take(role: str, viewer: Viewer, label: str) -> None:
        principal = picked.setdefault(role, BenchPrincipal(role=role, viewer=viewer))
        principal.labels.append(label)

    agencies = dba.execute(_AGENCY_SCOPES, {"backend": backend_user, "prefix": prefix}).fetchall()
    contracts = {int(row[0]): int(row[2]) for row in agencies}
    if agencies:
        seeing = [row for row in agencies if row[2] > 0] or list(agencies)
        by_size = sorted(seeing, key=lambda row: (row[2], row[0]))
        for label, row in (
            ("smallest", by_size[0]),
            ("median", by_size[len(by_size) // 2]),
            ("largest", by_size[-1]),
        ):
            take(row[1], Viewer("agency", int(row[0])), label)
        working = [row for row in agencies if row[3]]
        if working:
            row = max(
                working, key=lambda row: (max(contracts.get(int(s), 0) for s in row[3]), row[2], -row[0])
            )
            take(row[1], Viewer("agency", int(row[0])), "working")
        else:
            warnings.append("no working agency: no agency principal is currently supervised")
        supervising = [row for row in agencies if row[4] > 0]
        if supervising:
            row = max(supervising, key=lambda row: (row[4], row[2], -row[0]))
            take(row[1], Viewer("agency", int(row[0])), "supervising")
        else:
            warnings.append("no supervising agency: no agency principal currently supervises another")
    else:
        warnings.append("no agency principal the backend can act as")
    seconded = dba.execute(_SECONDED, {"backend": backend_user}).fetchall()
    if seconded:
        row = max(seconded, key=lambda row: (contracts.get(int(row[1]), 0), _neg(row[0])))
        take(row[0], Viewer("agency", int(row[1]), int(row[2])), "seconded")
    else:
        warnings.append("no seconded-staff principal (an agency principal restricted to one insurer)")
    insurer = dba.execute(_INSURERS, {"backend": backend_user}).fetchone()
    if insurer:
        take(insurer[0], Viewer("insurer", None, int(insurer[1])), "insurer")
    else:
        warnings.append("no insurer principal the backend can act as")
    return list(picked.values()), warnings


def _neg(text: str) -> tuple[int, ...]:
    """A key that sorts strings in reverse (so max() prefers the first name)."""
    return tuple(-ord(char) for char in text)


def _named_principals(
    dba: psycopg.Connection[Any], prefix: str, wanted: Sequence[str]
) -> list[BenchPrincipal]:
    rows = dba.execute("SELECT role_name, kind, agency_id, insurer_id FROM public.principal").fetchall()
    known = {str(row[0]): row for row in rows}
    out: list[BenchPrincipal] = []
    unknown: list[str] = []
    for name in wanted:
        role = name if name in known else prefix + name if prefix + name in known else None
        if role is None:
            unknown.append(name)
            continue
        if any(principal.role == role for principal in out):
            continue
        _, kind, agency_id, insurer_id = known[role]
        viewer = Viewer(
            "insurer" if kind == "insurer" else "agency",
            None if agency_id is None else int(agency_id),
            None if insurer_id is None else int(insurer_id),
        )
        out.append(BenchPrincipal(role=role, viewer=viewer, labels=["chosen"]))
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise BenchError(f"no principal row for {listed} (see public.principal; role prefix {prefix!r})")
    return out


def pick_params(dba: psycopg.Connection[Any], viewer: Viewer) -> tuple[int, dict[str, Any]]:
    """(visible contracts, query inputs) of ``viewer``, from its visible set by the hand-written rule.

    A contract in the middle of its visible set (by id), that contract's policyholder (or insured,
    or a prospect, or a missing id 0), deep offsets for the pages, its own agency id.
    """
    count_row = dba.execute(QUERIES["contract_count"].hand(viewer)).fetchone()
    visible = int(count_row[0]) if count_row else 0
    sample = None
    if visible:
        sample = dba.execute(
            sql.SQL(
                "SELECT c.insurer_id, c.policy_number, c.policyholder_id, c.insured_id FROM public.contract AS c"
                " WHERE {scope} ORDER BY c.id LIMIT 1 OFFSET {offset}"
            ).format(scope=contract_in_scope(viewer, "c"), offset=sql.Literal(visible // 2))
        ).fetchone()
    customer_id = None
    if sample is not None:
        customer_id = sample[2] if sample[2] is not None else sample[3]
    if customer_id is None and viewer.kind == "agency" and not viewer.restricted:
        prospect = dba.execute(
            "SELECT min(id) FROM public.customer WHERE registered_by_agency_id = %s", (viewer.agency_id,)
        ).fetchone()
        customer_id = prospect[0] if prospect else None
    customers_row = dba.execute(
        sql.SQL("WITH {ids} SELECT count(*) FROM ids JOIN public.customer AS p ON p.id = ids.id").format(
            ids=customer_ids_cte(viewer)
        )
    ).fetchone()
    customers = int(customers_row[0]) if customers_row else 0
    values: dict[str, Any] = {
        "insurer_id": int(sample[0]) if sample else 0,
        "policy_number": str(sample[1]) if sample else "(none visible)",
        "customer_id": int(customer_id) if customer_id is not None else 0,
        "customers_offset": deep_offset(customers),
        "agency_id": viewer.agency_id if viewer.agency_id is not None else 0,
        "insurer_page_offset": 0,
        "_visible_customers": customers,
    }
    if viewer.kind == "insurer":
        page_row = dba.execute(
            sql.SQL(
                "SELECT count(*) FROM public.contract AS c JOIN public.contract_handler AS h ON h.contract_id = c.id"
                " WHERE c.insurer_id = {i} AND h.role = 'primary' AND " + _valid("h")
            ).format(i=sql.Literal(viewer.insurer_id))
        ).fetchone()
        values["insurer_page_offset"] = deep_offset(int(page_row[0]) if page_row else 0)
    return visible, values


# -- the backend sessions -----------------------------------------------------------------------------


def _session_authorization_class(role: str) -> type[psycopg.Connection[Any]]:
    """A connection class whose connections become ``role`` right after a superuser login."""
    statement = sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role))

    class BackendSession(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:  # type: ignore[override]
            conn = super().connect(conninfo, **kwargs)
            try:
                conn.execute(statement, prepare=False)
                if not conn.autocommit:
                    conn.commit()
            except BaseException:
                conn.close()
                raise
            return conn

    return BackendSession


def _role_settings_options(dba: psycopg.Connection[Any], role: str) -> list[str]:
    """``-c name=value`` for the role's own settings (ALTER ROLE ... SET), which a login as the role
    applies and SET SESSION AUTHORIZATION does not; given at login, RESET ALL keeps them too."""
    rows = dba.execute(
        """
        SELECT pg_catalog.unnest(s.setconfig)
          FROM pg_catalog.pg_db_role_setting AS s
         WHERE s.setrole = pg_catalog.to_regrole(%s)
           AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database AS d
                                      WHERE d.datname = pg_catalog.current_database()))
         ORDER BY s.setdatabase
        """,
        (role,),
    ).fetchall()
    return ["-c " + str(setting).replace("\\", "\\\\").replace(" ", "\\ ") for (setting,) in rows]


def _without_password(conninfo: str, user: str) -> str:
    params = {key: value for key, value in conninfo_to_dict(conninfo).items() if key != "password"}
    params["user"] = user
    return make_conninfo(**params)  # type: ignore[arg-type]


def _with_timeout(conninfo: str, timeout_s: float) -> dict[str, Any]:
    """Connect keyword arguments that set ``statement_timeout`` at login (RESET ALL keeps it)."""
    existing = str(conninfo_to_dict(conninfo).get("options") or "")
    return {"options": f"{existing} -c statement_timeout={int(timeout_s * 1000)}".strip()}


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def open_backend_pools(
    dba: psycopg.Connection[Any],
    dba_conninfo: str,
    backend_role: str,
    backend_conninfo: str | None,
    *,
    timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    sessions: int = len(SESSIONS),
) -> tuple[list[PrincipalPool], str]:
    """``sessions`` single-connection PrincipalPools of the backend role, and how they log in (see module doc)."""
    if backend_conninfo:
        conninfo, how, connection_class = libpq_conninfo(backend_conninfo), "the given backend login", None
    elif _is_superuser(dba):
        conninfo = dba_conninfo
        how = f"the DBA's login switched to {backend_role} (SET SESSION AUTHORIZATION)"
        connection_class = _session_authorization_class(backend_role)
    else:
        conninfo = _without_password(dba_conninfo, backend_role)
        how = f"a login as {backend_role} with the DBA's parameters, no password"
        connection_class = None
    kwargs = _with_timeout(conninfo, timeout_s)
    if connection_class is not None:  # a login as the backend would apply its settings (jit = off)
        kwargs["options"] = " ".join([*_role_settings_options(dba, backend_role), kwargs["options"]])
    try:
        probe_class = connection_class or psycopg.Connection
        with probe_class.connect(conninfo, autocommit=True, **kwargs) as probe:
            refuse_privileged_login(probe)
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        raise BenchError(
            f"cannot open a session of the backend role {backend_role} ({how}): {reason}; give its login"
            " with --backend-url, or run the bench as a superuser"
        ) from None
    pools: list[PrincipalPool] = []
    try:
        for index in range(sessions):
            options: dict[str, Any] = (
                {} if connection_class is None else {"connection_class": connection_class}
            )
            pool = PrincipalPool(
                conninfo,
                min_size=1,
                max_size=1,
                name=f"agency-rls-bench-{SESSIONS[index % len(SESSIONS)]}",
                open=False,
                connect_kwargs=kwargs,
                **options,
            )
            pools.append(pool)
            pool.open(wait=False)  # the probe above checked the login
            pool.pool.wait(timeout=30.0)
    except BaseException:
        for pool in pools:
            pool.close()
        raise
    return pools, how


def _session_user(pool: PrincipalPool) -> str:
    with pool.pool.connection() as conn:
        row = conn.execute("SELECT session_user").fetchone()
    assert row is not None
    return str(row[0])


def _wait_returned(pool: PrincipalPool, deadline_s: float = 10.0) -> None:
    """Wait until the pool's worker has reset and shelved the connection just returned."""
    stop = time.monotonic() + deadline_s
    while pool.pool.get_stats().get("pool_available", 1) < 1 and time.monotonic() < stop:
        time.sleep(0.00005)


# -- running ------------------------------------------------------------------------------------------


def _describe_mismatch(rls_rows: list[tuple[Any, ...]], hand_rows: list[tuple[Any, ...]]) -> str:
    rls_count, hand_count = Counter(rls_rows), Counter(hand_rows)
    if rls_count == hand_count:
        return f"same {len(rls_rows)} rows in a different order"
    only_rls = list((rls_count - hand_count).elements())
    only_hand = list((hand_count - rls_count).elements())

    def show(rows: list[tuple[Any, ...]]) -> str:
        shown = "; ".join(repr(row) for row in rows[:3])
        return shown + (f"; … {len(rows) - 3} more" if len(rows) > 3 else "")

    parts = [f"RLS returned {len(rls_rows)} rows, hand-written {len(hand_rows)}"]
    if only_rls:
        parts.append(f"only under RLS ({len(only_rls)}): {show(only_rls)}")
    if only_hand:
        parts.append(f"only hand-written ({len(only_hand)}): {show(only_hand)}")
    return "; ".join(parts)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: " + " ".join(str(error).split())


class _Runner:
    def __init__(
        self, dba: psycopg.Connection[Any], pools: Sequence[PrincipalPool], rng: random.Random
    ) -> None:
        self.dba = dba
        self.pools = dict(zip(SESSIONS, pools, strict=True))
        self.rng = rng

    def rls(self, pair: PairResult, session: str) -> tuple[list[tuple[Any, ...]], float, float]:
        pool = self.pools[session]
        started = time.perf_counter_ns()
        with pool.acting_as(role=pair.principal.role) as conn:
            before = time.perf_counter_ns()
            rows = conn.execute(pair.rls_sql, pair.args).fetchall()
            after = time.perf_counter_ns()
        ended = time.perf_counter_ns()
        _wait_returned(pool)
        return rows, (after - before) / 1e6, (ended - started) / 1e6

    def hand(self, pair: PairResult) -> tuple[list[tuple[Any, ...]], float]:
        with self.dba.transaction():
            before = time.perf_counter_ns()
            rows = self.dba.execute(pair.hand_sql, pair.args).fetchall()
            after = time.perf_counter_ns()
        return rows, (after - before) / 1e6

    def choose_hand(self, pair: PairResult) -> None:
        """Time each hand-written shape ``VARIANT_TRIALS`` times and keep the fastest; they must agree."""
        if len(pair.hand_variants) < 2:
            return
        reference: tuple[str, list[tuple[Any, ...]]] | None = None
        for name, text in pair.hand_variants.items():
            trials: list[float] = []
            try:
                for _ in range(VARIANT_TRIALS):
                    with self.dba.transaction():
                        before = time.perf_counter_ns()
                        rows = self.dba.execute(text, pair.args).fetchall()
                        trials.append((time.perf_counter_ns() - before) / 1e6)
            except psycopg.errors.QueryCanceled:
                continue
            except psycopg.Error as error:
                pair.error = f"hand-written shape {name!r}: {_error_text(error)}"
                return
            if reference is None:
                reference = (name, rows)
            elif rows != reference[1]:
                pair.error = (
                    f"hand-written shapes {reference[0]!r} and {name!r} disagree: "
                    + _describe_mismatch(rows, reference[1]).replace("RLS", name)
                )
                return
            pair.variant_ms[name] = statistics.median(trials)
        if pair.variant_ms:
            pair.hand_variant = min(pair.variant_ms, key=pair.variant_ms.__getitem__)
            pair.hand_sql = pair.hand_variants[pair.hand_variant]

    def sample(self, pair: PairResult, session: str, record: bool) -> None:
        """One interleaved RLS/H pair, in random order; compare the rows; record the times."""
        if pair.done:
            return
        sides = ["rls", "hand"]
        self.rng.shuffle(sides)
        rls_rows: list[tuple[Any, ...]] = []
        hand_rows: list[tuple[Any, ...]] = []
        times: dict[str, float] = {}
        for side in sides:
            try:
                if side == "rls":
                    rls_rows, times["rls"], times["txn"] = self.rls(pair, session)
                else:
                    hand_rows, times["hand"] = self.hand(pair)
            except psycopg.errors.QueryCanceled:
                (pair.rls if side == "rls" else pair.hand).timed_out = True
                return
            except psycopg.Error as error:
                pair.error = f"{'RLS' if side == 'rls' else 'hand-written'}: {_error_text(error)}"
                return
            except Exception as error:  # a PrincipalError: not a member, not a principal
                pair.error = f"{'RLS' if side == 'rls' else 'hand-written'}: {_error_text(error)}"
                return
        pair.comparisons += 1
        pair.rows = len(rls_rows)
        if rls_rows != hand_rows:
            pair.mismatches += 1
            if pair.mismatch is None:
                pair.mismatch = _describe_mismatch(rls_rows, hand_rows)
        if record:
            pair.rls.samples.append(times["rls"])
            pair.rls.by_session.setdefault(session, []).append(times["rls"])
            pair.hand.samples.append(times["hand"])
            pair.transaction.append(times["txn"])

    def explain(self, pair: PairResult, sizes: dict[str, float]) -> None:
        if pair.done:
            return
        try:
            with self.pools[SESSIONS[0]].acting_as(role=pair.principal.role) as conn:
                rls = explain_analyze(conn, pair.rls_sql, pair.args)
            _wait_returned(self.pools[SESSIONS[0]])
            with self.dba.transaction():
                hand = explain_analyze(self.dba, pair.hand_sql, pair.args)
        except psycopg.errors.QueryCanceled:
            return
        except psycopg.Error as error:
            pair.error = f"EXPLAIN: {_error_text(error)}"
            return
        self._keep(pair.rls, rls, sizes)
        self._keep(pair.hand, hand, sizes)

    @staticmethod
    def _keep(side: Side, explained: Explained, sizes: dict[str, float]) -> None:
        side.buffers = explained.buffers
        side.flags = plan_flags(explained.plan, sizes)
        side.shape = plan_shape(explained.plan)


def _pair(dba: psycopg.Connection[Any], principal: BenchPrincipal, query: Query) -> PairResult | None:
    if not query.applies(principal.viewer):
        return None
    variants = {name: text.as_string(dba) for name, text in query.hand_variants(principal.viewer).items()}
    return PairResult(
        principal=principal,
        query=query,
        rls_sql=query.rls,
        hand_sql=variants["default"],
        args=query.args(principal.values),
        hand_variants=variants,
    )


def _server_info(dba: psycopg.Connection[Any]) -> tuple[str, str, str]:
    row = dba.execute(
        "SELECT current_database(), current_setting('server_version'), current_setting('shared_buffers')"
    ).fetchone()
    assert row is not None
    host = dba.info.host
    where = "Unix socket" if host.startswith("/") else f"TCP {host}:{dba.info.port}"
    return str(row[0]), str(row[1]), f"{where}, shared_buffers {row[2]}"


def _machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, psycopg {psycopg.__version__}"
    )


def _require_reader(dba: psycopg.Connection[Any], loader: str) -> None:
    row = dba.execute(
        "SELECT r.rolsuper OR r.rolbypassrls"
        " OR coalesce(pg_catalog.pg_has_role(r.oid, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s),"
        " 'USAGE'), false)"
        " FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user",
        (loader,),
    ).fetchone()
    if not row or not row[0]:
        raise BenchError(
            f"the bench reads every row for its hand-written queries: connect as a superuser or a member of {loader}"
        )


def run_bench(
    dba_conninfo: str = "",
    *,
    backend_conninfo: str | None = None,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    principals: Sequence[str] | None = None,
    queries: Iterable[str] | None = None,
    seed: int | None = None,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Time the query mix as each picked principal (RLS) and hand-written (H); see the module doc.

    ``dba_conninfo``: a superuser or ``<prefix>rls_loader`` member (libpq conninfo or URL; empty:
    the libpq environment). ``backend_conninfo``: a login of the backend role (default: see the
    module doc). ``principals``: role names instead of the automatic choice. ``queries``: names of
    ``QUERIES`` to run (default all). ``rounds``: timed samples per pair; ``warmup``: untimed
    rounds after the two ordered priming passes (which always run and check rows too).
    """
    if rounds < 1 or warmup < 0:
        raise BenchError("rounds must be >= 1 and warmup >= 0")
    selected = list(queries) if queries else list(QUERIES)
    unknown = [name for name in selected if name not in QUERIES]
    if unknown:
        raise BenchError(f"unknown query {', '.join(map(repr, unknown))}; the mix: {', '.join(QUERIES)}")
    say = progress or (lambda message: None)
    rng = random.Random(seed)
    dba_conninfo = libpq_conninfo(dba_conninfo)
    with psycopg.connect(
        dba_conninfo, autocommit=True, **_with_timeout(dba_conninfo, statement_timeout_s)
    ) as dba:
        dba.execute("SET row_security = on")
        try:
            prefix = stored_prefix(dba)
        except RuntimeError as error:
            raise BenchError(str(error)) from None
        roles = ManagementRoles(prefix)
        _require_reader(dba, roles.loader)
        database, version, server = _server_info(dba)
        sizes = table_rows(dba)
        warnings = _data_warnings(dba, sizes)
        pools, how = open_backend_pools(
            dba, dba_conninfo, roles.backend, backend_conninfo, timeout_s=statement_timeout_s
        )
        try:
            backend_user = _session_user(pools[0])
            say("picking principals")
            picked, missing = pick_principals(dba, prefix, backend_user, principals)
            warnings.extend(missing)
            if not picked:
                raise BenchError("no principal to act as: run 'agency-rls provision' after loading data")
            for principal in picked:
                principal.visible_contracts, principal.values = pick_params(dba, principal.viewer)
            picked.sort(key=lambda p: min(LABELS.index(label) for label in p.labels))
            candidates = (_pair(dba, principal, QUERIES[name]) for principal in picked for name in selected)
            pairs = [pair for pair in candidates if pair is not None]
            runner = _Runner(dba, pools, rng)
            say("choosing among hand-written shapes")
            for pair in pairs:
                runner.choose_hand(pair)
            by_principal = {
                principal.role: [p for p in pairs if p.principal is principal] for principal in picked
            }
            ascending = sorted(picked, key=lambda p: (p.visible_contracts, p.role))
            # Priming: session a is first used from the smallest scope up, session b from the largest down.
            say("priming the two backend sessions in opposite orders")
            for session, order in (("a", ascending), ("b", list(reversed(ascending)))):
                for principal in order:
                    for pair in by_principal[principal.role]:
                        runner.sample(pair, session, record=False)
            total = warmup + rounds
            for number in range(total):
                record = number >= warmup
                session = SESSIONS[number % len(SESSIONS)]
                if record:
                    say(f"round {number - warmup + 1}/{rounds}")
                order = list(picked)
                rng.shuffle(order)
                for principal in order:
                    mine = list(by_principal[principal.role])
                    rng.shuffle(mine)
                    for pair in mine:
                        runner.sample(pair, session, record=record)
            say("explaining")
            for pair in pairs:
                runner.explain(pair, sizes)
            warnings.extend(_coupling_warnings(pairs))
            if _session_user(pools[0]) != backend_user:
                warnings.append(
                    "a backend session changed its session user during the run: RLS times are suspect"
                )
        finally:
            for pool in pools:
                pool.close()
    return BenchReport(
        database=database,
        server_version=version,
        server=server,
        machine=_machine(),
        backend_login=how,
        rounds=rounds,
        warmup=warmup,
        world={name: sizes.get(name, 0.0) for name in _WORLD_TABLES},
        principals=picked,
        results=pairs,
        warnings=warnings,
        prefix=prefix,
    )


_WORLD_TABLES = ("agency", "contract", "contract_handler", "customer", "notice", "entrustment", "supervision")
_SPEC_TABLES = (*_WORLD_TABLES, "insurer", "notice_receipt", "principal")


def _data_warnings(dba: psycopg.Connection[Any], sizes: dict[str, float]) -> list[str]:
    warnings: list[str] = []
    never = dba.execute(
        "SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_catalog.pg_class AS c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.reltuples < 0"
        " AND c.relname = ANY (%s)",
        (list(_SPEC_TABLES),),
    ).fetchone()
    if never and never[0]:
        warnings.append(
            f"never analysed: {never[0]} (run ANALYZE: plans without statistics are not the real ones)"
        )
    missing = dba.execute("SELECT count(*) FROM public.contract_handler WHERE insurer_id IS NULL").fetchone()
    if missing and missing[0]:
        warnings.append(
            f"{missing[0]} contract_handler rows have no insurer_id (loaded with triggers off?): run"
            " 'agency-rls provision'; the hand-written queries read it as the contract's insurer"
        )
    return warnings


def _coupling_warnings(pairs: Iterable[PairResult]) -> list[str]:
    out: list[str] = []
    for pair in pairs:
        samples = {
            name: values for name, values in pair.rls.by_session.items() if len(values) >= COUPLING_SAMPLES
        }
        if len(samples) < 2:
            continue
        by_session = {name: statistics.median(values) for name, values in samples.items()}
        fast = min(by_session, key=by_session.__getitem__)
        low, high = by_session[fast], max(by_session.values())
        fast_p95 = percentile(samples[fast], 0.95) or low
        # Apart by the factor, by 1 ms, and beyond the faster session's own p95 (not noise).
        if high > SESSION_COUPLING * low and high - low > 1.0 and high > fast_p95:
            shown = ", ".join(f"{name} {value:.2f} ms" for name, value in sorted(by_session.items()))
            out.append(
                f"session coupling: {pair.principal.role} {pair.query.name} p50 differs by backend session"
                f" ({shown}): a plan kept per session depends on who called first"
            )
    return out


# -- output -------------------------------------------------------------------------------------------


def format_json(report: BenchReport) -> str:
    """The report as JSON (for CI and the README table)."""
    return json.dumps(report.as_dict(), indent=2, default=str)


def _ms(value: float | None, timed_out: bool = False) -> str:
    if timed_out:
        return "timeout"
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _principal_label(principal: BenchPrincipal, prefix: str) -> str:
    name = principal.role[len(prefix) :] if prefix and principal.role.startswith(prefix) else principal.role
    return f"{name} ({', '.join(principal.labels)}; {principal.visible_contracts:,} contracts)"


def render_text(report: BenchReport, console: Any) -> None:
    """Print the report on a rich ``Console``: header, one table, mismatches, plan shapes, warnings."""
    from rich.table import Table
    from rich.text import Text

    world = ", ".join(f"{name} {int(rows):,}" for name, rows in report.world.items())
    console.print(
        f"agency-rls bench: database {report.database}, PostgreSQL {report.server_version} ({report.server})",
        highlight=False,
    )
    console.print(f"machine: {report.machine}", highlight=False)
    console.print(f"backend: {report.backend_login}", highlight=False)
    console.print(f"world (reltuples): {world}", highlight=False)
    console.print(
        f"{report.rounds} timed rounds after {report.warmup} warm-up rounds and two priming passes; "
        "times in ms (statement only; 'txn' is the RLS side's whole transaction); "
        "H = hand-written over the base tables without RLS; buffers = shared hit+read of one execution",
        highlight=False,
    )
    overhead = report.overhead_p50
    if overhead is not None:
        console.print(
            f"acting through the backend API (checkout, SET LOCAL ROLE and principal check, commit) adds"
            f" {overhead:.3f} ms per transaction (median); python -m agency_rls.checks.bench_overhead"
            " compares it with a direct login",
            highlight=False,
        )
    table = Table(show_lines=False)
    for column, justify in (
        ("principal", "left"),
        ("query", "left"),
        ("rows", "right"),
        ("RLS p50", "right"),
        ("RLS p95", "right"),
        ("H p50", "right"),
        ("H p95", "right"),
        ("x p50", "right"),
        ("x p95", "right"),
        ("txn p50", "right"),
        ("buffers RLS/H", "right"),
        ("flags", "left"),
    ):
        # the principal names the row: never cut (agency_rls.cli_support.terminal)
        fold = {"overflow": "fold"} if column == "principal" else {}
        table.add_column(column, justify=justify, **fold)  # type: ignore[arg-type]
    previous = None
    for result in report.results:
        if previous is not None and result.principal is not previous:
            table.add_section()
        first = result.principal is not previous
        previous = result.principal
        shared = result.shared_flags
        flags = Text()
        if result.error:
            flags.append("ERROR", style="bold red")
        elif result.mismatch:
            flags.append("MISMATCH", style="bold red")
        for flag in result.rls.flags:
            if flags:
                flags.append("; ")
            flags.append(str(flag) + (" (H too)" if flag.key in shared else ""), style="yellow")
        buffers = (
            f"{result.rls.buffers if result.rls.buffers is not None else '-'}"
            f"/{result.hand.buffers if result.hand.buffers is not None else '-'}"
        )
        table.add_row(
            Text(_principal_label(result.principal, report.prefix)) if first else Text(""),
            result.query.name,
            "-" if result.rows is None else str(result.rows),
            _ms(result.rls.p50, result.rls.timed_out),
            _ms(result.rls.p95, result.rls.timed_out),
            _ms(result.hand.p50, result.hand.timed_out),
            _ms(result.hand.p95, result.hand.timed_out),
            _times(result.ratio_p50),
            _times(result.ratio_p95),
            _ms(statistics.median(result.transaction) if result.transaction else None),
            buffers,
            flags,
        )
    console.print(table)
    for result in report.results:
        if result.mismatch or result.error:
            console.print(
                Text(
                    f"{'ERROR' if result.error else 'MISMATCH'} {result.principal.role} {result.query.name}: ",
                    style="bold red",
                )
                + Text(result.error or result.mismatch or "")
            )
            console.print(Text(f"  inputs: {result.args!r}"))
    console.print(Text("RLS plan shapes", style="bold"))
    for name in dict.fromkeys(result.query.name for result in report.results):
        shapes: dict[str, list[str]] = {}
        for result in report.results:
            if result.query.name == name and result.rls.shape:
                shapes.setdefault(result.rls.shape, []).append(
                    _principal_label(result.principal, report.prefix).split(" (")[0]
                )
        for shape, who in shapes.items():
            console.print(Text(f"{name}: {', '.join(who)}", style="cyan"))
            console.print(Text("\n".join("    " + line for line in shape.splitlines())))
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    verdict = (
        Text("every pair returned the same rows", style="green")
        if report.ok
        else Text(
            f"{len(report.mismatched)} mismatched pairs, {len(report.failed)} failed pairs", style="bold red"
        )
    )
    console.print(verdict)

"""Reading ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``: buffers read, the plan's shape, and what to flag.

Reusable on any connection: run ``explain_analyze`` (or ``buffers_of``) on a connection acting as a
principal (inside ``PrincipalPool.acting_as``) to see the plan row level security gives that
principal, or on a DBA connection for a hand-written query. ``plan_flags`` is a pure function of
the plan JSON, so tests can feed it captured plans.

The flags, and why each is a sign of a policy shape that does not scale (performance notes):

- ``seq_scan``: a sequential scan of a large table (``pg_class.reltuples``, or the rows the scan
  actually went through, at least ``seq_scan_rows``, 10,000 by default). A scope that the
  planner cannot turn into an index condition walks the whole table for every principal, the
  smallest included.
- ``filtered_scan``: any other scan (index, bitmap) that removed at least ``seq_scan_rows`` rows
  by its filter, over all its loops: the index found rows the policy then threw away one by one
  (a scope that is a per-row filter, e.g. a function called per row, not an index condition),
  so the cost follows the table, or the insurer's business, rather than the principal's scope.
- ``hashed_subplan``: a ``hashed SubPlan`` anywhere: a policy subquery (``IN``/``EXISTS``) that
  the planner neither pulled up into a join nor probes per row; it builds a hash of the whole
  subquery result for every statement.
- ``materialised_scope``: in a statement over a large table (one of its scans is on a table of
  at least ``seq_scan_rows`` rows), an InitPlan (a wrapped scope function, ``(SELECT f())``, or
  a ``MATERIALIZED`` CTE), evaluated once per statement, that does real work: it read at least
  ``scope_buffers`` shared buffers (1,000 by default, 8 MB), or its scans went through at least
  ``seq_scan_rows`` rows. What a scope function does inside is invisible in a plan, but its
  buffer reads are counted in the InitPlan that calls it, so buffers are the robust signal: a
  statement that asks for one row but first builds the principal's whole visible set crosses the
  threshold as soon as that set is large, whatever the function's shape. (On a small world a
  function's catalog reads alone can pass 1,000 buffers; the large-table condition keeps those
  out: they cost per statement, but they do not grow with the data.)

Buffers are the execution's shared buffers hit + read of the top node, which includes every child,
InitPlan and SubPlan, and the functions they call (planning's own catalog reads are left out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

__all__ = [
    "SCOPE_BUFFERS",
    "SEQ_SCAN_ROWS",
    "Explained",
    "PlanFlag",
    "buffers_of",
    "explain_analyze",
    "plan_buffers",
    "plan_flags",
    "plan_nodes",
    "plan_root",
    "plan_shape",
    "table_rows",
]

#: A table with at least this many rows is "large" for the sequential-scan flag.
SEQ_SCAN_ROWS = 10_000
#: An InitPlan reading at least this many shared buffers materialises a scope worth flagging.
SCOPE_BUFFERS = 1_000

FlagKind = Literal["seq_scan", "filtered_scan", "hashed_subplan", "materialised_scope"]

_HASHED = re.compile(r"hashed SubPlan \d+")


@dataclass(frozen=True)
class PlanFlag:
    """One finding in a plan; ``key`` identifies it across plans (kind and where)."""

    kind: FlagKind
    where: str  # relation, SubPlan or InitPlan name
    detail: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.where)

    def __str__(self) -> str:
        return self.detail

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass(frozen=True)
class Explained:
    """An analysed plan and its execution's shared buffers."""

    plan: dict[str, Any]  # the JSON document's first element: {"Plan": …, "Execution Time": …}
    shared_hit: int
    shared_read: int
    execution_ms: float

    @property
    def buffers(self) -> int:
        """Shared buffers hit + read by the execution."""
        return self.shared_hit + self.shared_read


def explain_analyze(
    conn: psycopg.Connection[Any], query: str | sql.Composable, params: Sequence[Any] | None = None
) -> Explained:
    """Run ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) query`` on ``conn`` as whatever role is in force.

    The query really runs (``ANALYZE``); use it for reads only. Parameters are bound as the
    application binds them (the plan is a custom plan for these values).
    """
    statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(
        sql.SQL(query) if isinstance(query, str) else query
    )
    row = conn.execute(statement, tuple(params) if params is not None else None, prepare=False).fetchone()
    assert row is not None
    document = row[0]
    if isinstance(document, str):  # a connection without the json loader
        document = json.loads(document)
    top = document[0]
    hit, read = plan_buffers(top)
    return Explained(
        plan=top, shared_hit=hit, shared_read=read, execution_ms=float(top.get("Execution Time", 0.0))
    )


def buffers_of(
    conn: psycopg.Connection[Any], query: str | sql.Composable, params: Sequence[Any] | None = None
) -> int:
    """Shared buffers (hit + read) that running ``query`` on ``conn`` touches, planning excluded."""
    return explain_analyze(conn, query, params).buffers


def plan_root(plan: Any) -> dict[str, Any]:
    """The top plan node of an EXPLAIN JSON document, its first element, or a node itself."""
    if isinstance(plan, list):
        plan = plan[0]
    if isinstance(plan, dict) and "Plan" in plan:
        plan = plan["Plan"]
    if not isinstance(plan, dict) or "Node Type" not in plan:
        raise ValueError("not an EXPLAIN (FORMAT JSON) plan")
    return plan


def plan_buffers(plan: Any) -> tuple[int, int]:
    """(shared hit, shared read) of the execution: the top node's counts include its children's."""
    root = plan_root(plan)
    return int(root.get("Shared Hit Blocks", 0)), int(root.get("Shared Read Blocks", 0))


def plan_nodes(plan: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every node with its depth, depth first (InitPlans and SubPlans are children of their node)."""

    def walk(node: dict[str, Any], depth: int) -> Iterator[tuple[int, dict[str, Any]]]:
        yield depth, node
        for child in node.get("Plans", ()):
            yield from walk(child, depth + 1)

    yield from walk(plan_root(plan), 0)


def _subplan_name(node: Mapping[str, Any]) -> str | None:
    """'InitPlan 1', 'SubPlan 2', 'CTE vcp' (PostgreSQL 15/16 add ' (returns $0)': dropped)."""
    name = node.get("Subplan Name")
    if not name:
        return None
    return str(name).split(" (returns", 1)[0]


def _hashed_refs(node: Mapping[str, Any]) -> list[str]:
    """The 'hashed SubPlan N' references in a node's conditions (Filter, Join Filter, Index Cond…)."""
    found: list[str] = []
    for value in node.values():
        if isinstance(value, str):
            found.extend(_HASHED.findall(value))
        elif isinstance(value, list):
            found.extend(m for item in value if isinstance(item, str) for m in _HASHED.findall(item))
    return found


def _label(node: Mapping[str, Any]) -> str:
    kind = str(node["Node Type"])
    strategy = node.get("Strategy")
    if kind == "Aggregate" and strategy in ("Hashed", "Sorted", "Mixed"):
        kind = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate"}[strategy]
    join = node.get("Join Type")
    if join and join != "Inner":
        kind += f" {join}"
    if node.get("Scan Direction") == "Backward":
        kind += " Backward"
    if node.get("Index Name"):
        kind += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        kind += f" on {node['Relation Name']}"
    elif node.get("CTE Name"):
        kind += f" on CTE {node['CTE Name']}"
    elif node.get("Function Name"):
        kind += f" of {node['Function Name']}()"
    hashed = _hashed_refs(node)
    if hashed:
        kind += " [" + ", ".join(dict.fromkeys(hashed)) + "]"
    name = _subplan_name(node)
    if name and node.get("Parent Relationship") in ("InitPlan", "SubPlan"):
        kind = f"{name}: {kind}"
    return kind


def plan_shape(plan: Any) -> str:
    """The plan's nodes, one per line, indented: node type, index, relation; no numbers.

    Two principals with the same shape got the same plan (up to estimates), so shapes group.
    """
    return "\n".join("  " * depth + _label(node) for depth, node in plan_nodes(plan))


def _rows_through(node: Mapping[str, Any]) -> float:
    """Rows a scan went through: returned plus removed by its filter, over all its loops."""
    loops = float(node.get("Actual Loops", 1) or 0)
    rows = float(node.get("Actual Rows", 0)) + float(node.get("Rows Removed by Filter", 0))
    return rows * loops


def _is_scan(node: Mapping[str, Any]) -> bool:
    return "Relation Name" in node


def plan_flags(
    plan: Any,
    table_sizes: Mapping[str, float] | None = None,
    *,
    seq_scan_rows: int = SEQ_SCAN_ROWS,
    scope_buffers: int = SCOPE_BUFFERS,
) -> list[PlanFlag]:
    """What in an analysed plan signals a scope that does not scale (see the module docstring).

    ``table_sizes``: relation name -> row count (``table_rows``); without it, or for a table it
    does not list, a sequential scan's size is the rows it went through.
    """
    sizes = table_sizes or {}
    flags: dict[tuple[str, str], PlanFlag] = {}
    large_table = any(
        max(float(sizes.get(str(node["Relation Name"]), 0) or 0), _rows_through(node)) >= seq_scan_rows
        for _, node in plan_nodes(plan)
        if _is_scan(node)
    )

    def add(flag: PlanFlag) -> None:
        flags.setdefault(flag.key, flag)

    for _, node in plan_nodes(plan):
        kind = node["Node Type"]
        if kind in ("Seq Scan", "Parallel Seq Scan"):
            relation = str(node.get("Relation Name", "?"))
            size = max(float(sizes.get(relation, 0) or 0), _rows_through(node))
            if size >= seq_scan_rows:
                add(PlanFlag("seq_scan", relation, f"seq scan on {relation} ({size:,.0f} rows)"))
        elif _is_scan(node):
            removed = float(node.get("Rows Removed by Filter", 0)) * float(node.get("Actual Loops", 1) or 0)
            if removed >= seq_scan_rows:
                relation = str(node["Relation Name"])
                add(
                    PlanFlag(
                        "filtered_scan",
                        relation,
                        f"{kind} on {relation} removed {removed:,.0f} rows by filter",
                    )
                )
        for ref in _hashed_refs(node):
            add(PlanFlag("hashed_subplan", ref, ref))
        name = _subplan_name(node)
        if name and node.get("Parent Relationship") == "InitPlan":
            buffers = sum(plan_buffers(node))
            through = sum(_rows_through(inner) for _, inner in plan_nodes(node) if _is_scan(inner))
            if large_table and (buffers >= scope_buffers or through >= seq_scan_rows):
                work = f"{through:,.0f} rows scanned" if through else "inside a function"
                add(
                    PlanFlag(
                        "materialised_scope",
                        name,
                        f"{name} materialised per statement ({buffers:,} buffers, {work})",
                    )
                )
    return list(flags.values())


def table_rows(conn: psycopg.Connection[Any], schema: str = "public") -> dict[str, float]:
    """Row counts of ``schema``'s tables: ``pg_class.reltuples``, or the statistics' live rows when the
    table was never analysed (reltuples -1 on PostgreSQL 14 and later). Catalog reads only."""
    rows = conn.execute(
        "SELECT c.relname, CASE WHEN c.reltuples >= 0 THEN c.reltuples"
        " ELSE coalesce(pg_catalog.pg_stat_get_live_tuples(c.oid), 0) END"
        " FROM pg_catalog.pg_class AS c WHERE c.relnamespace = pg_catalog.to_regnamespace(%s)"
        " AND c.relkind IN ('r', 'p')",
        (schema,),
    ).fetchall()
    return {str(name): float(count) for name, count in rows}

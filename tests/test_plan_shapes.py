"""Plan shapes, not timings: every policy filters on an index with its scope computed once.

performance-notes.md: identity computed per row, OR between scopes, and policy subqueries that
become hashed SubPlans fall off the index. Here each protected table is read as principals of
every kind, with sequential scans discouraged, and the plan must use an index on the table and
evaluate the scope functions only in InitPlans (once per statement), never in a SubPlan.
"""

from __future__ import annotations

import json

import pytest
from agency_rls.schema import PROTECTED_TABLES

from tests.support import World

PERSONAS = ["agency_s1", "agency_w11", "staff_nl_at_m1", "insurer_nl"]


def plan_nodes(node: dict) -> list[dict]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(plan_nodes(child))
    return found


def calls_outside_initplans(node: dict) -> list[str]:
    """Conditions that call a scope function anywhere but in an InitPlan (i.e. per row)."""
    if node.get("Parent Relationship") == "InitPlan":
        return []
    conditions = [str(node.get(key, "")) for key in ("Filter", "Index Cond", "Recheck Cond", "Output")]
    found = [c for c in conditions if "agency_rls." in c]
    for child in node.get("Plans", []):
        found.extend(calls_outside_initplans(child))
    return found


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("table", [t for t in PROTECTED_TABLES if t != "principal"])
def test_policies_stay_on_the_index_and_compute_scope_once(world: World, persona: str, table: str) -> None:
    with world.acting_as(persona) as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL jit = off")
        (plan,) = cur.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM public.{table}").fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes = plan_nodes(plan[0]["Plan"])
    text = json.dumps(plan)
    scans = [n for n in nodes if n.get("Relation Name") == table]
    if not scans:  # no policy applies to this role: default deny, planned as a constant false
        assert nodes[0]["Node Type"] == "Result" and nodes[0].get("One-Time Filter") == "false", text
        return
    for scan in scans:
        assert scan["Node Type"] != "Seq Scan", f"{table} as {persona}: policy falls off the index\n{text}"
    subplans = [n for n in nodes if n.get("Parent Relationship") == "SubPlan"]
    assert subplans == [], f"{table} as {persona}: a policy runs per row (SubPlan)\n{text}"
    assert calls_outside_initplans(plan[0]["Plan"]) == [], f"{table} as {persona}: scope computed per row"
    assert any(n.get("Parent Relationship") == "InitPlan" for n in nodes), text

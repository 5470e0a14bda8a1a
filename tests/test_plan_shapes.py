"""Plan shapes, not timings: every policy filters on an index with its scope computed once.

performance-notes.md: identity computed per row, OR between scopes, and policy subqueries that
become hashed SubPlans fall off the index. Here each protected table is read as principals of
every kind, with sequential scans discouraged, and the plan must use an index on the table and
evaluate the scope functions only in InitPlans (once per statement). Per row, a policy may only
look at the row's own copied handler links (a Function Scan over ``unnest`` of them) or probe one
row of another protected table by its key (an Index Scan whose condition is ``id = <this row's
column>``): both cost the same whatever the caller's scope. Never a hashed SubPlan (it reads the
caller's whole scope first) and never a scan without an index condition.
"""

from __future__ import annotations

import json
import re

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


def per_row_probe_is_constant(subplan: dict, persona: str = "") -> bool:
    """A SubPlan that reads the row's own links, or one row of another table by its key.

    Seconded staff: also a probe on the insurer index with the folded restriction (revision 0007),
    which the planner prefers to the key only on this tiny world (13 contracts of the insurer, about
    the key's cost); at scale the key wins by its estimate (one row against the insurer's share).
    """
    if subplan["Node Type"] == "Function Scan" and str(subplan.get("Alias", "")).startswith("link"):
        return True
    condition = str(subplan.get("Index Cond", "")).lstrip("(")
    if subplan["Node Type"] not in ("Index Scan", "Index Only Scan"):
        return False
    if persona.startswith("staff_") and re.fullmatch(r"insurer_id = '\d+'::bigint\)", condition):
        return str(subplan.get("Filter", "")).lstrip("(").startswith("id = ")
    return condition.startswith("id = ")


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("table", [t for t in PROTECTED_TABLES if t != "principal"])
def test_policies_stay_on_the_index_and_compute_scope_once(world: World, persona: str, table: str) -> None:
    with world.acting_as(persona) as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL jit = off")
        (plan,) = cur.execute(f"EXPLAIN (FORMAT JSON) SELECT id FROM public.{table}").fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes = plan_nodes(plan[0]["Plan"])
    text = json.dumps(plan)
    scans = [n for n in nodes if n.get("Relation Name") == table]
    if not scans:  # no policy applies to this role: default deny, planned as a constant false
        assert nodes[0]["Node Type"] == "Result" and nodes[0].get("One-Time Filter") == "false", text
        return
    for scan in scans:
        if (table, persona) == ("customer", "insurer_nl"):
            continue  # a per-row check on purpose: an insurer's customers are a large share (policies.sql)
        assert scan["Node Type"] != "Seq Scan", f"{table} as {persona}: policy falls off the index\n{text}"
    for node in nodes:
        assert "hashed" not in str(node.get("Subplan Name", "")), (
            f"{table} as {persona}: hashed SubPlan\n{text}"
        )
    for subplan in (n for n in nodes if n.get("Parent Relationship") == "SubPlan"):
        assert per_row_probe_is_constant(subplan, persona), f"{table} as {persona}: a per-row SubPlan scans\n{text}"
    assert calls_outside_initplans(plan[0]["Plan"]) == [], f"{table} as {persona}: scope computed per row"
    assert any(n.get("Parent Relationship") == "InitPlan" for n in nodes), text


@pytest.mark.parametrize("persona", ["agency_s1", "agency_w11"])
def test_agencies_reach_contracts_through_the_copied_handler_links(world: World, persona: str) -> None:
    """The overlap with the caller's agencies is the index condition (contract_handler_agency_ids_idx).

    It is one only because ``contract_agency_handles`` is RESTRICTIVE and sorts before the entrustment
    guard: PostgreSQL gives restrictive policies security levels in name order, and only the first
    level may use a non-LEAKPROOF operator such as ``&&`` as an index condition. Renamed or made
    permissive, the policy silently becomes a filter over every contract of the caller's insurers.
    """
    with world.acting_as(persona) as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        (plan,) = cur.execute("EXPLAIN (FORMAT JSON) SELECT count(*) FROM public.contract").fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    indexes = {n.get("Index Name") for n in plan_nodes(plan[0]["Plan"])}
    assert "contract_handler_agency_ids_idx" in indexes, json.dumps(plan)


def test_seconded_staff_reach_contracts_through_an_index_of_their_scope(world: World) -> None:
    """Seconded staff: the copied links' GIN index or, since revision 0007, the insurer index with the
    restriction folded into an equality (the planner picks; on this small world, the insurer's)."""
    with world.acting_as("staff_nl_at_m1") as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        (plan,) = cur.execute("EXPLAIN (FORMAT JSON) SELECT count(*) FROM public.contract").fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    conditions = {n.get("Index Name"): n.get("Index Cond") for n in plan_nodes(plan[0]["Plan"])}
    assert "contract_handler_agency_ids_idx" in conditions or (
        "contract_insurer_id_idx" in conditions
        and re.fullmatch(r"\(insurer_id = '\d+'::bigint\)", conditions["contract_insurer_id_idx"] or "")
    ), json.dumps(plan)

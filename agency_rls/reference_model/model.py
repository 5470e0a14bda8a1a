"""What a principal sees: the rules of ``rules.py`` applied to every row of a world.

``visible_rows(world, role_name, now)`` returns, for every table of the spec, the set of row ids
(role names for ``principal``) the role may read at ``now``. Order matters only where a rule refers
to another table's outcome: contracts first, then customers (through contracts), then notices
(which need both), handlers, master data and receipts.
"""

from __future__ import annotations

import datetime as dt

from agency_rls.reference_model import rules
from agency_rls.reference_model.coverage import NullTally, Tally
from agency_rls.reference_model.world import PROTECTED_TABLES, TABLES, World, row_key

Visible = dict[str, frozenset[int | str]]


def _ids(rows: object) -> frozenset[int | str]:
    return frozenset(row_key(r) for r in rows)  # type: ignore[attr-defined]


def nothing_visible(world: World) -> Visible:
    """Spec: "Default deny: a role that is not a principal sees no row of a protected table"."""
    visible: Visible = {t: frozenset() for t in PROTECTED_TABLES}
    visible["insurer"] = _ids(r for r in world.insurer if rules.sees_insurer_row())
    return visible


def visible_rows(world: World, role_name: str, now: dt.datetime, tally: Tally | None = None) -> Visible:
    """Row keys of every table that ``role_name`` sees at ``now`` (``now`` must be timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (validity columns are timestamptz)")
    t = tally if tally is not None else NullTally()
    principal = world.principal_named(role_name)
    visible = nothing_visible(world)
    if principal is None:
        return visible
    facts = rules.Facts(world, now)
    viewer = rules.viewer_of(principal)
    if isinstance(viewer, rules.InsurerViewer):
        kind = "insurer"
        visible.update(_insurer_view(t, facts, viewer.insurer_id))
    elif viewer.restricted_to is None:
        kind = "agency"
        visible.update(_agency_view(t, facts, viewer.agency_id))
    else:
        kind = "restricted"
        visible.update(_restricted_view(t, facts, viewer.agency_id, viewer.restricted_to))
    visible["principal"] = _ids(
        p for p in world.principal if rules.own_principal_row(t, f"{kind}.principal", role_name, p)
    )
    assert set(visible) == set(TABLES)
    return visible


def visible_to_every_principal(
    world: World, now: dt.datetime, tally: Tally | None = None
) -> dict[str, Visible]:
    """``visible_rows`` for each principal row of the world, keyed by role name."""
    return {p.role_name: visible_rows(world, p.role_name, now, tally) for p in world.principal}


def _agency_view(t: Tally, f: rules.Facts, a: int) -> Visible:
    """The unrestricted agency principal's rows ("Read rules for an agency principal")."""
    w = f.world
    contracts = [c for c in w.contract if rules.agency_contract(t, f, a, c)]
    contract_ids = {c.id for c in contracts}
    customer_ids = {p.id for p in w.customer if rules.agency_customer(t, a, p, contracts)}
    notice_ids = {n.id for n in w.notice if rules.agency_notice(t, f, a, n, contract_ids, customer_ids)}
    return {
        "contract": frozenset(contract_ids),
        "customer": frozenset(customer_ids),
        "notice": frozenset(notice_ids),
        "contract_handler": _ids(
            h
            for h in w.contract_handler
            if rules.agency_handler(t, "agency.contract_handler", h, contract_ids)
        ),
        "agency": _ids(r for r in w.agency if rules.agency_agency_row(t, f, a, r)),
        "supervision": _ids(s for s in w.supervision if rules.agency_supervision_row(t, f, a, s)),
        "entrustment": _ids(e for e in w.entrustment if rules.agency_entrustment_row(t, f, a, e)),
        "notice_receipt": _ids(r for r in w.notice_receipt if rules.agency_receipt(t, a, r)),
    }


def _restricted_view(t: Tally, f: rules.Facts, a: int, n: int) -> Visible:
    """The restricted agency principal's rows: the agency rules "with three changes"."""
    w = f.world
    contracts = [c for c in w.contract if rules.restricted_contract(t, f, a, n, c)]
    contract_ids = {c.id for c in contracts}
    customer_ids = {p.id for p in w.customer if rules.restricted_customer(t, p, contracts)}
    notice_ids = {
        x.id for x in w.notice if rules.restricted_notice(t, f, a, n, x, contract_ids, customer_ids)
    }
    return {
        "contract": frozenset(contract_ids),
        "customer": frozenset(customer_ids),
        "notice": frozenset(notice_ids),
        "contract_handler": _ids(
            h
            for h in w.contract_handler
            if rules.agency_handler(t, "restricted.contract_handler", h, contract_ids)
        ),
        "agency": _ids(r for r in w.agency if rules.restricted_agency_row(t, a, r)),
        "supervision": _ids(s for s in w.supervision if rules.restricted_supervision_row()),
        "entrustment": _ids(e for e in w.entrustment if rules.restricted_entrustment_row(t, a, n, e)),
        "notice_receipt": _ids(r for r in w.notice_receipt if rules.restricted_receipt(t, a, r, notice_ids)),
    }


def _insurer_view(t: Tally, f: rules.Facts, i: int) -> Visible:
    """The insurer principal's rows ("Read rules for an insurer principal")."""
    w = f.world
    contracts = [c for c in w.contract if rules.insurer_contract(t, i, c)]
    contract_ids = {c.id for c in contracts}
    return {
        "contract": frozenset(contract_ids),
        "customer": _ids(p for p in w.customer if rules.insurer_customer(t, p, contracts)),
        "notice": _ids(n for n in w.notice if rules.insurer_notice(t, i, n)),
        "contract_handler": _ids(h for h in w.contract_handler if rules.insurer_handler(t, h, contract_ids)),
        "agency": _ids(r for r in w.agency if rules.insurer_agency_row(t, f, i, r)),
        "entrustment": _ids(e for e in w.entrustment if rules.insurer_entrustment_row(t, f, i, e)),
        "supervision": _ids(s for s in w.supervision if rules.insurer_supervision_or_receipt_row()),
        "notice_receipt": _ids(r for r in w.notice_receipt if rules.insurer_supervision_or_receipt_row()),
    }

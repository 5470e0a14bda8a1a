"""One function per rule of ``scope-rules.md``; each docstring quotes the sentence it implements.

Read this file next to the spec. Every rule function decides one row for one viewer and returns
whether the viewer sees it; the clauses it combines are named (so ``coverage.Tally`` can tell which
clause decided, and, given the row as ``about``, ``explain.Explainer`` can say why that row is
shown or hidden) and the boolean formula is written out in the ``judge`` call exactly as the spec
states it. Nothing here is shared with, or derived from, the policy SQL.

Readings where the text leaves room (the same as ``scenarios/sample_world.yaml``'s R1-R6):

- R1 "its own supervision rows" are those where the agency is on either side; "that agency's
  supervision rows" (of a supervised agency) likewise.
- R2 the rows of a supervised agency and a restricted principal's "entrustments from N" are shown
  whatever their validity (the spec writes "current" where it means it).
- R3 "the contract_handler rows of the contracts it sees" are all handler rows of such a contract,
  of any agency and any validity.
- R4 an unrestricted agency sees every receipt with its ``agency_id`` (also for notices it no longer
  sees); a restricted principal only its agency's receipts of the notices it sees.
- R5 insurer principals see no ``supervision`` and no ``notice_receipt`` rows (not listed: default
  deny).
- R6 for a restricted principal (and an insurer principal) "prospects are not visible" removes the
  ``registered_by_agency_id`` path only: a customer who is policyholder or insured of a contract the
  principal sees is visible through that contract even if some agency registered it as a prospect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from agency_rls.reference_model.coverage import Tally
from agency_rls.reference_model.world import (
    Agency,
    Contract,
    ContractHandler,
    Customer,
    Entrustment,
    Notice,
    NoticeReceipt,
    Principal,
    Supervision,
    World,
    valid_at,
)

# ------------------------------------------------------------------------------------------------
# Definitions
# ------------------------------------------------------------------------------------------------


@dataclass
class Facts:
    """The world's valid links at ``now``, indexed once so that each rule stays a one-liner."""

    world: World
    now: dt.datetime
    handled: set[tuple[int, int]] = field(init=False)  # (agency, contract)
    entrusted_pairs: set[tuple[int, int]] = field(init=False)  # (agency, insurer)
    supervision_pairs: set[tuple[int, int]] = field(init=False)  # (supervising, working)

    def __post_init__(self) -> None:
        w, now = self.world, self.now
        self.handled = {
            (h.agency_id, h.contract_id)
            for h in w.contract_handler
            if valid_at(h.valid_from, h.valid_to, now)
        }
        self.entrusted_pairs = {
            (e.agency_id, e.insurer_id) for e in w.entrustment if valid_at(e.valid_from, e.valid_to, now)
        }
        self.supervision_pairs = {
            (s.supervising_agency_id, s.working_agency_id)
            for s in w.supervision
            if valid_at(s.valid_from, s.valid_to, now)
        }

    def handles(self, agency_id: int, contract_id: int) -> bool:
        """Spec: "`handles(A, C)`: a valid `contract_handler` row links agency A to contract C." """
        return (agency_id, contract_id) in self.handled

    def entrusted(self, agency_id: int, insurer_id: int) -> bool:
        """Spec: "`entrusted(A, I)`: a valid `entrustment` row links agency A to insurer I." """
        return (agency_id, insurer_id) in self.entrusted_pairs

    def supervises(self, supervising_id: int, working_id: int) -> bool:
        """Spec: "`supervises(S, W)`: a valid `supervision` row links S (supervising) to W (working). It is
        **not transitive**" - so this looks at one row and never follows a chain.
        """
        return (supervising_id, working_id) in self.supervision_pairs

    def supervised_by(self, agency_id: int) -> set[int]:
        """The agencies W with ``supervises(agency_id, W)`` (one step only)."""
        return {w for s, w in self.supervision_pairs if s == agency_id}


@dataclass(frozen=True)
class AgencyViewer:
    """An agency principal: agency A, optionally restricted to insurer N."""

    role_name: str
    agency_id: int
    restricted_to: int | None


@dataclass(frozen=True)
class InsurerViewer:
    """An insurer principal: staff of insurer I."""

    role_name: str
    insurer_id: int


def viewer_of(principal: Principal) -> AgencyViewer | InsurerViewer:
    """Spec: "an **agency principal** acts for agency A; when `principal.insurer_id` is set it is
    **restricted** to that one insurer"; "an **insurer principal** acts for staff of insurer I".
    """
    if principal.kind == "agency":
        assert principal.agency_id is not None
        return AgencyViewer(principal.role_name, principal.agency_id, principal.insurer_id)
    assert principal.insurer_id is not None
    return InsurerViewer(principal.role_name, principal.insurer_id)


def is_party(customer_id: int, contracts: Iterable[Contract]) -> bool:
    """Whether the customer is policyholder or insured of one of ``contracts``."""
    return any(customer_id in (c.policyholder_id, c.insured_id) for c in contracts)


# ------------------------------------------------------------------------------------------------
# Every role
# ------------------------------------------------------------------------------------------------


def sees_insurer_row() -> bool:
    """Spec: "**Insurers.** Every role may read `insurer` (it holds no personal data)." """
    return True


def own_principal_row(t: Tally, rule: str, role_name: str, p: Principal) -> bool:
    """Spec: "A sees ... the `principal` row whose `role_name` is its own role"; insurer I sees "its own
    `principal` row"; the restricted principal keeps this rule (it is not among the three changes).
    """
    return t.judge(rule, lambda x: x["own_role"], {"own_role": p.role_name == role_name}, about=p)


# ------------------------------------------------------------------------------------------------
# Agency principal (unrestricted)
# ------------------------------------------------------------------------------------------------


def agency_contract(t: Tally, f: Facts, a: int, c: Contract) -> bool:
    """Spec: "**Contracts.** A sees contract C iff `entrusted(A, C.insurer)` and (`handles(A, C)` or some W
    with `supervises(A, W)` and `handles(W, C)`). Only the viewer's own entrustment counts.
    Supervision never widens a *working* agency's view: W sees none of S's contracts that W does not
    handle itself, direct or gateway (incident 1)."
    """
    return t.judge(
        "agency.contract",
        lambda x: x["entrusted"] and (x["handles"] or x["supervised_handles"]),
        {
            "entrusted": f.entrusted(a, c.insurer_id),
            "handles": f.handles(a, c.id),
            "supervised_handles": any(f.handles(w, c.id) for w in f.supervised_by(a)),
        },
        about=c,
    )


def agency_customer(t: Tally, a: int, p: Customer, seen_contracts: Iterable[Contract]) -> bool:
    """Spec: "**Customers.** A sees customer P iff A sees a contract whose policyholder or insured is P, or
    `P.registered_by_agency_id = A`."
    """
    return t.judge(
        "agency.customer",
        lambda x: x["through_contract"] or x["own_prospect"],
        {
            "through_contract": is_party(p.id, seen_contracts),
            "own_prospect": p.registered_by_agency_id == a,
        },
        about=p,
    )


def agency_notice(
    t: Tally, f: Facts, a: int, n: Notice, seen_contract_ids: set[int], seen_customer_ids: set[int]
) -> bool:
    """Spec: "**Notices.** A sees notice N iff `entrusted(A, N.insurer)` and (`N.addressee = A` or
    `supervises(N.addressee, A)`) and (`N.contract_id` is null or A sees that contract) and
    (`N.customer_id` is null or A sees that customer). Notices flow down only: a supervising agency
    does not see notices addressed to its working agencies. A working agency without an entrustment
    from the insurer sees none of its notices (incidents 2 and 3)."
    """
    return t.judge(
        "agency.notice",
        lambda x: (
            x["entrusted"]
            and (x["addressed_to_viewer"] or x["addressed_to_supervisor"])
            and x["contract_seen"]
            and x["customer_seen"]
        ),
        {
            "entrusted": f.entrusted(a, n.insurer_id),
            "addressed_to_viewer": n.addressee_agency_id == a,
            "addressed_to_supervisor": f.supervises(n.addressee_agency_id, a),
            "contract_seen": n.contract_id is None or n.contract_id in seen_contract_ids,
            "customer_seen": n.customer_id is None or n.customer_id in seen_customer_ids,
        },
        about=n,
    )


def agency_handler(t: Tally, rule: str, h: ContractHandler, seen_contract_ids: set[int]) -> bool:
    """Spec: "**Handlers.** A sees the `contract_handler` rows of the contracts it sees." (R3: every row of
    such a contract, whatever its agency and validity.) For a restricted principal "every ... handler
    row must concern insurer N" holds already, as it sees only N's contracts.
    """
    return t.judge(
        rule, lambda x: x["contract_seen"], {"contract_seen": h.contract_id in seen_contract_ids}, about=h
    )


def agency_agency_row(t: Tally, f: Facts, a: int, row: Agency) -> bool:
    """Spec: "**Master data.** A sees its own `agency` row ...; the `agency` row of a currently valid
    supervisor; and, for each agency it currently supervises, that agency's `agency` row"."""
    return t.judge(
        "agency.agency",
        lambda x: x["own"] or x["current_supervisor"] or x["currently_supervised"],
        {
            "own": row.id == a,
            "current_supervisor": f.supervises(row.id, a),
            "currently_supervised": f.supervises(a, row.id),
        },
        about=row,
    )


def agency_supervision_row(t: Tally, f: Facts, a: int, s: Supervision) -> bool:
    """Spec: "A sees ... its own `supervision` ... rows (whatever their validity: its own history); ...
    and, for each agency it currently supervises, that agency's ... `supervision` ... rows." (R1: a
    row is an agency's own when the agency is on either side.)
    """
    sides = (s.supervising_agency_id, s.working_agency_id)
    return t.judge(
        "agency.supervision",
        lambda x: x["own"] or x["of_currently_supervised"],
        {
            "own": a in sides,
            "of_currently_supervised": any(f.supervises(a, w) for w in sides),
        },
        about=s,
    )


def agency_entrustment_row(t: Tally, f: Facts, a: int, e: Entrustment) -> bool:
    """Spec: "A sees ... its own ... `entrustment` rows (whatever their validity: its own history); ... and,
    for each agency it currently supervises, that agency's ... `entrustment` rows." (R2: any validity.)
    """
    return t.judge(
        "agency.entrustment",
        lambda x: x["own"] or x["of_currently_supervised"],
        {"own": e.agency_id == a, "of_currently_supervised": f.supervises(a, e.agency_id)},
        about=e,
    )


def agency_receipt(t: Tally, a: int, r: NoticeReceipt) -> bool:
    """Spec: "**Receipts and principals.** A sees the `notice_receipt` rows of its agency" (R4)."""
    return t.judge(
        "agency.notice_receipt", lambda x: x["own_agency"], {"own_agency": r.agency_id == a}, about=r
    )


# ------------------------------------------------------------------------------------------------
# Restricted agency principal (agency A, insurer N)
# ------------------------------------------------------------------------------------------------


def restricted_contract(t: Tally, f: Facts, a: int, n: int, c: Contract) -> bool:
    """Spec: "A **restricted** agency principal (insurer N) applies the rules above with three changes:
    every contract ... must concern insurer N"."""
    return t.judge(
        "restricted.contract",
        lambda x: x["concerns_n"] and x["agency_rule"],
        {"concerns_n": c.insurer_id == n, "agency_rule": agency_contract(t, f, a, c)},
        about=c,
    )


def restricted_customer(t: Tally, p: Customer, seen_contracts: Iterable[Contract]) -> bool:
    """Spec: "every ... customer-through-contract ... must concern insurer N; prospects
    (`registered_by_agency_id`) are neither visible to it nor insertable by it" (R6: only the
    prospect path goes; ``seen_contracts`` are already N's only).
    """
    return t.judge(
        "restricted.customer",
        lambda x: x["through_contract"],
        {"through_contract": is_party(p.id, seen_contracts)},
        about=p,
    )


def restricted_notice(
    t: Tally,
    f: Facts,
    a: int,
    n: int,
    notice: Notice,
    seen_contract_ids: set[int],
    seen_customer_ids: set[int],
) -> bool:
    """Spec: "every ... notice ... must concern insurer N", on top of the agency rule for notices (whose
    "A sees that contract / customer" uses the restricted principal's own view)."""
    return t.judge(
        "restricted.notice",
        lambda x: x["concerns_n"] and x["agency_rule"],
        {
            "concerns_n": notice.insurer_id == n,
            "agency_rule": agency_notice(t, f, a, notice, seen_contract_ids, seen_customer_ids),
        },
        about=notice,
    )


def restricted_agency_row(t: Tally, a: int, row: Agency) -> bool:
    """Spec: "of master data it sees its own agency's `agency` row" (no supervisor, no supervised agency)."""
    return t.judge("restricted.agency", lambda x: x["own"], {"own": row.id == a}, about=row)


def restricted_supervision_row() -> bool:
    """Spec: "of master data it sees its own agency's `agency` row and that agency's entrustments from N"
    - supervision rows are not among them, so none."""
    return False


def restricted_entrustment_row(t: Tally, a: int, n: int, e: Entrustment) -> bool:
    """Spec: "and that agency's entrustments from N" (R2: whatever their validity)."""
    return t.judge(
        "restricted.entrustment",
        lambda x: x["own_agency"] and x["from_n"],
        {"own_agency": e.agency_id == a, "from_n": e.insurer_id == n},
        about=e,
    )


def restricted_receipt(t: Tally, a: int, r: NoticeReceipt, seen_notice_ids: set[int]) -> bool:
    """Spec: "and of receipts those of the notices it sees" (R4: and of its agency, as for any agency)."""
    return t.judge(
        "restricted.notice_receipt",
        lambda x: x["own_agency"] and x["notice_seen"],
        {"own_agency": r.agency_id == a, "notice_seen": r.notice_id in seen_notice_ids},
        about=r,
    )


# ------------------------------------------------------------------------------------------------
# Insurer principal (insurer I)
# ------------------------------------------------------------------------------------------------


def insurer_contract(t: Tally, i: int, c: Contract) -> bool:
    """Spec: "Contracts with `insurer_id = I`, whatever their source; never another insurer's gateway
    contracts, even those held by agencies it entrusts"."""
    return t.judge(
        "insurer.contract", lambda x: x["own_insurer"], {"own_insurer": c.insurer_id == i}, about=c
    )


def insurer_customer(t: Tally, p: Customer, seen_contracts: Iterable[Contract]) -> bool:
    """Spec: "Customers who are policyholder or insured of such a contract (not prospects)" (R6)."""
    return t.judge(
        "insurer.customer",
        lambda x: x["through_contract"],
        {"through_contract": is_party(p.id, seen_contracts)},
        about=p,
    )


def insurer_notice(t: Tally, i: int, n: Notice) -> bool:
    """Spec: "Notices issued by I"."""
    return t.judge("insurer.notice", lambda x: x["issued_by_i"], {"issued_by_i": n.insurer_id == i}, about=n)


def insurer_handler(t: Tally, h: ContractHandler, seen_contract_ids: set[int]) -> bool:
    """Spec: "the handler rows of the contracts it sees" (R3: of any agency and any validity)."""
    return t.judge(
        "insurer.contract_handler",
        lambda x: x["contract_seen"],
        {"contract_seen": h.contract_id in seen_contract_ids},
        about=h,
    )


def insurer_agency_row(t: Tally, f: Facts, i: int, row: Agency) -> bool:
    """Spec: "the agencies it currently entrusts"."""
    return t.judge(
        "insurer.agency",
        lambda x: x["currently_entrusted"],
        {"currently_entrusted": f.entrusted(row.id, i)},
        about=row,
    )


def insurer_entrustment_row(t: Tally, f: Facts, i: int, e: Entrustment) -> bool:
    """Spec: "and their current entrustments from I"."""
    return t.judge(
        "insurer.entrustment",
        lambda x: x["from_i"] and x["current"],
        {"from_i": e.insurer_id == i, "current": valid_at(e.valid_from, e.valid_to, f.now)},
        about=e,
    )


def insurer_supervision_or_receipt_row() -> bool:
    """Not listed among an insurer principal's rows (R5), so default deny: "a role that is not a
    principal sees no row" generalises to "a principal sees only the rows its rules list"."""
    return False

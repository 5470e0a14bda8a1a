"""Hypothesis strategies for random, schema-valid worlds around the spec's edge cases.

What a generated world contains (kept small so that hundreds fit in a CI run):

- 1-4 insurers drawn from NL/LF (operators) and GW1-GW3 (gateway), 1-6 agencies A1-A6;
- supervision links between random pairs (chains S1 > S2 > W and cycles arise naturally), each with
  a past, current or future window, sometimes an ended and a current row for the same pair;
- customers, some of them prospects of an agency; up to 16 contracts of any insurer, ``gateway`` or
  ``direct`` source (a gateway insurer's are mostly ``gateway``, an operator's mostly ``direct``),
  each with one to three handlers (primary / joint) whose links may be past, current or future;
  renewals: a new generation (``previous_contract_id``) with a current link, often at another
  agency, whose old generation's links the loader closed;
- entrustments, mostly one per handler link's (agency, insurer) as in real business, plus random
  ones, each with its own window (so one pair can be current, expired and future at once);
- up to 16 notices of every kind, with or without contract and customer, satisfying the schema's
  checks (a kind other than general/message names a contract or a customer; a contract's notice
  comes from that contract's insurer); receipts by the addressee, its working agencies or anyone;
- principals: the defaults ``agency_<code>`` / ``insurer_<code>`` of every agency and insurer (what
  ``provision`` would add), plus up to four ``staff_*`` rows: agency principals restricted to one
  insurer (mostly following an entrustment row, like seconded staff), extra unrestricted agency
  principals, extra insurer principals.

The biases (entrustments following handlers, notices addressed to handlers, ...) exist because a
uniformly random world hides almost every row at the first clause that fails, and the later clauses
of a rule would then rarely decide anything (see ``agency_rls.reference_model.coverage``).

Times are whole days away from ``ANCHOR`` (the import time), so that a world's "valid now" is the
same at the database's ``now()`` for any run shorter than a day.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import strategies as st

from agency_rls.reference_model.world import (
    Agency,
    Contract,
    ContractHandler,
    Customer,
    Entrustment,
    Insurer,
    Notice,
    NoticeReceipt,
    Principal,
    Supervision,
    World,
)

ANCHOR = dt.datetime.now(dt.UTC).replace(microsecond=0)
"""The 'now' windows are placed around; the database's now() may be hours later without effect."""

INSURER_POOL: tuple[tuple[str, str, str], ...] = (
    ("NL", "non_life", "operator"),
    ("LF", "life", "operator"),
    ("GW1", "non_life", "gateway"),
    ("GW2", "life", "gateway"),
    ("GW3", "non_life", "gateway"),
)
AGENCY_CODES: tuple[str, ...] = ("A1", "A2", "A3", "A4", "A5", "A6")
NOTICE_KINDS: tuple[str, ...] = (
    "pending_paperwork",
    "maturity_list",
    "renewal",
    "claim",
    "message",
    "general",
)
MAX_CONTRACTS = 30
"""The brief's bound on contracts per world (the strategy stays well below it)."""

Window = tuple[dt.datetime, dt.datetime | None]


def _at(days: int) -> dt.datetime:
    return ANCHOR + dt.timedelta(days=days)


@st.composite
def windows(draw: st.DrawFn, kind: str | None = None) -> Window:
    """A validity window that is ``current``, ``expired`` or ``future`` at ANCHOR (random if None)."""
    kind = kind or draw(st.sampled_from(("current", "current", "expired", "future")))
    if kind == "current":
        start = -draw(st.integers(1, 2000))
        end = draw(st.none() | st.integers(1, 800))
    elif kind == "expired":
        end = -draw(st.integers(1, 800))
        start = end - draw(st.integers(1, 2000))
    else:
        start = draw(st.integers(1, 400))
        end = draw(st.none() | st.integers(start + 1, start + 800))
    return _at(start), None if end is None else _at(end)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """A random world; see the module docstring."""
    insurer_specs = draw(st.lists(st.sampled_from(INSURER_POOL), min_size=1, max_size=4, unique=True))
    insurers = tuple(
        Insurer(i, code, f"Insurer {code}", line, kind)
        for i, (code, line, kind) in enumerate(insurer_specs, 1)
    )
    agencies = tuple(
        Agency(i, code, f"Agency {code}")
        for i, code in enumerate(AGENCY_CODES[: draw(st.integers(1, len(AGENCY_CODES)))], 1)
    )
    agency_id = st.integers(1, len(agencies))
    insurer_id = st.integers(1, len(insurers))

    supervisions = []
    if len(agencies) > 1:
        pairs = draw(st.lists(st.tuples(agency_id, agency_id).filter(lambda p: p[0] != p[1]), max_size=8))
        for s, w in pairs:
            supervisions.append(Supervision(len(supervisions) + 1, s, w, *draw(windows())))

    n_customers = draw(st.integers(1, 12))
    customers = tuple(
        Customer(
            c,
            f"Customer {c}",
            phone=f"000-{c:04d}",
            registered_by_agency_id=draw(st.none() | st.none() | agency_id),
        )
        for c in range(1, n_customers + 1)
    )
    customer_id = st.integers(1, n_customers)

    contracts, handlers = _contracts_and_handlers(draw, insurers, agency_id, customer_id)
    entrustments = _entrustments(draw, contracts, handlers, agency_id, insurer_id)
    notices = _notices(draw, insurers, agencies, contracts, handlers, entrustments, customer_id)
    receipts = _receipts(draw, notices, supervisions, agency_id)

    world = World(
        insurer=insurers,
        agency=agencies,
        supervision=tuple(supervisions),
        entrustment=tuple(entrustments),
        customer=customers,
        contract=tuple(contracts),
        contract_handler=tuple(handlers),
        notice=tuple(notices),
        notice_receipt=tuple(receipts),
        principal=_principals(draw, insurers, agencies, entrustments),
    )
    world.check()
    return world


def _contracts_and_handlers(
    draw: st.DrawFn,
    insurers: tuple[Insurer, ...],
    agency_id: st.SearchStrategy[int],
    customer_id: st.SearchStrategy[int],
) -> tuple[list[Contract], list[ContractHandler]]:
    """Contracts with their handler links; some are renewals whose previous links are closed."""
    contracts: list[Contract] = []
    handlers: list[ContractHandler] = []
    for c in range(1, draw(st.integers(0, 16)) + 1):
        previous = None
        if contracts and draw(st.integers(0, 4)) == 0:
            previous = draw(st.sampled_from(contracts))
        if previous is not None:
            insurer, holder, insured = (
                insurers[previous.insurer_id - 1],
                previous.policyholder_id,
                previous.insured_id,
            )
            # The loader closes the old generation's open links when the customer renews.
            renewed_at = _at(-draw(st.integers(1, 300)))
            for k, h in enumerate(handlers):
                if h.contract_id == previous.id and (h.valid_to is None or h.valid_to > renewed_at):
                    end = max(h.valid_from, renewed_at)  # a link that had not started yet never will
                    handlers[k] = ContractHandler(h.id, h.contract_id, h.agency_id, h.role, h.valid_from, end)
        else:
            insurer = insurers[draw(st.integers(1, len(insurers))) - 1]
            holder = draw(customer_id)
            insured = draw(st.none() | st.just(holder) | customer_id)
        usual, unusual = ("gateway", "direct") if insurer.kind == "gateway" else ("direct", "gateway")
        source = usual if draw(st.integers(0, 5)) < 5 else unusual  # shrinks towards the usual
        contracts.append(
            Contract(
                c,
                insurer.id,
                f"{insurer.code}-{1000 + c}",
                holder,
                previous_contract_id=None if previous is None else previous.id,
                product_type=draw(st.sampled_from(("auto", "fire", "life", "medical"))),
                insured_id=insured,
                starts_on=(ANCHOR + dt.timedelta(days=-30 * c)).date(),
                expires_on=(ANCHOR + dt.timedelta(days=365 - 30 * c)).date(),
                premium=Decimal(1000 * c),
                has_changes=draw(st.booleans()),
                has_claims=draw(st.booleans()),
                source=source,
            )
        )
        for k, agency in enumerate(draw(st.lists(agency_id, min_size=1, max_size=3))):
            window = draw(windows("current")) if previous is not None and k == 0 else draw(windows())
            role = "primary" if k == 0 else "joint"
            handlers.append(ContractHandler(len(handlers) + 1, c, agency, role, *window))
    assert len(contracts) <= MAX_CONTRACTS
    return contracts, handlers


def _entrustments(
    draw: st.DrawFn,
    contracts: list[Contract],
    handlers: list[ContractHandler],
    agency_id: st.SearchStrategy[int],
    insurer_id: st.SearchStrategy[int],
) -> list[Entrustment]:
    """Entrustments: often one per handler link's (agency, insurer), as in real business, plus random
    ones; each with its own window, so the same pair can be current, expired and future at once."""
    insurer_of = {c.id: c.insurer_id for c in contracts}
    business = [(h.agency_id, insurer_of[h.contract_id]) for h in handlers]
    pairs = [p for p in business if draw(st.integers(0, 2))]
    pairs += draw(st.lists(st.tuples(agency_id, insurer_id), max_size=8))
    return [Entrustment(k, a, i, *draw(windows())) for k, (a, i) in enumerate(pairs, 1)]


def _notices(
    draw: st.DrawFn,
    insurers: tuple[Insurer, ...],
    agencies: tuple[Agency, ...],
    contracts: list[Contract],
    handlers: list[ContractHandler],
    entrustments: list[Entrustment],
    customer_id: st.SearchStrategy[int],
) -> list[Notice]:
    """Notices of every kind, respecting the schema's subject and contract-insurer checks.

    The addressee is often a handler of the notice's contract, and a notice without a contract often
    comes from an insurer that entrusts (or entrusted) the addressee: otherwise most notices would be
    hidden by the first clause that fails and the later clauses would rarely decide anything.
    """
    notices = []
    for n in range(1, draw(st.integers(0, 16)) + 1):
        kind = draw(st.sampled_from(NOTICE_KINDS))
        contract = draw(st.none() | st.sampled_from(contracts)) if contracts else None
        customer = draw(st.none() | customer_id)
        if kind not in ("message", "general") and contract is None and customer is None:
            customer = draw(customer_id)
        if kind in ("message", "general") and draw(st.integers(0, 3)) < 3:
            contract, customer = None, None  # the usual case: no personal data
        handling = [h.agency_id for h in handlers if contract is not None and h.contract_id == contract.id]
        addressee = draw(st.sampled_from(handling)) if handling and draw(st.booleans()) else None
        addressee = addressee or draw(st.integers(1, len(agencies)))
        if contract is not None:
            insurer_id = contract.insurer_id
        else:
            entrusting = [e.insurer_id for e in entrustments if e.agency_id == addressee]
            chosen = draw(st.sampled_from(entrusting)) if entrusting and draw(st.booleans()) else None
            insurer_id = chosen or draw(st.integers(1, len(insurers)))
        notices.append(
            Notice(
                n,
                insurer_id,
                addressee,
                kind,
                None if contract is None else contract.id,
                customer,
                f"{kind} #{n}",
                _at(-draw(st.integers(0, 90))),
            )
        )
    return notices


def _receipts(
    draw: st.DrawFn, notices: list[Notice], supervisions: list[Supervision], agency_id: st.SearchStrategy[int]
) -> list[NoticeReceipt]:
    """Receipts, unique per (notice, agency): each notice is read by some of its addressee, an agency
    the addressee supervises (notices flow down to working agencies) and any agency."""
    working: dict[int, list[int]] = {}
    for s in supervisions:
        working.setdefault(s.supervising_agency_id, []).append(s.working_agency_id)
    readers: dict[tuple[int, int], None] = {}
    for n in notices:
        for how in draw(
            st.lists(st.sampled_from(("addressee", "working", "anyone")), max_size=3, unique=True)
        ):
            if how == "addressee":
                readers[(n.id, n.addressee_agency_id)] = None
            elif how == "working" and n.addressee_agency_id in working:
                readers[(n.id, draw(st.sampled_from(working[n.addressee_agency_id])))] = None
            else:
                readers[(n.id, draw(agency_id))] = None
    return [NoticeReceipt(k, n, a, _at(-draw(st.integers(0, 60)))) for k, (n, a) in enumerate(readers, 1)]


def _principals(
    draw: st.DrawFn,
    insurers: tuple[Insurer, ...],
    agencies: tuple[Agency, ...],
    entrustments: list[Entrustment],
) -> tuple[Principal, ...]:
    """Default principals of every agency and insurer, plus a few ``staff_*`` principals.

    A restricted principal mostly follows an entrustment row (staff seconded from the insurer to the
    agency it entrusts, or entrusted, or will entrust); sometimes it pairs any agency and insurer.
    """
    rows = [Principal(f"agency_{a.code.lower()}", "agency", a.id, None) for a in agencies]
    rows += [Principal(f"insurer_{i.code.lower()}", "insurer", None, i.id) for i in insurers]
    extras = st.tuples(
        st.sampled_from(("restricted", "restricted", "restricted", "agency", "insurer")),
        st.sampled_from(agencies),
        st.sampled_from(insurers),
        st.booleans(),
    )
    names = {p.role_name for p in rows}
    for kind, agency, insurer, seconded in draw(st.lists(extras, max_size=4)):
        if kind == "restricted":
            if seconded and entrustments:
                entrustment = draw(st.sampled_from(entrustments))
                agency, insurer = agencies[entrustment.agency_id - 1], insurers[entrustment.insurer_id - 1]
            row = Principal(f"staff_{agency.code}_{insurer.code}".lower(), "agency", agency.id, insurer.id)
        elif kind == "agency":
            row = Principal(f"staff_{agency.code}".lower(), "agency", agency.id, None)
        else:
            row = Principal(f"staff_{insurer.code}".lower(), "insurer", None, insurer.id)
        if row.role_name not in names:
            names.add(row.role_name)
            rows.append(row)
    return tuple(rows)

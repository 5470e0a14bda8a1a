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
from collections.abc import Callable
from decimal import Decimal
from typing import Any

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
from agency_rls.reference_model.writes import (
    Assignments,
    Delete,
    Insert,
    Merge,
    Moment,
    Provision,
    Raw,
    Step,
    Truncate,
    Update,
    apply_step,
    is_provision,
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


# ------------------------------------------------------------------------------------------------
# Write sequences: what loaders write to a loaded world (agency_rls.reference_model.writes)
# ------------------------------------------------------------------------------------------------
#
# Every write that can change what a definition precomputes from the rows: handler links
# (inserted, ended now, moved into the future, moved to another agency or contract, deleted, many
# at once, synced by MERGE or upsert, truncated), contracts (policyholder, insured, insurer,
# deleted, inserted), entrustments and supervision (inserted, ended now, deleted), principals
# (deleted, remapped as delete + provision + insert, undeleted, added), customers' contact and
# prospect columns, and garbage a loader writes into columns the spec does not list (the copies a
# definition keeps), which must be recomputed. Each family draws ids of the world as the previous
# steps left it, so every write is valid (keys hold) and most change something.

Family = Callable[[st.DrawFn, World, dict[str, Principal]], list[Step]]


@st.composite
def moment_windows(draw: st.DrawFn) -> tuple[Moment, Moment | None]:
    """A window relative to the writing transaction's now(): current, expired, future, starting now or
    ending now (``valid_to = now()``: ended for every later statement)."""
    kind = draw(st.sampled_from(("current", "expired", "future", "starts_now", "ends_now")))
    if kind == "current":
        start, end = -draw(st.integers(1, 2000)), draw(st.none() | st.integers(1, 800))
    elif kind == "expired":
        end = -draw(st.integers(1, 800))
        start = end - draw(st.integers(1, 2000))
    elif kind == "future":
        start = draw(st.integers(1, 400))
        end = draw(st.none() | st.integers(start + 1, start + 800))
    elif kind == "starts_now":
        start, end = 0, draw(st.none() | st.integers(1, 800))
    else:
        start, end = -draw(st.integers(1, 2000)), 0
    return Moment(start), None if end is None else Moment(end)


def _next_id(rows: tuple[Any, ...]) -> int:
    return max((r.id for r in rows), default=0) + 1


def _where_id(row_id: int) -> tuple[tuple[str, int]]:
    return (("id", row_id),)


def _agency_ids(w: World) -> st.SearchStrategy[int]:
    return st.sampled_from([a.id for a in w.agency])


def _customer_or_none(w: World) -> st.SearchStrategy[int | None]:
    return st.none() | st.sampled_from([c.id for c in w.customer])


def _handler_insert(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """One link, or several in one statement (often of several contracts)."""
    if not w.contract:
        return []
    first = _next_id(w.contract_handler)
    rows = []
    for k in range(draw(st.integers(1, 3))):
        start, end = draw(moment_windows())
        rows.append(
            (
                ("id", first + k),
                ("contract_id", draw(st.sampled_from(w.contract)).id),
                ("agency_id", draw(_agency_ids(w))),
                ("role", draw(st.sampled_from(("primary", "joint")))),
                ("valid_from", start),
                ("valid_to", end),
            )
        )
    return [(Insert("contract_handler", tuple(rows)),)]


def _handler_window(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if not w.contract_handler:
        return []
    h = draw(st.sampled_from(w.contract_handler))
    change = draw(st.sampled_from(("end_now", "future", "ended", "reopen", "start_now", "window")))
    values: Assignments
    if change == "end_now":
        values = (("valid_to", Moment(0)),)
    elif change == "future":  # moved into the future (its old end may now lie before its start)
        values = (("valid_from", Moment(draw(st.integers(1, 400)))),)
    elif change == "ended":
        values = (("valid_to", Moment(-draw(st.integers(1, 800)))),)
    elif change == "reopen":
        values = (("valid_to", None),)
    elif change == "start_now":
        values = (("valid_from", Moment(0)),)
    else:
        start, end = draw(moment_windows())
        values = (("valid_from", start), ("valid_to", end))
    return [(Update("contract_handler", values, _where_id(h.id)),)]


def _handler_move(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if not w.contract_handler:
        return []
    h = draw(st.sampled_from(w.contract_handler))
    what = draw(st.sampled_from(("agency", "contract", "both")))
    values: Assignments = ()
    if what in ("agency", "both"):
        values += (("agency_id", draw(_agency_ids(w))),)
    if what in ("contract", "both"):
        values += (("contract_id", draw(st.sampled_from(w.contract)).id),)
    return [(Update("contract_handler", values, _where_id(h.id)),)]


def _handler_delete(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if not w.contract_handler:
        return []
    return [(Delete("contract_handler", _where_id(draw(st.sampled_from(w.contract_handler)).id)),)]


def _handler_many(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """One statement over many links: all of an agency's, all of a contract's, or every link."""
    if not w.contract_handler:
        return []
    h = draw(st.sampled_from(w.contract_handler))  # the rows of its agency or contract exist
    by = draw(st.sampled_from(("agency", "contract", "every")))
    where: Assignments = {
        "agency": (("agency_id", h.agency_id),),
        "contract": (("contract_id", h.contract_id),),
    }.get(by, ())
    action = draw(st.sampled_from(("end_now", "move", "delete", "future")))
    if action == "delete":
        return [(Delete("contract_handler", where),)]
    values: Assignments
    if action == "end_now":
        values = (("valid_to", Moment(0)),)
    elif action == "move":
        values = (("agency_id", draw(_agency_ids(w))),)
    else:
        values = (("valid_from", Moment(draw(st.integers(1, 400)))), ("valid_to", None))
    return [(Update("contract_handler", values, where),)]


def _handler_sync(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """An ETL sync of handler links in one statement: some links rewritten (new window, sometimes
    another agency or contract), some new, some deleted (``MERGE``, or an upsert without deletes)."""
    if not w.contract:
        return []
    rewritten = (
        draw(st.lists(st.sampled_from(w.contract_handler), max_size=3, unique_by=lambda h: h.id))
        if w.contract_handler
        else []
    )
    rows = []
    for h in rewritten:
        start, end = draw(moment_windows())
        contract = h.contract_id if draw(st.booleans()) else draw(st.sampled_from(w.contract)).id
        agency = h.agency_id if draw(st.booleans()) else draw(_agency_ids(w))
        rows.append(
            (
                ("id", h.id),
                ("contract_id", contract),
                ("agency_id", agency),
                ("role", h.role),
                ("valid_from", start),
                ("valid_to", end),
            )
        )
    first = _next_id(w.contract_handler)
    for k in range(draw(st.integers(0, 2))):
        start, end = draw(moment_windows())
        rows.append(
            (
                ("id", first + k),
                ("contract_id", draw(st.sampled_from(w.contract)).id),
                ("agency_id", draw(_agency_ids(w))),
                ("role", "joint"),
                ("valid_from", start),
                ("valid_to", end),
            )
        )
    others = [h.id for h in w.contract_handler if h not in rewritten]
    deletes = tuple(draw(st.lists(st.sampled_from(others), max_size=2, unique=True))) if others else ()
    if not rows and not deletes:
        return []
    upsert = bool(rows) and not deletes and draw(st.booleans())
    return [(Merge("contract_handler", tuple(rows), deletes, upsert),)]


def _handler_truncate(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if draw(st.integers(0, 3)):  # rare: it empties the table the other writes work on
        return []
    return [(Truncate(("contract_handler",)),)]


def _contract_party(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if not w.contract:
        return []
    c = draw(st.sampled_from(w.contract))
    what = draw(st.sampled_from(("policyholder", "insured", "both", "holder_everywhere")))
    if what == "holder_everywhere" and c.policyholder_id is not None:  # every contract of that holder
        values: Assignments = (("policyholder_id", draw(_customer_or_none(w))),)
        return [(Update("contract", values, (("policyholder_id", c.policyholder_id),)),)]
    values = ()
    if what in ("policyholder", "both", "holder_everywhere"):
        values += (("policyholder_id", draw(_customer_or_none(w))),)
    if what in ("insured", "both"):
        values += (("insured_id", draw(_customer_or_none(w))),)
    return [(Update("contract", values, _where_id(c.id)),)]


def _contract_insurer(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """Another insurer for a contract no notice names (a notice's key includes its contract's insurer)."""
    noticed = {n.contract_id for n in w.notice}
    candidates = [c for c in w.contract if c.id not in noticed]
    if not candidates or len(w.insurer) < 2:
        return []
    c = draw(st.sampled_from(candidates))
    insurer = draw(st.sampled_from([i.id for i in w.insurer if i.id != c.insurer_id]))
    if any(o.insurer_id == insurer and o.policy_number == c.policy_number for o in w.contract):
        return []
    return [(Update("contract", (("insurer_id", insurer),), _where_id(c.id)),)]


def _contract_delete(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """A contract no notice or renewal names, with its handler links first (same or earlier step)."""
    named = {n.contract_id for n in w.notice} | {c.previous_contract_id for c in w.contract}
    candidates = [c for c in w.contract if c.id not in named]
    if not candidates:
        return []
    c = draw(st.sampled_from(candidates))
    delete_contract = Delete("contract", _where_id(c.id))
    if not any(h.contract_id == c.id for h in w.contract_handler):
        return [(delete_contract,)]
    delete_links = Delete("contract_handler", (("contract_id", c.id),))
    if draw(st.booleans()):
        return [(delete_links, delete_contract)]
    return [(delete_links,), (delete_contract,)]


def _contract_insert(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """A new contract, sometimes with garbage in its copied links (to be recomputed: it has none)."""
    contract_id = _next_id(w.contract)
    insurer = draw(st.sampled_from(w.insurer))
    number = f"{insurer.code}-{5000 + contract_id}"
    if any(c.insurer_id == insurer.id and c.policy_number == number for c in w.contract):
        return []  # a contract that moved to this insurer took the number
    values: Assignments = (
        ("id", contract_id),
        ("insurer_id", insurer.id),
        ("policy_number", number),
        ("policyholder_id", draw(_customer_or_none(w))),
        ("insured_id", draw(_customer_or_none(w))),
        ("source", draw(st.sampled_from(("direct", "gateway")))),
    )
    if draw(st.booleans()):
        values += (
            ("handler_agency_ids", Raw(f"'{{{draw(_agency_ids(w))}}}'")),
            ("handler_windows", Raw("ARRAY['(,)'::tstzrange]")),
        )
    return [(Insert("contract", (values,)),)]


def _validity_writes(draw: st.DrawFn, table: str, rows: tuple[Any, ...], side: str) -> list[Step]:
    """End now, delete, move into the future, or end now every row of one agency (``side``)."""
    if not rows:
        return []
    row = draw(st.sampled_from(rows))
    action = draw(st.sampled_from(("end_now", "delete", "future", "end_all_now")))
    if action == "end_now":
        return [(Update(table, (("valid_to", Moment(0)),), _where_id(row.id)),)]
    if action == "delete":
        return [(Delete(table, _where_id(row.id)),)]
    if action == "future":
        return [(Update(table, (("valid_from", Moment(draw(st.integers(1, 400)))),), _where_id(row.id)),)]
    return [(Update(table, (("valid_to", Moment(0)),), ((side, getattr(row, side)),)),)]


def _entrustment_insert(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    start, end = draw(moment_windows())
    values: Assignments = (
        ("id", _next_id(w.entrustment)),
        ("agency_id", draw(_agency_ids(w))),
        ("insurer_id", draw(st.sampled_from(w.insurer)).id),
        ("valid_from", start),
        ("valid_to", end),
    )
    return [(Insert("entrustment", (values,)),)]


def _entrustment(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if draw(st.booleans()):
        return _entrustment_insert(draw, w, orphans)
    return _validity_writes(draw, "entrustment", w.entrustment, "agency_id")


def _supervision(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    if draw(st.booleans()) and len(w.agency) > 1:
        supervising, working = draw(st.lists(_agency_ids(w), min_size=2, max_size=2, unique=True))
        start, end = draw(moment_windows())
        values: Assignments = (
            ("id", _next_id(w.supervision)),
            ("supervising_agency_id", supervising),
            ("working_agency_id", working),
            ("valid_from", start),
            ("valid_to", end),
        )
        return [(Insert("supervision", (values,)),)]
    return _validity_writes(draw, "supervision", w.supervision, "working_agency_id")


def _principal_values(draw: st.DrawFn, w: World, name: str) -> Assignments:
    """A principal row for ``name`` with a random mapping: agency, restricted agency or insurer."""
    kind = draw(st.sampled_from(("restricted", "agency", "insurer")))
    agency = None if kind == "insurer" else draw(_agency_ids(w))
    insurer = None if kind == "agency" else draw(st.sampled_from(w.insurer)).id
    return (
        ("role_name", name),
        ("kind", "insurer" if kind == "insurer" else "agency"),
        ("agency_id", agency),
        ("insurer_id", insurer),
    )


def _principal(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """Delete a principal row (its role stays until provisioning prunes it, and must see nothing
    meanwhile), remap one (delete, provision, insert under the same name, provision), put a deleted
    row back before provisioning (its role was provisioned for exactly that row), add one, provision.
    Provisioning is assumed to prune, and re-adds a default principal deleted before it."""
    action = draw(st.sampled_from(("delete", "remap", "undelete", "add", "provision")))
    provision: Step = (Provision(),)
    if action == "undelete" and orphans:
        p = orphans[draw(st.sampled_from(sorted(orphans)))]
        values: Assignments = (
            ("role_name", p.role_name),
            ("kind", p.kind),
            ("agency_id", p.agency_id),
            ("insurer_id", p.insurer_id),
        )
        return [(Insert("principal", (values,)),)]
    if action in ("delete", "remap") and w.principal:
        p = draw(st.sampled_from(w.principal))
        delete: Step = (Delete("principal", (("role_name", p.role_name),)),)
        if action == "delete" or not p.role_name.startswith("staff_"):  # a default name keeps its mapping
            return [delete, provision] if draw(st.booleans()) else [delete]
        insert: Step = (Insert("principal", (_principal_values(draw, w, p.role_name),)),)
        return [delete, provision, insert, provision]
    if action == "add":
        taken = {p.role_name for p in w.principal} | set(orphans)
        name = next(f"staff_x{k}" for k in range(1, len(taken) + 2) if f"staff_x{k}" not in taken)
        insert = (Insert("principal", (_principal_values(draw, w, name),)),)
        return [insert, provision] if draw(st.integers(0, 3)) else [insert]
    return [provision]


def _customer(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """Contact columns, or the prospect's registering agency."""
    if not w.customer:
        return []
    c = draw(st.sampled_from(w.customer))
    if draw(st.booleans()):
        values: Assignments = (
            ("phone", f"090-{draw(st.integers(0, 9999)):04d}"),
            ("email", draw(st.none() | st.just(f"customer{c.id}@example.com"))),
        )
    else:
        values = (("registered_by_agency_id", draw(st.none() | _agency_ids(w))),)
    return [(Update("customer", values, _where_id(c.id)),)]


def _garbage(draw: st.DrawFn, w: World, orphans: dict[str, Principal]) -> list[Step]:
    """A loader writes the copied handler links (scope columns the spec does not list): another
    agency, nothing, or every link valid forever; alone, with a real change, or on a new row."""
    agency = draw(_agency_ids(w))
    insurer = draw(st.sampled_from(w.insurer)).id
    forever = Raw("array_fill('(,)'::tstzrange, ARRAY[cardinality(handler_agency_ids)])")
    contract_agency: Assignments = (
        ("handler_agency_ids", Raw(f"'{{{agency}}}'")),
        ("handler_windows", Raw("ARRAY['(,)'::tstzrange]")),
    )
    customer_agency: Assignments = (
        ("handler_agency_ids", Raw(f"'{{{agency}}}'")),
        ("handler_insurer_ids", Raw(f"'{{{insurer}}}'")),
        ("handler_windows", Raw("ARRAY['(,)'::tstzrange]")),
        ("party_insurer_ids", Raw(f"'{{{insurer}}}'")),
    )
    target = draw(
        st.sampled_from(
            (
                "contract",
                "customer",
                "contract_with_party",
                "every_contract",
                "new_customer",
                "every_customer",
            )
        )
    )
    if target == "new_customer":
        customer_id = _next_id(w.customer)
        values: Assignments = (
            ("id", customer_id),
            ("full_name", f"Customer {customer_id}"),
            *customer_agency,
        )
        return [(Insert("customer", (values,)),)]
    if target in ("customer", "every_customer"):
        if not w.customer:
            return []
        what = draw(st.sampled_from(("agency", "nothing", "forever")))
        if what == "agency":
            values = customer_agency
        elif what == "nothing":
            values = tuple((c, Raw("'{}'")) for c, _ in customer_agency)
        else:
            values = (("handler_windows", forever),)
        where = _where_id(draw(st.sampled_from(w.customer)).id) if target == "customer" else ()
        return [(Update("customer", values, where),)]
    if not w.contract:
        return []
    what = draw(st.sampled_from(("agency", "nothing", "forever")))
    if what == "agency":
        values = contract_agency
    elif what == "nothing":
        values = (("handler_agency_ids", Raw("'{}'")), ("handler_windows", Raw("'{}'")))
    else:
        values = (("handler_windows", forever),)
    c = draw(st.sampled_from(w.contract))
    if target == "contract_with_party":
        values += (("policyholder_id", draw(_customer_or_none(w))),)
    return [(Update("contract", values, _where_id(c.id) if target != "every_contract" else ()),)]


#: Families of writes, drawn with these weights (shrinking moves towards the first ones).
WRITE_FAMILIES: tuple[Family, ...] = (
    _handler_window,
    _handler_window,
    _handler_insert,
    _handler_move,
    _handler_delete,
    _handler_many,
    _handler_sync,
    _contract_party,
    _contract_party,
    _entrustment,
    _entrustment,
    _supervision,
    _supervision,
    _principal,
    _principal,
    _garbage,
    _garbage,
    _customer,
    _contract_insurer,
    _contract_delete,
    _contract_insert,
    _handler_truncate,
)


@st.composite
def write_steps(draw: st.DrawFn, world: World, max_steps: int = 6) -> tuple[Step, ...]:
    """Up to ``max_steps`` draws of a family of writes on ``world`` as the previous ones left it;
    now and then a write joins the previous step's transaction."""
    planned = world
    orphans: dict[str, Principal] = {}  # deleted principal rows whose roles provisioning has not pruned
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, max_steps))):
        for _attempt in range(3):  # a family may find nothing to write to (no handler rows left, ...)
            new = draw_family(draw, planned, orphans)
            if new:
                break
        else:  # a world always has an agency and an insurer
            new = _entrustment_insert(draw, planned, orphans)
        for k, step in enumerate(new):
            before = planned.principal
            planned = apply_step(planned, step, ANCHOR)  # planning needs ids only: any now will do
            planned.check()
            names = {p.role_name for p in planned.principal}
            if is_provision(step):
                orphans.clear()
            orphans.update((p.role_name, p) for p in before if p.role_name not in names)
            for name in names & set(orphans):
                del orphans[name]
            joinable = k == 0 and len(new) == 1 and steps and not is_provision(steps[-1])
            if joinable and not is_provision(step) and draw(st.integers(0, 4)) == 0:
                steps[-1] += step
            else:
                steps.append(step)
    return tuple(steps)


def draw_family(draw: st.DrawFn, world: World, orphans: dict[str, Principal]) -> list[Step]:
    """One family's steps on ``world`` (none when the world lacks the rows it needs)."""
    family = draw(st.sampled_from(WRITE_FAMILIES))
    return family(draw, world, orphans)


@st.composite
def worlds_with_writes(draw: st.DrawFn, max_steps: int = 6) -> tuple[World, tuple[Step, ...]]:
    """A random world and a sequence of loader writes to apply to it once loaded."""
    world = draw(worlds())
    return world, draw(write_steps(world, max_steps))

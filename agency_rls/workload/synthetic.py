"""A synthetic agency world at scale, generated from a seed as streams of rows.

``Blueprint.build(scale, seed, as_of)`` decides the small tables and the shape of the world in
memory (insurers, agencies and their Zipf-like sizes, supervision, entrustments, households);
the large tables (customers, contracts, handler links, notices, receipts) are then generated as
iterators of rows, one table after the other, so that a loader never holds more than a chunk of
rows. What a later table needs of an earlier one is kept in compact typed arrays (a few bytes per
contract: insurer, handling agency, link window, policyholder), not as rows.

Deterministic: every table draws from its own ``random.Random`` seeded with the seed and the
table's name, and every date is an offset from ``as_of`` (the world's "today"), so the same
seed and ``as_of`` give the same rows, and a change to how one table is generated leaves the
others alone.

What the world exercises (scope-rules.md):

- 20 insurers: two operators (``NL`` non-life, ``LF`` life; their contracts are ``direct``) and
  18 gateway insurers ``G01``..``G18`` whose contracts arrive through the gateway (about 20%);
- agencies of Zipf-like sizes (the largest handles about 2% of the contracts), each entrusted by
  a few insurers; some handle contracts of an insurer whose entrustment ended, starts in the
  future or never existed (their own contracts they may not read: the entrustment guard);
- supervising agencies (the largest among them) with 10-50 working agencies each; two supervising
  agencies that are themselves working agencies of the largest (supervision is not transitive);
  supervision rows that ended, and moves to another supervisor scheduled in the future; under
  every supervising agency one working agency lacks an entrustment the supervisor holds (the
  incident: notices addressed to the supervisor from that insurer must stay hidden from it);
- households of customers (policyholder and insured), prospects an agency registered;
- renewal chains (``previous_contract_id``; the old generation's handler link closed at the
  renewal, some renewals moved to another agency), lapsed contracts (expired validity, some links
  closed), contracts starting in the future, joint handlers, transfers to another agency
  scheduled in the future (a link that starts in the future);
- notices of every kind: those about a contract by the contract's insurer, addressed to the
  handling agency or its supervisor; customer-only notices; messages and general notices;
  receipts by the addressees;
- restricted (seconded) principals ``staff_<insurer>_at_<agency>``; the default principals of every
  agency and insurer are left to ``provision``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

__all__ = ["SCALES", "Blueprint", "Scale", "solve_zipf_exponent"]


@dataclass(frozen=True)
class Scale:
    """How big a world is. Counts are exact: the loaded tables hold exactly these many rows."""

    name: str
    contracts: int
    customers: int
    agencies: int
    supervising_agencies: int
    notices: int
    seconded_principals: int
    working_per_supervisor: tuple[int, int] = (10, 50)
    largest_agency_share: float = 0.02  # of all contracts, for the largest agency
    gateway_share: float = 0.20  # of all contracts, from the 18 gateway insurers
    receipt_share: float = 0.15  # of the notices, read by their addressee

    def __post_init__(self) -> None:
        if min(self.customers, self.agencies, self.supervising_agencies) < 1:
            raise ValueError(
                f"scale {self.name!r}: customers, agencies and supervising agencies must be at least 1"
            )
        if min(self.contracts, self.notices, self.seconded_principals) < 0:
            raise ValueError(f"scale {self.name!r}: counts cannot be negative")
        low, high = self.working_per_supervisor
        if not 1 <= low <= high:
            raise ValueError(
                f"scale {self.name!r}: working_per_supervisor must be (low, high) with 1 <= low <= high"
            )


SCALES: dict[str, Scale] = {
    scale.name: scale
    for scale in (
        # For tests: seconds, every rule exercised.
        Scale(
            "tiny",
            contracts=2_000,
            customers=700,
            agencies=100,
            supervising_agencies=2,
            notices=400,
            seconded_principals=3,
            working_per_supervisor=(10, 30),
        ),
        Scale(
            "small",
            contracts=100_000,
            customers=30_000,
            agencies=500,
            supervising_agencies=10,
            notices=20_000,
            seconded_principals=5,
        ),
        Scale(
            "medium",
            contracts=1_000_000,
            customers=300_000,
            agencies=2_000,
            supervising_agencies=40,
            notices=200_000,
            seconded_principals=8,
        ),
        # The numbers.
        Scale(
            "bench",
            contracts=10_000_000,
            customers=3_000_000,
            agencies=5_000,
            supervising_agencies=100,
            notices=2_000_000,
            seconded_principals=10,
        ),
    )
}

#: (code, name, line, kind, weight among its kind): operators' weights split the direct business,
#: gateway weights their share of the gateway business.
_OPERATORS = (("NL", "Nippon Non-Life", "non_life", 0.7), ("LF", "Nippon Life", "life", 0.3))
_GATEWAYS = 18
_GATEWAY_NON_LIFE = 12

#: A day offset meaning "no end" (``valid_to`` null) in the int16 window arrays.
OPEN = 32767
#: Day offsets the date caches cover (birth dates reach 95 years back, life contracts 30 years ahead).
_FIRST_DAY, _LAST_DAY = -35_000, 12_000

NOTICE_KINDS = ("pending_paperwork", "maturity_list", "renewal", "claim", "message", "general")
_NOTICE_WEIGHTS = (25, 20, 20, 8, 15, 12)
_NOTICE_BODIES = {
    "pending_paperwork": (
        "Paperwork pending: signature",
        "Paperwork pending: ID copy",
        "Paperwork pending: bank form",
    ),
    "maturity_list": ("Maturity list: due in 60 days", "Maturity list: due in 30 days"),
    "renewal": ("Renewal terms ready", "Renewal premium changed", "Renewal reminder"),
    "claim": ("Claim received", "Claim paid", "Claim: documents needed"),
    "message": ("System maintenance on Sunday", "New product briefing", "Office moved"),
    "general": ("Quarterly figures", "Compliance training", "Holiday schedule"),
}

_NON_LIFE_PRODUCTS = ("auto", "auto", "auto", "fire", "fire", "personal_accident", "liability", "travel")
_LIFE_PRODUCTS = ("whole_life", "term_life", "medical", "medical", "cancer", "annuity")
_LIFE_TERMS = (5, 10, 10, 15, 20, 30)  # years

# (romaji, katakana) pairs; given names with the gender recorded for them.
_SURNAMES = (
    ("Sato", "サトウ"),
    ("Suzuki", "スズキ"),
    ("Takahashi", "タカハシ"),
    ("Tanaka", "タナカ"),
    ("Ito", "イトウ"),
    ("Watanabe", "ワタナベ"),
    ("Yamamoto", "ヤマモト"),
    ("Nakamura", "ナカムラ"),
    ("Kobayashi", "コバヤシ"),
    ("Kato", "カトウ"),
    ("Yoshida", "ヨシダ"),
    ("Yamada", "ヤマダ"),
    ("Sasaki", "ササキ"),
    ("Yamaguchi", "ヤマグチ"),
    ("Matsumoto", "マツモト"),
    ("Inoue", "イノウエ"),
    ("Kimura", "キムラ"),
    ("Hayashi", "ハヤシ"),
    ("Shimizu", "シミズ"),
    ("Mori", "モリ"),
    ("Abe", "アベ"),
    ("Ikeda", "イケダ"),
    ("Hashimoto", "ハシモト"),
    ("Ishikawa", "イシカワ"),
)
_GIVEN = (
    ("Hanako", "ハナコ", "F"),
    ("Yuki", "ユキ", "F"),
    ("Aiko", "アイコ", "F"),
    ("Emi", "エミ", "F"),
    ("Keiko", "ケイコ", "F"),
    ("Naomi", "ナオミ", "F"),
    ("Sakura", "サクラ", "F"),
    ("Mai", "マイ", "F"),
    ("Haruka", "ハルカ", "F"),
    ("Yoko", "ヨウコ", "F"),
    ("Kenji", "ケンジ", "M"),
    ("Taro", "タロウ", "M"),
    ("Hiroshi", "ヒロシ", "M"),
    ("Akira", "アキラ", "M"),
    ("Daiki", "ダイキ", "M"),
    ("Kenta", "ケンタ", "M"),
    ("Makoto", "マコト", "M"),
    ("Shota", "ショウタ", "M"),
    ("Takeshi", "タケシ", "M"),
    ("Yuto", "ユウト", "M"),
)
_PLACES = (
    "Tokyo Chiyoda",
    "Tokyo Setagaya",
    "Tokyo Nerima",
    "Yokohama Naka",
    "Osaka Kita",
    "Osaka Tennoji",
    "Nagoya Naka",
    "Sapporo Chuo",
    "Fukuoka Hakata",
    "Kobe Chuo",
    "Kyoto Sakyo",
    "Sendai Aoba",
    "Hiroshima Naka",
    "Chiba Mihama",
    "Saitama Urawa",
    "Niigata Chuo",
)
_AGENCY_WORDS = (
    "Sakura",
    "Midori",
    "Aoba",
    "Hikari",
    "Fuji",
    "Minato",
    "Kaede",
    "Tsubasa",
    "Hoshi",
    "Nagomi",
)


def solve_zipf_exponent(n: int, largest_share: float) -> float:
    """The exponent s for which rank 1 of ``n`` gets ``largest_share`` of sum(r^-s, r=1..n).

    0 (equal sizes) when even that gives the largest more than asked (``largest_share <= 1/n``).
    """
    if n <= 1 or largest_share * n <= 1:
        return 0.0

    def share(s: float) -> float:
        return 1.0 / math.fsum(r**-s for r in range(1, n + 1))

    low, high = 0.0, 4.0
    for _ in range(60):
        mid = (low + high) / 2
        if share(mid) < largest_share:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class Insurer:
    id: int
    code: str
    name: str
    line: str
    kind: str
    weight: float


@dataclass
class Agency:
    id: int
    code: str
    name: str
    rank: int  # 0 = largest
    share: float  # of the households (so, about, of the contracts)
    entrusted: set[int] = field(default_factory=set)  # insurers with a currently valid entrustment
    handles_unentrusted: int | None = None  # an insurer it handles contracts of without entrustment
    unentrusted_why: str | None = None  # 'ended', 'future', 'none'
    # Per agency: which insurer a new chain is from (see Blueprint._insurer_tables).
    direct: tuple[Sequence[int], Sequence[float]] = ((), ())
    gateway: tuple[Sequence[int], Sequence[float]] = ((), ())
    gateway_probability: float = 0.0


@dataclass
class Days:
    """ISO strings of the days around ``as_of``, by offset (cached: formatting dates is slow)."""

    as_of: dt.date
    dates: list[str] = field(init=False)
    midnights: list[str] = field(init=False)

    def __post_init__(self) -> None:
        first = self.as_of + dt.timedelta(days=_FIRST_DAY)
        self.dates = [(first + dt.timedelta(days=i)).isoformat() for i in range(_LAST_DAY - _FIRST_DAY + 1)]
        self.midnights = [f"{d} 00:00:00+00" for d in self.dates]

    def date(self, offset: int) -> str:
        return self.dates[offset - _FIRST_DAY]

    def midnight(self, offset: int) -> str | None:
        """``valid_from``/``valid_to`` of a window offset; None for ``OPEN``."""
        return None if offset == OPEN else self.midnights[offset - _FIRST_DAY]


def _draw(rng: random.Random, items: Sequence[int], cumulative: Sequence[float]) -> int:
    """One of ``items`` by cumulative weights."""
    return items[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _sample_weighted(rng: random.Random, items: Sequence[int], weights: Sequence[float], k: int) -> list[int]:
    """``k`` distinct items, each drawn in proportion to its weight among those left."""
    pool, pool_weights, chosen = list(items), list(weights), []
    for _ in range(min(k, len(pool))):
        index = bisect.bisect(list(accumulate(pool_weights)), rng.random() * math.fsum(pool_weights))
        index = min(index, len(pool) - 1)
        chosen.append(pool.pop(index))
        pool_weights.pop(index)
    return chosen


def _count(share: float, population: int, minimum: int = 1) -> int:
    """round(share * population), at least ``minimum`` (so that a tiny world has one of each)."""
    return min(population, max(minimum, round(share * population)))


@dataclass
class Blueprint:
    """The world's shape, in memory; the big tables are generated from it by the ``*_rows`` methods."""

    scale: Scale
    seed: int
    as_of: dt.date
    insurers: list[Insurer]
    agencies: list[Agency]  # index = id - 1
    supervision: list[tuple[int, int, int, int, int]]  # id, supervising, working, from, to (offsets)
    entrustment: list[tuple[int, int, int, int, int]]  # id, agency, insurer, from, to
    supervisor_of: dict[int, int]  # working agency -> its currently valid supervisor
    working_of: dict[int, list[int]]  # supervising agency -> its currently valid working agencies
    household_first: array  # first customer id of each household
    household_size: array
    household_agency: array
    seconded: list[tuple[str, int, int]]  # role name (without prefix), agency, insurer
    days: Days
    agency_cumulative: list[float]
    entrusted_agencies: dict[int, tuple[list[int], list[float]]]  # insurer -> agencies, cumulative weights
    # Filled by contract_rows(), read by the later tables (compact: a few bytes per contract).
    contract_insurer: array = field(default_factory=lambda: array("B"))
    contract_agency: array = field(default_factory=lambda: array("I"))
    contract_holder: array = field(default_factory=lambda: array("I"))
    link_from: array = field(default_factory=lambda: array("h"))
    link_to: array = field(default_factory=lambda: array("h"))
    extra_links: dict[int, list[tuple[int, str, int, int]]] = field(default_factory=dict)
    handler_count: int = 0
    receipts: array = field(default_factory=lambda: array("q"))  # notice id, agency, read_at seconds, ...
    stats: dict[str, int] = field(default_factory=dict)

    # -- the shape -----------------------------------------------------------------------------

    @classmethod
    def build(cls, scale: Scale, seed: int, as_of: dt.date) -> Blueprint:
        rng = random.Random(f"agency-rls seed {seed} structure")
        insurers = _insurers()
        agencies = _agencies(rng, scale)
        supervisor_of, working_of, supervision = _supervision(rng, scale, agencies)
        entrustment = _entrustments(rng, agencies, insurers, working_of)
        _insurer_tables(agencies, insurers, scale.gateway_share)
        households = _households(random.Random(f"agency-rls seed {seed} households"), scale, agencies)
        cumulative = list(accumulate(a.share for a in agencies))
        entrusted: dict[int, tuple[list[int], list[float]]] = {}
        for insurer in insurers:
            members = [a for a in agencies if insurer.id in a.entrusted]
            entrusted[insurer.id] = ([a.id for a in members], list(accumulate(a.share for a in members)))
        blueprint = cls(
            scale=scale,
            seed=seed,
            as_of=as_of,
            insurers=insurers,
            agencies=agencies,
            supervision=supervision,
            entrustment=entrustment,
            supervisor_of=supervisor_of,
            working_of=working_of,
            household_first=households[0],
            household_size=households[1],
            household_agency=households[2],
            seconded=_seconded(rng, scale, agencies, insurers),
            days=Days(as_of),
            agency_cumulative=cumulative,
            entrusted_agencies=entrusted,
        )
        blueprint.stats = {"households": len(households[0])}
        return blueprint

    # -- small tables ----------------------------------------------------------------------------

    def insurer_rows(self) -> Iterator[tuple[object, ...]]:
        for i in self.insurers:
            yield (i.id, i.code, i.name, i.line, i.kind)

    def agency_rows(self) -> Iterator[tuple[object, ...]]:
        for a in self.agencies:
            yield (a.id, a.code, a.name)

    def supervision_rows(self) -> Iterator[tuple[object, ...]]:
        midnight = self.days.midnight
        for row_id, supervising, working, start, end in self.supervision:
            yield (row_id, supervising, working, midnight(start), midnight(end))

    def entrustment_rows(self) -> Iterator[tuple[object, ...]]:
        midnight = self.days.midnight
        for row_id, agency, insurer, start, end in self.entrustment:
            yield (row_id, agency, insurer, midnight(start), midnight(end))

    def principal_rows(self, prefix: str) -> Iterator[tuple[object, ...]]:
        """The restricted (seconded) principals; ``provision`` adds every agency's and insurer's own."""
        for name, agency, insurer in self.seconded:
            yield (prefix + name, "agency", agency, insurer)

    # -- customers -------------------------------------------------------------------------------

    def customer_rows(self) -> Iterator[tuple[object, ...]]:
        """Households: members share surname, address and agency; some are prospects it registered."""
        rng = random.Random(f"agency-rls seed {self.seed} customer")
        rand = rng.random
        date = self.days.date
        surnames, given, places = _SURNAMES, _GIVEN, _PLACES
        prospects = 0
        for first, size, agency in zip(
            self.household_first, self.household_size, self.household_agency, strict=True
        ):
            surname, surname_kana = surnames[int(rand() * len(surnames))]
            address = f"{places[int(rand() * len(places))]} {1 + int(rand() * 9)}-{1 + int(rand() * 30)}-{1 + int(rand() * 20)}"
            phone = f"0{3 + int(rand() * 96)}-{1000 + int(rand() * 9000)}-{1000 + int(rand() * 9000)}"
            fax = phone[:-4] + f"{1000 + int(rand() * 9000)}" if rand() < 0.05 else None
            age = 25 + int(rand() * 60)
            for member in range(size):
                customer_id = first + member
                name, name_kana, gender = given[int(rand() * len(given))]
                born = -(age * 365 + int(rand() * 365)) if member < 2 else -(int(rand() * 25 * 365) + 1)
                registered = agency if rand() < 0.04 else None
                prospects += registered is not None
                yield (
                    customer_id,
                    f"{surname} {name}",
                    f"{surname_kana} {name_kana}",
                    address,
                    phone if member == 0 or rand() < 0.5 else None,
                    fax if member == 0 else None,
                    f"c{customer_id}@example.jp" if rand() < 0.4 else None,
                    date(born),
                    gender if rand() < 0.95 else None,
                    registered,
                )
        self.stats["prospects"] = prospects

    # -- contracts -------------------------------------------------------------------------------

    def contract_rows(self) -> Iterator[tuple[object, ...]]:
        """Renewal chains, household after household (a household's contracts are adjacent ids).

        Fills the arrays the handler and notice streams read. Household order keeps each
        statement of a chunked load touching its own customers (triggers that refresh customers
        per statement then refresh each once).
        """
        rng = random.Random(f"agency-rls seed {self.seed} contract")
        rand = rng.random
        date = self.days.date
        total = self.scale.contracts
        insurers = {i.id: i for i in self.insurers}
        agencies = self.agencies
        agency_ids = [a.id for a in agencies]
        agency_cumulative = self.agency_cumulative
        supervisor_of = self.supervisor_of
        entrusted_agencies = self.entrusted_agencies
        forced = {a.id: a.handles_unentrusted for a in agencies if a.handles_unentrusted is not None}
        c_insurer, c_agency, c_holder = self.contract_insurer, self.contract_agency, self.contract_holder
        l_from, l_to, extras = self.link_from, self.link_to, self.extra_links
        for column in (c_insurer, c_agency, c_holder, l_from, l_to):
            column.append(0)  # index 0: ids start at 1
        households = len(self.household_first)
        generations_mean = 0.75 * 1.95 + 0.25 * 1.1
        chains_per_household = total / max(1, households) / generations_mean
        stats = dict.fromkeys(
            ("gateway", "renewals", "moved_on_renewal", "lapsed", "starting_later", "joint", "transfers"), 0
        )
        handlers = 0
        contract_id = 0
        chain = 0
        household = 0
        while contract_id < total:
            first = self.household_first[household]
            size = self.household_size[household]
            home = self.household_agency[household]
            household = (household + 1) % households
            chains = int(rng.expovariate(1.0 / chains_per_household) + 0.5) if chains_per_household > 0 else 1
            for _ in range(chains):
                if contract_id >= total:
                    break
                chain += 1
                agency_id = home if rand() < 0.88 else _draw(rng, agency_ids, agency_cumulative)
                agency = agencies[agency_id - 1]
                insurer_id = forced.pop(agency_id, None)
                if insurer_id is None:
                    table = agency.gateway if rand() < agency.gateway_probability else agency.direct
                    insurer_id = _draw(rng, table[0], table[1])
                insurer = insurers[insurer_id]
                life = insurer.line == "life"
                gateway = insurer.kind == "gateway"
                holder = first + int(rand() * size)
                insured = holder if rand() < 0.7 else first + int(rand() * size)
                if life:
                    product = _LIFE_PRODUCTS[int(rand() * len(_LIFE_PRODUCTS))]
                    period = 365 * _LIFE_TERMS[int(rand() * len(_LIFE_TERMS))]
                    generations = 1 if rand() < 0.9 else 2
                else:
                    product = _NON_LIFE_PRODUCTS[int(rand() * len(_NON_LIFE_PRODUCTS))]
                    period = 365
                    u = rand()
                    generations = 1 if u < 0.45 else 2 if u < 0.7 else 3 if u < 0.85 else 4 if u < 0.95 else 5
                generations = min(generations, total - contract_id)
                lapsed = rand() < 0.10
                if lapsed:
                    last_start = -(period + 30 + int(rand() * 970))
                elif rand() < 0.08:
                    last_start = 1 + int(rand() * 45)
                else:
                    last_start = -int(rand() * (period - 1))
                code = insurer.code
                beneficiary = None
                if life:
                    beneficiary = (
                        f"{_SURNAMES[int(rand() * len(_SURNAMES))][0]} {_GIVEN[int(rand() * len(_GIVEN))][0]}"
                    )
                previous = None
                for generation in range(generations):
                    contract_id += 1
                    start = last_start - (generations - 1 - generation) * period
                    last = generation == generations - 1
                    if generation and rand() < 0.05:  # renewed at another agency entrusted by the insurer
                        candidates = entrusted_agencies[insurer_id]
                        if candidates[0]:
                            agency_id = _draw(rng, candidates[0], candidates[1])
                            stats["moved_on_renewal"] += 1
                    link_start = start - int(rand() * 31)
                    if not last:
                        link_end = start + period  # closed when the next generation starts
                    elif lapsed and rand() < 0.6:
                        link_end = start + period + int(rand() * 181)
                    else:
                        link_end = OPEN
                    if last and not lapsed and link_end == OPEN and rand() < 0.01:
                        # Scheduled transfer: this agency until a day ahead, another one from then.
                        handover = 5 + int(rand() * 116)
                        candidates = entrusted_agencies[insurer_id]
                        successor = _draw(rng, candidates[0], candidates[1]) if candidates[0] else agency_id
                        if successor != agency_id:
                            link_end = handover
                            extras.setdefault(contract_id, []).append((successor, "primary", handover, OPEN))
                            stats["transfers"] += 1
                            handlers += 1
                    if last and rand() < 0.04:
                        joint = supervisor_of.get(agency_id) if rand() < 0.5 else None
                        if joint is None:
                            joint = _draw(rng, agency_ids, agency_cumulative)
                        if joint != agency_id:
                            extras.setdefault(contract_id, []).append((joint, "joint", link_start, link_end))
                            stats["joint"] += 1
                            handlers += 1
                    handlers += 1
                    c_insurer.append(insurer_id)
                    c_agency.append(agency_id)
                    c_holder.append(holder)
                    l_from.append(link_start)
                    l_to.append(link_end)
                    stats["gateway"] += gateway
                    stats["renewals"] += previous is not None
                    stats["lapsed"] += lapsed and last
                    stats["starting_later"] += start > 0
                    premium = (3 + int(rand() * 40)) * 1000 if life else (8 + int(rand() * 200)) * 500
                    yield (
                        contract_id,
                        insurer_id,
                        f"{code}-{chain:08d}-{generation + 1}",
                        previous,
                        product,
                        holder,
                        insured,
                        beneficiary,
                        date(start),
                        date(start + period),
                        premium,
                        rand() < 0.08,
                        rand() < (0.02 if life else 0.06),
                        "gateway" if gateway else "direct",
                    )
                    previous = contract_id
        self.handler_count = handlers
        self.stats.update(stats)

    def handler_rows(self) -> Iterator[tuple[object, ...]]:
        """One link per contract generation (plus joint handlers and scheduled successors)."""
        midnight = self.days.midnight
        extras = self.extra_links
        handler_id = 0
        for contract_id in range(1, len(self.contract_agency)):
            handler_id += 1
            yield (
                handler_id,
                contract_id,
                self.contract_agency[contract_id],
                "primary",
                midnight(self.link_from[contract_id]),
                midnight(self.link_to[contract_id]),
            )
            for agency_id, role, start, end in extras.get(contract_id, ()):
                handler_id += 1
                yield (handler_id, contract_id, agency_id, role, midnight(start), midnight(end))

    def handled(self) -> tuple[array, array]:
        """Per agency id: the contracts it handles at ``as_of`` (a link valid then), and those it has a link to."""
        now = array("I", bytes(4 * (len(self.agencies) + 1)))
        ever = array("I", bytes(4 * (len(self.agencies) + 1)))
        agency, start, end = self.contract_agency, self.link_from, self.link_to
        for contract_id in range(1, len(agency)):
            ever[agency[contract_id]] += 1
            if start[contract_id] <= 0 < end[contract_id]:
                now[agency[contract_id]] += 1
        for links in self.extra_links.values():
            for agency_id, _, link_start, link_end in links:
                ever[agency_id] += 1
                if link_start <= 0 < link_end:
                    now[agency_id] += 1
        return now, ever

    # -- notices ---------------------------------------------------------------------------------

    def notice_rows(self) -> Iterator[tuple[object, ...]]:
        """Notices of every kind; contract notices by the contract's insurer, to its agency or supervisor."""
        rng = random.Random(f"agency-rls seed {self.seed} notice")
        rand = rng.random
        date = self.days.date
        contracts = len(self.contract_agency) - 1
        agency_ids = [a.id for a in self.agencies]
        agencies = self.agencies
        supervisor_of = self.supervisor_of
        kinds = list(range(len(NOTICE_KINDS)))
        kind_cumulative = list(accumulate(_NOTICE_WEIGHTS))
        receipts = self.receipts
        receipt_share = self.scale.receipt_share
        customer_only = 0
        for notice_id in range(1, self.scale.notices + 1):
            kind = NOTICE_KINDS[_draw(rng, kinds, kind_cumulative)]
            contract_id = customer_id = None
            if kind in ("message", "general") or contracts == 0:
                agency_id = _draw(rng, agency_ids, self.agency_cumulative)
                entrusted = sorted(agencies[agency_id - 1].entrusted)
                insurer_id = entrusted[int(rand() * len(entrusted))] if entrusted else 1
                addressee = agency_id
                if kind not in ("message", "general"):
                    kind = "general"
            else:
                contract = 1 + int(rand() * contracts)
                insurer_id = self.contract_insurer[contract]
                agency_id = self.contract_agency[contract]
                supervisor = supervisor_of.get(agency_id)
                addressee = supervisor if supervisor is not None and rand() < 0.25 else agency_id
                holder = self.contract_holder[contract]
                if kind == "pending_paperwork" and rand() < 0.1:
                    customer_id = holder  # about the customer, not a contract
                    customer_only += 1
                else:
                    contract_id = contract
                    if kind == "claim" or (kind == "pending_paperwork" and rand() < 0.3):
                        customer_id = holder
            bodies = _NOTICE_BODIES[kind]
            day = -(1 + int(rand() * 400))
            second = int(rand() * 86_400)
            created = f"{date(day)} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00"
            if day <= -11 and rand() < receipt_share:
                receipts.extend(
                    (notice_id, addressee, day * 86_400 + second + 3_600 + int(rand() * 9 * 86_400))
                )
            yield (
                notice_id,
                insurer_id,
                addressee,
                kind,
                contract_id,
                customer_id,
                bodies[int(rand() * len(bodies))],
                created,
            )
        self.stats["customer_only_notices"] = customer_only

    def receipt_rows(self) -> Iterator[tuple[object, ...]]:
        date = self.days.date
        receipts = self.receipts
        for index in range(0, len(receipts), 3):
            notice_id, agency_id, at = receipts[index], receipts[index + 1], receipts[index + 2]
            day, second = divmod(at, 86_400)
            yield (
                index // 3 + 1,
                notice_id,
                agency_id,
                f"{date(day)} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00",
            )

    @property
    def receipt_count(self) -> int:
        return len(self.receipts) // 3


# -- the shape, step by step ------------------------------------------------------------------------


def _insurers() -> list[Insurer]:
    insurers = [
        Insurer(index + 1, code, name, line, "operator", weight)
        for index, (code, name, line, weight) in enumerate(_OPERATORS)
    ]
    for k in range(1, _GATEWAYS + 1):
        line = "non_life" if k <= _GATEWAY_NON_LIFE else "life"
        insurers.append(
            Insurer(
                len(insurers) + 1,
                f"G{k:02d}",
                f"Gateway {'Non-Life' if line == 'non_life' else 'Life'} {k:02d}",
                line,
                "gateway",
                1.0 / k**0.8,
            )
        )
    return insurers


def _agencies(rng: random.Random, scale: Scale) -> list[Agency]:
    n = scale.agencies
    exponent = solve_zipf_exponent(n, scale.largest_agency_share)
    weights = [(rank + 1) ** -exponent for rank in range(n)]
    total = math.fsum(weights)
    ranks = list(range(n))
    rng.shuffle(ranks)
    return [
        Agency(
            id=index + 1,
            code="",
            name=f"{_AGENCY_WORDS[rng.randrange(len(_AGENCY_WORDS))]} Agency {index + 1}",
            rank=rank,
            share=weights[rank] / total,
        )
        for index, rank in enumerate(ranks)
    ]


def _supervision(
    rng: random.Random, scale: Scale, agencies: list[Agency]
) -> tuple[dict[int, int], dict[int, list[int]], list[tuple[int, int, int, int, int]]]:
    """Supervising agencies (the largest first), their working agencies, and the supervision rows."""
    by_rank = sorted(agencies, key=lambda a: a.rank)
    n = len(agencies)
    lo, hi = scale.working_per_supervisor
    wanted = max(1, min(scale.supervising_agencies, n // (lo + 1)))
    supervising = [by_rank[0].id]
    top = [a.id for a in by_rank[1 : max(2, n // 20)]]
    supervising += rng.sample(top, min(len(top), (wanted - 1) // 2))
    chosen = set(supervising)
    rest = [a.id for a in agencies if a.id not in chosen]
    supervising += rng.sample(rest, wanted - len(supervising))
    nested = supervising[-2:] if wanted >= 4 else []  # supervising agencies that also work under the largest
    chosen = set(supervising)
    pool = [a.id for a in agencies if a.id not in chosen]
    rng.shuffle(pool)
    working_of: dict[int, list[int]] = {}
    for index, supervisor in enumerate(supervising):
        left = wanted - index - 1
        count = rng.randint(lo, hi - (len(nested) if index == 0 else 0))
        count = max(1, min(count, len(pool) - lo * left))
        working_of[supervisor], pool = pool[:count], pool[count:]
    working_of[supervising[0]] += nested
    supervisor_of = {w: s for s, ws in working_of.items() for w in ws}
    for a in agencies:
        letter = "S" if a.id in working_of else "W" if a.id in supervisor_of else "A"
        a.code = f"{letter}{a.id:05d}"
    rows: list[tuple[int, int, int, int, int]] = []
    links = [(s, w) for s, ws in working_of.items() for w in ws]
    moved_before = set(rng.sample(range(len(links)), _count(0.10, len(links))))
    moving_later = set(rng.sample(range(len(links)), _count(0.03, len(links))))
    for index, (supervisor, working) in enumerate(links):
        start = -(365 + rng.randrange(14 * 365))
        others = [s for s in supervising if s not in (supervisor, working)]
        if index in moved_before and others:
            rows.append((0, rng.choice(others), working, start - 365 - rng.randrange(9 * 365), start))
        if index in moving_later and others:
            handover = 10 + rng.randrange(170)
            rows.append((0, supervisor, working, start, handover))
            rows.append((0, rng.choice(others), working, handover, OPEN))
        else:
            rows.append((0, supervisor, working, start, OPEN))
    former = [a.id for a in agencies if a.id not in supervisor_of and a.id not in working_of]
    for working in rng.sample(former, _count(0.02, len(former))):
        end = -(30 + rng.randrange(2000))
        rows.append((0, rng.choice(supervising), working, end - 365 - rng.randrange(3000), end))
    return supervisor_of, working_of, [(i + 1, *row[1:]) for i, row in enumerate(rows)]


def _entrustments(
    rng: random.Random, agencies: list[Agency], insurers: list[Insurer], working_of: dict[int, list[int]]
) -> list[tuple[int, int, int, int, int]]:
    """Who entrusts whom now, plus ended, ending and future entrustments; the unentrusted handlers."""
    n = len(agencies)
    gateways = [i for i in insurers if i.kind == "gateway"]
    non_life, life = insurers[0].id, insurers[1].id
    for agency in agencies:
        if rng.random() < 0.96:
            agency.entrusted.add(non_life)
        if rng.random() < 0.65:
            agency.entrusted.add(life)
        if agency.rank < max(1, n // 50):
            count = 6 + rng.randrange(5)
        else:
            u = rng.random()
            count = (
                0
                if u < 0.15
                else 1
                if u < 0.40
                else 2
                if u < 0.65
                else 3
                if u < 0.85
                else 4
                if u < 0.95
                else 5
            )
        agency.entrusted.update(
            _sample_weighted(rng, [g.id for g in gateways], [g.weight for g in gateways], count)
        )
    # The incident, under every supervising agency: a working agency without an entrustment the
    # supervisor holds (non-life), so that notices to the supervisor from it must stay hidden from it.
    for supervisor, working in working_of.items():
        boss = agencies[supervisor - 1]
        boss.entrusted.add(non_life)
        if working:
            lacking = agencies[working[0] - 1]
            lacking.entrusted.discard(non_life)
            if not lacking.entrusted:
                lacking.entrusted.add(life if life not in boss.entrusted else gateways[-1].id)
    for agency in agencies:
        if not agency.entrusted:
            agency.entrusted.add(non_life)
    rows: list[tuple[int, int, int, int, int]] = []
    for agency in agencies:
        for insurer in sorted(agency.entrusted):
            start = -(365 + rng.randrange(19 * 365))
            if rng.random() < 0.08:  # an earlier entrustment that ended
                rows.append(
                    (0, agency.id, insurer, start - 365 - rng.randrange(10 * 365), start - rng.randrange(365))
                )
            rows.append(
                (0, agency.id, insurer, start, 30 + rng.randrange(335) if rng.random() < 0.03 else OPEN)
            )
    # Agencies handling contracts of an insurer that does not entrust them now: the entrustment
    # ended, starts in the future, or never existed. Chosen among the larger half, so they do handle some.
    larger = [a for a in agencies if a.rank < max(3, n // 2)]
    for index, agency in enumerate(rng.sample(larger, _count(0.06, len(larger), minimum=3))):
        why = ("ended", "future", "none")[index % 3]
        candidates = [i.id for i in insurers if i.id not in agency.entrusted]
        if not candidates:
            continue
        insurer = rng.choice(candidates)
        agency.handles_unentrusted, agency.unentrusted_why = insurer, why
        if why == "ended":
            end = -(30 + rng.randrange(1000))
            rows.append((0, agency.id, insurer, end - 365 - rng.randrange(5000), end))
        elif why == "future":
            rows.append((0, agency.id, insurer, 10 + rng.randrange(190), OPEN))
    return [(i + 1, *row[1:]) for i, row in enumerate(rows)]


def _insurer_tables(agencies: list[Agency], insurers: list[Insurer], gateway_share: float) -> None:
    """Per agency: the insurers a new chain is from, direct and gateway, and how often gateway.

    The chance of a gateway contract is the same for every agency that handles both kinds, set so
    that gateway contracts make ``gateway_share`` of all (agencies of one kind only count as such).
    """
    by_id = {i.id: i for i in insurers}
    only_gateway = mixed = 0.0
    for agency in agencies:
        handled = set(agency.entrusted)
        if agency.handles_unentrusted is not None:
            handled.add(agency.handles_unentrusted)
        tables = {}
        for kind in ("operator", "gateway"):
            ids = sorted(i for i in handled if by_id[i].kind == kind)
            weights = [by_id[i].weight * (0.25 if i == agency.handles_unentrusted else 1.0) for i in ids]
            tables[kind] = (ids, list(accumulate(weights)))
        agency.direct, agency.gateway = tables["operator"], tables["gateway"]
        if agency.direct[0] and agency.gateway[0]:
            mixed += agency.share
        elif agency.gateway[0]:
            only_gateway += agency.share
    p = min(1.0, max(0.0, (gateway_share - only_gateway) / mixed)) if mixed else 0.0
    for agency in agencies:
        agency.gateway_probability = (p if agency.direct[0] else 1.0) if agency.gateway[0] else 0.0


def _households(rng: random.Random, scale: Scale, agencies: list[Agency]) -> tuple[array, array, array]:
    """Households (1-4 members, consecutive customer ids), each at a home agency drawn by size."""
    first, sizes, home = array("I"), array("B"), array("I")
    ids = [a.id for a in agencies]
    cumulative = list(accumulate(a.share for a in agencies))
    customer = 1
    while customer <= scale.customers:
        u = rng.random()
        size = min(1 if u < 0.45 else 2 if u < 0.75 else 3 if u < 0.9 else 4, scale.customers - customer + 1)
        first.append(customer)
        sizes.append(size)
        home.append(_draw(rng, ids, cumulative))
        customer += size
    return first, sizes, home


def _seconded(
    rng: random.Random, scale: Scale, agencies: list[Agency], insurers: list[Insurer]
) -> list[tuple[str, int, int]]:
    """Restricted principals: staff of an insurer seconded to a multi-insurer agency it entrusts."""
    by_id = {i.id: i for i in insurers}
    multi = sorted((a for a in agencies if len(a.entrusted) >= 2), key=lambda a: a.rank)
    chosen = multi[:1] + rng.sample(multi[1:], min(len(multi) - 1, scale.seconded_principals - 1))
    principals = []
    for agency in chosen[: scale.seconded_principals]:
        insurer = by_id[rng.choice(sorted(agency.entrusted))]
        principals.append((f"staff_{insurer.code.lower()}_at_{agency.code.lower()}", agency.id, insurer.id))
    return principals

"""The sample world: what ``agency-rls demo`` loads and what the test suite uses as its main fixture.

It replays the incident of ``scope-rules.md`` ("Why it exists") and the edges around it, small
enough to reason about by hand. ``EXPECTED`` is an independent, rule-by-rule reading of the spec
(derived from the spec text only, never from the SQL policies): for every principal and every
table, the exact rows that principal must see. Where the text leaves room for two readings, the
choice is stated in the notes R1-R5 above ``EXPECTED`` (the narrower reading wherever the text is
genuinely open) and the affected lines cite them.

Insurers (ids 1-5)::

    NL   non-life, operator  (the incident's N)
    LF   life,     operator  (the incident's L, NL's life subsidiary)
    GW1  non-life, gateway   (other insurers' data arriving through the joint gateway)
    GW2  life,     gateway
    GW3  non-life, gateway

Agencies (ids 1-9), supervision and entrustment ("valid" = valid now; history in brackets)::

    S1  supervising; entrusted by NL, LF, GW1, GW2                 (the incident's S)
    |-- W11  working; entrusted by NL only                          (the incident's W)
    |        [LF entrustment starts in 30 days]  [S1>W11 also has an ended earlier row]
    |-- W12  working; entrusted by NL, LF                           [S3>W12 ended a year ago]
    `-- S2   supervising, itself supervised by S1; entrusted by NL, GW3
        `-- W21  working; entrusted by NL, GW3                      [S3>W21 starts in 30 days]
            (chain S1 > S2 > W21 is NOT transitive: S1 gains nothing through W21)
    S3  supervising (contrast); entrusted by NL, LF                 [its GW2 entrustment expired]
    `-- W31  working; entrusted by NL, GW2
    M1  multi-insurer; entrusted by NL, GW1                         [its LF entrustment expired]
        principal staff_nl_at_m1: seconded from NL, restricted to NL
    E1  entrusted by nobody now [two expired NL entrustments], still holds an open handler link

Contracts (policy numbers are unique across the world) and their handlers::

    NL-1001  S1 (+ W11 joint from 30 days ahead)   LF-3001  S1          GW1-2001  S1
    NL-1002  S1                                    LF-3002  W12         GW1-2002  W12 (no GW1 entr.)
    NL-1003  W11                                   LF-3003  W11 (no LF) GW1-2003  M1
    NL-1004  W11 + W12 joint                       LF-3004  M1 (expired LF entrustment)
    NL-1005  W12 + W31 joint                       LF-3005  S1, source gateway
    NL-1006  M1                                    GW2-4001  S1         GW3-5001  W21
    NL-1007  W11, link starts in 30 days           GW2-4002  W31        GW3-5002  S2
    NL-1101  renewal generation 1: W12, link closed a month ago
    NL-1102  renewal generation 2 (previous NL-1101): W31
    NL-1201  W21    NL-1202  S2    NL-1301  S3    NL-1401  E1 (entrustment expired)

All contracts of NL and LF are ``direct`` except LF-3005; all GW* contracts are ``gateway``.

Incident cases replayed (``INCIDENT_CHECKS``):

1. W11 must not see S1's contracts it does not handle (NL-1001, NL-1002, ...), direct or gateway;
2. W11 must not see S1's gateway contracts (GW1-2001, GW2-4001) nor NL notices about them;
3. W11, without LF's entrustment, must not see any LF notice addressed to S1 (L01, L02, L03, L05) or
   to itself (L07), nor LF's customers, even for LF-3003 which W11 handles;
plus: renewal at another agency (W12 sees neither NL-1101 nor NL-1102), the seconded staff at M1
sees only NL business, insurer NL sees no GW1 gateway contract held by M1 or S1, the supervision
chain is not transitive, an expired entrustment removes everything (E1).

Customers: one per contract role listed in ``CUSTOMERS``; Ito Kenji appears at W11 (NL-1003) and
W12 (LF-3002, insured); Fujita Yuna at M1 under NL and GW1; Hayashi Nana in the W12/W31 joint
contract; prospects Yamamoto Kana and Yamaguchi Ryo (registered by W11; only the first is named
in a notice), Yoshida Taichi (M1), Watanabe Jun (S1).

Public API: ``load_sample_world``, ``EXPECTED``, ``PRINCIPALS``, ``TABLES``, ``key_query``,
``id_to_key``, ``visible_keys``, ``WRITES`` (``WriteCase``), ``INCIDENT_CHECKS``
(``IncidentCheck``), and the id maps ``INSURER_IDS``, ``AGENCY_IDS``, ``CUSTOMER_IDS``,
``CONTRACT_IDS``, ``NOTICE_IDS`` (notice label such as ``'N01'`` -> id) and ``NOTICE_BODIES``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, NamedTuple, TypedDict

import psycopg

from agency_rls.rls_policies.maintenance import advance_identity_sequences
from agency_rls.schema import ALL_TABLES

__all__ = [
    "AGENCY_IDS",
    "CONTRACT_IDS",
    "CUSTOMER_IDS",
    "EXPECTED",
    "INCIDENT_CHECKS",
    "INSURER_IDS",
    "NOTICE_BODIES",
    "NOTICE_IDS",
    "PRINCIPALS",
    "STAFF_ROLE",
    "TABLES",
    "WRITES",
    "IncidentCheck",
    "WriteCase",
    "id_to_key",
    "key_query",
    "load_sample_world",
    "visible_keys",
]

TABLES: tuple[str, ...] = ALL_TABLES

# ------------------------------------------------------------------------------------------------
# The world as data. Offsets are PostgreSQL interval strings added to now() at load time (None for
# an open valid_to), so the world stays valid whenever it is loaded.
# ------------------------------------------------------------------------------------------------


class Insurer(NamedTuple):
    id: int
    code: str
    name: str
    line: str
    kind: str


class Agency(NamedTuple):
    id: int
    code: str
    name: str


class Supervision(NamedTuple):
    id: int
    supervising: str
    working: str
    valid_from: str
    valid_to: str | None


class Entrustment(NamedTuple):
    id: int
    agency: str
    insurer: str
    valid_from: str
    valid_to: str | None


class Customer(NamedTuple):
    id: int
    full_name: str
    full_name_kana: str | None
    address: str | None
    phone: str | None
    fax: str | None
    email: str | None
    birth_date: dt.date | None
    gender: str | None
    registered_by: str | None  # agency code of a prospect's registering agency


class Contract(NamedTuple):
    id: int
    insurer: str
    policy_number: str
    previous: str | None  # policy number of the generation it renews
    product_type: str
    policyholder: str  # customer full_name
    insured: str | None  # customer full_name
    beneficiary_name: str | None
    starts: str  # offset from now, cast to date
    expires: str
    premium: int
    has_changes: bool
    has_claims: bool
    source: str


class Handler(NamedTuple):
    id: int
    policy_number: str
    agency: str
    role: str
    valid_from: str
    valid_to: str | None


class Notice(NamedTuple):
    id: int
    insurer: str
    addressee: str
    kind: str
    policy_number: str | None
    customer: str | None  # customer full_name
    body: str
    created: str


class Receipt(NamedTuple):
    id: int
    notice: str  # notice label, e.g. 'N02'
    agency: str
    read: str


INSURERS: tuple[Insurer, ...] = (
    Insurer(1, "NL", "Nippon Non-Life", "non_life", "operator"),
    Insurer(2, "LF", "Nippon Life", "life", "operator"),
    Insurer(3, "GW1", "Gateway Marine and Fire", "non_life", "gateway"),
    Insurer(4, "GW2", "Gateway Mutual Life", "life", "gateway"),
    Insurer(5, "GW3", "Gateway Casualty", "non_life", "gateway"),
)

AGENCIES: tuple[Agency, ...] = (
    Agency(1, "S1", "Sakura Supervising Agency"),
    Agency(2, "W11", "Wakaba Working Agency (under S1)"),
    Agency(3, "W12", "Kaede Working Agency (under S1)"),
    Agency(4, "S2", "Sugi Supervising Agency (under S1)"),
    Agency(5, "W21", "Hinoki Working Agency (under S2)"),
    Agency(6, "S3", "Matsu Supervising Agency"),
    Agency(7, "W31", "Take Working Agency (under S3)"),
    Agency(8, "M1", "Momiji Multi-Insurer Agency"),
    Agency(9, "E1", "Enoki Agency (entrustment ended)"),
)

SUPERVISIONS: tuple[Supervision, ...] = (
    Supervision(1, "S1", "W11", "-5 years", "-4 years"),  # an earlier, ended period of the same pair
    Supervision(2, "S1", "W11", "-3 years", None),
    Supervision(3, "S1", "W12", "-1 year", None),
    Supervision(4, "S1", "S2", "-2 years", None),  # chain S1 > S2 > W21
    Supervision(5, "S2", "W21", "-2 years", None),
    Supervision(6, "S3", "W31", "-2 years", None),
    Supervision(7, "S3", "W12", "-3 years", "-1 year"),  # ended: W12 moved from S3 to S1
    Supervision(8, "S3", "W21", "30 days", None),  # future
)

ENTRUSTMENTS: tuple[Entrustment, ...] = (
    Entrustment(1, "S1", "NL", "-5 years", None),
    Entrustment(2, "S1", "LF", "-5 years", None),
    Entrustment(3, "S1", "GW1", "-5 years", None),
    Entrustment(4, "S1", "GW2", "-5 years", None),
    Entrustment(5, "W11", "NL", "-3 years", None),
    Entrustment(6, "W11", "LF", "30 days", None),  # future: W11 is NOT entrusted by LF now
    Entrustment(7, "W12", "NL", "-3 years", None),
    Entrustment(8, "W12", "LF", "-3 years", None),
    Entrustment(9, "S2", "NL", "-4 years", None),
    Entrustment(10, "S2", "GW3", "-4 years", None),
    Entrustment(11, "W21", "NL", "-2 years", None),
    Entrustment(12, "W21", "GW3", "-2 years", None),
    Entrustment(13, "S3", "NL", "-4 years", None),
    Entrustment(14, "S3", "LF", "-4 years", None),
    Entrustment(15, "S3", "GW2", "-3 years", "-6 months"),  # expired
    Entrustment(16, "W31", "NL", "-2 years", None),
    Entrustment(17, "W31", "GW2", "-2 years", None),
    Entrustment(18, "M1", "NL", "-3 years", None),
    Entrustment(19, "M1", "GW1", "-3 years", None),
    Entrustment(20, "M1", "LF", "-4 years", "-1 year"),  # expired
    Entrustment(21, "E1", "NL", "-6 years", "-3 years"),  # expired, same pair twice
    Entrustment(22, "E1", "NL", "-2 years", "-2 months"),  # expired
)

CUSTOMERS: tuple[Customer, ...] = (
    Customer(
        1,
        "Aoki Haruto",
        "アオキ ハルト",
        "1-1 Chiyoda, Tokyo",
        "03-1111-0001",
        None,
        "haruto@example.jp",
        dt.date(1970, 4, 1),
        "male",
        None,
    ),
    Customer(
        2,
        "Aoki Mei",
        "アオキ メイ",
        "1-1 Chiyoda, Tokyo",
        "03-1111-0002",
        "03-1111-0099",
        None,
        dt.date(1972, 5, 2),
        "female",
        None,
    ),
    Customer(3, "Aoki Sota", None, "1-1 Chiyoda, Tokyo", None, None, None, dt.date(2005, 6, 3), "male", None),
    Customer(
        4,
        "Ito Kenji",
        "イトウ ケンジ",
        "2-2 Minato, Tokyo",
        "03-2222-0004",
        None,
        "kenji@example.jp",
        dt.date(1980, 7, 4),
        "male",
        None,
    ),
    Customer(
        5,
        "Ueda Sakura",
        "ウエダ サクラ",
        "3-3 Shibuya, Tokyo",
        "03-3333-0005",
        None,
        None,
        dt.date(1985, 8, 5),
        "female",
        None,
    ),
    Customer(
        6,
        "Endo Riku",
        "エンドウ リク",
        "4-4 Naka, Yokohama",
        "045-444-0006",
        None,
        "riku@example.jp",
        dt.date(1965, 9, 6),
        "male",
        None,
    ),
    Customer(
        7,
        "Ota Yui",
        "オオタ ユイ",
        "5-5 Kita, Osaka",
        "06-5555-0007",
        None,
        None,
        dt.date(1978, 10, 7),
        "female",
        None,
    ),
    Customer(
        8,
        "Kato Daiki",
        "カトウ ダイキ",
        "6-6 Chuo, Kobe",
        "078-666-0008",
        None,
        None,
        dt.date(1990, 11, 8),
        "male",
        None,
    ),
    Customer(
        9,
        "Kimura Hina",
        "キムラ ヒナ",
        "7-7 Sakae, Nagoya",
        "052-777-0009",
        None,
        "hina@example.jp",
        dt.date(1988, 12, 9),
        "female",
        None,
    ),
    Customer(
        10,
        "Kudo Ren",
        None,
        "8-8 Aoba, Sendai",
        "022-888-0010",
        None,
        None,
        dt.date(1975, 1, 10),
        "male",
        None,
    ),
    Customer(
        11,
        "Saito Mio",
        "サイトウ ミオ",
        "9-9 Hakata, Fukuoka",
        "092-999-0011",
        None,
        None,
        dt.date(1960, 2, 11),
        "female",
        None,
    ),
    Customer(
        12,
        "Sasaki Yuto",
        None,
        "10-1 Urawa, Saitama",
        "048-101-0012",
        None,
        None,
        dt.date(1982, 3, 12),
        "male",
        None,
    ),
    Customer(
        13,
        "Shimizu Rin",
        None,
        "11-1 Chiba, Chiba",
        "043-111-0013",
        None,
        "rin@example.jp",
        dt.date(1993, 4, 13),
        "female",
        None,
    ),
    Customer(
        14,
        "Suzuki Sora",
        None,
        "12-1 Kanazawa, Ishikawa",
        "076-121-0014",
        None,
        None,
        dt.date(1987, 5, 14),
        None,
        None,
    ),
    Customer(
        15,
        "Takahashi Aoi",
        None,
        "13-1 Naha, Okinawa",
        "098-131-0015",
        None,
        None,
        dt.date(1991, 6, 15),
        "female",
        None,
    ),
    Customer(
        16,
        "Tanaka Hiroshi",
        "タナカ ヒロシ",
        "14-1 Sapporo, Hokkaido",
        "011-141-0016",
        None,
        "hiroshi@example.jp",
        dt.date(1958, 7, 16),
        "male",
        None,
    ),
    Customer(
        17,
        "Nakamura Emi",
        None,
        "15-1 Hiroshima, Hiroshima",
        "082-151-0017",
        None,
        None,
        dt.date(1983, 8, 17),
        "female",
        None,
    ),
    Customer(
        18,
        "Nishida Kaito",
        None,
        "16-1 Matsuyama, Ehime",
        "089-161-0018",
        None,
        None,
        dt.date(1996, 9, 18),
        "male",
        None,
    ),
    Customer(
        19,
        "Hayashi Nana",
        "ハヤシ ナナ",
        "17-1 Kyoto, Kyoto",
        "075-171-0019",
        None,
        None,
        dt.date(1979, 10, 19),
        "female",
        None,
    ),
    Customer(
        20,
        "Fujita Yuna",
        "フジタ ユナ",
        "18-1 Nara, Nara",
        "0742-18-0020",
        None,
        "yuna@example.jp",
        dt.date(1986, 11, 20),
        "female",
        None,
    ),
    Customer(
        21,
        "Matsumoto Koji",
        None,
        "18-1 Nara, Nara",
        "0742-18-0021",
        None,
        None,
        dt.date(1984, 12, 21),
        "male",
        None,
    ),
    Customer(
        22,
        "Mori Akira",
        None,
        "19-1 Kochi, Kochi",
        "088-191-0022",
        None,
        None,
        dt.date(1970, 1, 22),
        "male",
        None,
    ),
    Customer(
        23,
        "Yamada Shun",
        None,
        "20-1 Niigata, Niigata",
        "025-201-0023",
        None,
        None,
        dt.date(1999, 2, 23),
        "male",
        None,
    ),
    Customer(24, "Yamamoto Kana", "ヤマモト カナ", None, "090-0000-0024", None, None, None, None, "W11"),
    Customer(25, "Yoshida Taichi", None, None, "090-0000-0025", None, None, None, None, "M1"),
    Customer(26, "Watanabe Jun", None, None, "090-0000-0026", None, None, None, None, "S1"),
    Customer(
        27,
        "Ishii Noa",
        None,
        "21-1 Gifu, Gifu",
        "058-211-0027",
        None,
        None,
        dt.date(2001, 3, 27),
        "female",
        None,
    ),
    Customer(
        28,
        "Ogawa Mana",
        None,
        "22-1 Shizuoka, Shizuoka",
        "054-221-0028",
        None,
        None,
        dt.date(1974, 4, 28),
        "female",
        None,
    ),
    Customer(29, "Yamaguchi Ryo", None, None, None, None, "ryo@example.jp", None, None, "W11"),
)

_G = "gateway"
_D = "direct"
CONTRACTS: tuple[Contract, ...] = (
    Contract(
        1,
        "NL",
        "NL-1001",
        None,
        "auto",
        "Aoki Haruto",
        "Aoki Haruto",
        None,
        "-6 months",
        "6 months",
        62000,
        False,
        False,
        _D,
    ),
    Contract(
        2,
        "NL",
        "NL-1002",
        None,
        "fire",
        "Aoki Mei",
        "Aoki Sota",
        None,
        "-1 year",
        "4 years",
        35000,
        True,
        False,
        _D,
    ),
    Contract(
        3,
        "NL",
        "NL-1003",
        None,
        "auto",
        "Ito Kenji",
        "Ito Kenji",
        None,
        "-3 months",
        "9 months",
        71000,
        False,
        True,
        _D,
    ),
    Contract(
        4,
        "NL",
        "NL-1004",
        None,
        "personal accident",
        "Ueda Sakura",
        "Ueda Sakura",
        None,
        "-8 months",
        "4 months",
        18000,
        False,
        True,
        _D,
    ),
    Contract(
        5,
        "NL",
        "NL-1005",
        None,
        "home contents",
        "Hayashi Nana",
        "Hayashi Nana",
        None,
        "-2 months",
        "10 months",
        24000,
        False,
        False,
        _D,
    ),
    Contract(
        6,
        "NL",
        "NL-1006",
        None,
        "auto",
        "Fujita Yuna",
        "Fujita Yuna",
        None,
        "-4 months",
        "8 months",
        58000,
        True,
        False,
        _D,
    ),
    Contract(
        7,
        "NL",
        "NL-1007",
        None,
        "auto",
        "Ishii Noa",
        "Ishii Noa",
        None,
        "30 days",
        "395 days",
        49000,
        False,
        False,
        _D,
    ),
    Contract(
        8,
        "NL",
        "NL-1101",
        None,
        "auto",
        "Tanaka Hiroshi",
        "Tanaka Hiroshi",
        None,
        "-13 months",
        "-1 month",
        66000,
        False,
        True,
        _D,
    ),
    Contract(
        9,
        "NL",
        "NL-1102",
        "NL-1101",
        "auto",
        "Tanaka Hiroshi",
        "Tanaka Hiroshi",
        None,
        "-1 month",
        "11 months",
        69000,
        False,
        False,
        _D,
    ),
    Contract(
        10,
        "NL",
        "NL-1201",
        None,
        "fire",
        "Sasaki Yuto",
        "Sasaki Yuto",
        None,
        "-1 year",
        "1 year",
        41000,
        False,
        False,
        _D,
    ),
    Contract(
        11,
        "NL",
        "NL-1202",
        None,
        "auto",
        "Shimizu Rin",
        "Shimizu Rin",
        None,
        "-5 months",
        "7 months",
        53000,
        False,
        False,
        _D,
    ),
    Contract(
        12,
        "NL",
        "NL-1301",
        None,
        "liability",
        "Nakamura Emi",
        "Nakamura Emi",
        None,
        "-7 months",
        "5 months",
        15000,
        False,
        False,
        _D,
    ),
    Contract(
        13,
        "NL",
        "NL-1401",
        None,
        "auto",
        "Yamada Shun",
        "Yamada Shun",
        None,
        "-9 months",
        "3 months",
        60000,
        False,
        False,
        _D,
    ),
    Contract(
        14,
        "LF",
        "LF-3001",
        None,
        "whole life",
        "Endo Riku",
        "Endo Riku",
        "Endo Aya",
        "-10 years",
        "20 years",
        240000,
        False,
        False,
        _D,
    ),
    Contract(
        15,
        "LF",
        "LF-3002",
        None,
        "term life",
        "Ota Yui",
        "Ito Kenji",
        "Ota Yui",
        "-3 years",
        "7 years",
        96000,
        True,
        False,
        _D,
    ),
    Contract(
        16,
        "LF",
        "LF-3003",
        None,
        "medical",
        "Kato Daiki",
        "Kato Daiki",
        None,
        "-2 years",
        "8 years",
        48000,
        False,
        True,
        _D,
    ),
    Contract(
        17,
        "LF",
        "LF-3004",
        None,
        "endowment",
        "Mori Akira",
        "Mori Akira",
        "Mori Keiko",
        "-6 years",
        "4 years",
        180000,
        False,
        False,
        _D,
    ),
    Contract(
        18,
        "LF",
        "LF-3005",
        None,
        "annuity",
        "Ogawa Mana",
        "Ogawa Mana",
        "Ogawa Ken",
        "-1 year",
        "19 years",
        300000,
        False,
        False,
        _G,
    ),
    Contract(
        19,
        "GW1",
        "GW1-2001",
        None,
        "marine cargo",
        "Kimura Hina",
        "Kimura Hina",
        None,
        "-2 months",
        "10 months",
        120000,
        False,
        True,
        _G,
    ),
    Contract(
        20,
        "GW1",
        "GW1-2002",
        None,
        "fire",
        "Kudo Ren",
        "Kudo Ren",
        None,
        "-6 months",
        "6 months",
        33000,
        False,
        False,
        _G,
    ),
    Contract(
        21,
        "GW1",
        "GW1-2003",
        None,
        "auto",
        "Fujita Yuna",
        "Matsumoto Koji",
        None,
        "-3 months",
        "9 months",
        57000,
        True,
        True,
        _G,
    ),
    Contract(
        22,
        "GW2",
        "GW2-4001",
        None,
        "whole life",
        "Saito Mio",
        "Saito Mio",
        "Saito Jiro",
        "-15 years",
        "15 years",
        210000,
        False,
        False,
        _G,
    ),
    Contract(
        23,
        "GW2",
        "GW2-4002",
        None,
        "cancer",
        "Nishida Kaito",
        "Nishida Kaito",
        "Nishida Ai",
        "-1 year",
        "9 years",
        36000,
        False,
        True,
        _G,
    ),
    Contract(
        24,
        "GW3",
        "GW3-5001",
        None,
        "liability",
        "Suzuki Sora",
        "Suzuki Sora",
        None,
        "-4 months",
        "8 months",
        22000,
        False,
        False,
        _G,
    ),
    Contract(
        25,
        "GW3",
        "GW3-5002",
        None,
        "auto",
        "Takahashi Aoi",
        "Takahashi Aoi",
        None,
        "-5 months",
        "7 months",
        51000,
        False,
        True,
        _G,
    ),
)

HANDLERS: tuple[Handler, ...] = (
    Handler(1, "NL-1001", "S1", "primary", "-6 months", None),
    Handler(2, "NL-1001", "W11", "joint", "30 days", None),  # future: W11 does not handle NL-1001 yet
    Handler(3, "NL-1002", "S1", "primary", "-1 year", None),
    Handler(4, "NL-1003", "W11", "primary", "-3 months", None),
    Handler(5, "NL-1004", "W11", "primary", "-8 months", None),
    Handler(6, "NL-1004", "W12", "joint", "-8 months", None),
    Handler(7, "NL-1005", "W12", "primary", "-2 months", None),
    Handler(8, "NL-1005", "W31", "joint", "-2 months", None),
    Handler(9, "NL-1006", "M1", "primary", "-4 months", None),
    Handler(10, "NL-1007", "W11", "primary", "30 days", None),  # future new business
    Handler(11, "NL-1101", "W12", "primary", "-13 months", "-1 month"),  # closed: customer renewed at W31
    Handler(12, "NL-1102", "W31", "primary", "-1 month", None),
    Handler(13, "NL-1201", "W21", "primary", "-1 year", None),
    Handler(14, "NL-1202", "S2", "primary", "-5 months", None),
    Handler(15, "NL-1301", "S3", "primary", "-7 months", None),
    Handler(16, "NL-1401", "E1", "primary", "-9 months", None),  # open, but E1's entrustment ended
    Handler(17, "LF-3001", "S1", "primary", "-10 years", None),
    Handler(18, "LF-3002", "W12", "primary", "-3 years", None),
    Handler(19, "LF-3003", "W11", "primary", "-2 years", None),  # W11 holds no LF entrustment
    Handler(20, "LF-3004", "M1", "primary", "-6 years", None),  # M1's LF entrustment expired
    Handler(21, "LF-3005", "S1", "primary", "-1 year", None),
    Handler(22, "GW1-2001", "S1", "primary", "-2 months", None),
    Handler(23, "GW1-2002", "W12", "primary", "-6 months", None),  # W12 holds no GW1 entrustment
    Handler(24, "GW1-2003", "M1", "primary", "-3 months", None),
    Handler(25, "GW2-4001", "S1", "primary", "-15 years", None),
    Handler(26, "GW2-4002", "W31", "primary", "-1 year", None),
    Handler(27, "GW3-5001", "W21", "primary", "-4 months", None),
    Handler(28, "GW3-5002", "S2", "primary", "-5 months", None),
)

NOTICES: tuple[Notice, ...] = (
    Notice(
        1,
        "NL",
        "S1",
        "pending_paperwork",
        "NL-1001",
        "Aoki Haruto",
        "N01 pending paperwork for S1 about NL-1001",
        "-3 days",
    ),
    Notice(
        2,
        "NL",
        "S1",
        "pending_paperwork",
        "NL-1003",
        "Ito Kenji",
        "N02 pending paperwork for S1 about NL-1003",
        "-3 days",
    ),
    Notice(
        3,
        "NL",
        "S1",
        "maturity_list",
        None,
        "Ueda Sakura",
        "N03 maturity list for S1 naming Ueda Sakura",
        "-10 days",
    ),
    Notice(4, "NL", "W11", "renewal", "NL-1003", None, "N04 renewal for W11 about NL-1003", "-5 days"),
    Notice(5, "NL", "W12", "claim", "NL-1004", None, "N05 claim for W12 about NL-1004", "-20 days"),
    Notice(6, "NL", "S1", "message", None, None, "N06 message from NL for S1 (no personal data)", "-1 day"),
    Notice(7, "NL", "S2", "general", None, None, "N07 general from NL for S2 (no personal data)", "-2 days"),
    Notice(
        8,
        "NL",
        "S1",
        "pending_paperwork",
        "NL-1202",
        "Shimizu Rin",
        "N08 pending paperwork for S1 about NL-1202",
        "-4 days",
    ),
    Notice(
        9,
        "NL",
        "W12",
        "maturity_list",
        "NL-1101",
        "Tanaka Hiroshi",
        "N09 maturity list for W12 about NL-1101",
        "-40 days",
    ),
    Notice(
        10, "NL", "M1", "renewal", "NL-1006", "Fujita Yuna", "N10 renewal for M1 about NL-1006", "-6 days"
    ),
    Notice(
        11, "NL", "S3", "maturity_list", "NL-1102", None, "N11 maturity list for S3 about NL-1102", "-7 days"
    ),
    Notice(
        12,
        "NL",
        "W11",
        "pending_paperwork",
        None,
        "Yamamoto Kana",
        "N12 pending paperwork for W11 naming prospect Yamamoto Kana",
        "-8 days",
    ),
    Notice(13, "NL", "S1", "claim", "NL-1004", None, "N13 claim for S1 about NL-1004", "-9 days"),
    Notice(14, "NL", "E1", "renewal", "NL-1401", None, "N14 renewal for E1 about NL-1401", "-11 days"),
    Notice(15, "NL", "M1", "message", None, None, "N15 message from NL for M1 (no personal data)", "-1 day"),
    Notice(
        16,
        "LF",
        "S1",
        "pending_paperwork",
        "LF-3001",
        "Endo Riku",
        "L01 pending paperwork for S1 about LF-3001",
        "-3 days",
    ),
    Notice(
        17,
        "LF",
        "S1",
        "maturity_list",
        None,
        "Ito Kenji",
        "L02 maturity list for S1 naming Ito Kenji",
        "-12 days",
    ),
    Notice(18, "LF", "S1", "general", None, None, "L03 general from LF for S1 (no personal data)", "-2 days"),
    Notice(
        19, "LF", "W12", "message", None, None, "L04 message from LF for W12 (no personal data)", "-2 days"
    ),
    Notice(20, "LF", "S1", "claim", "LF-3003", None, "L05 claim for S1 about LF-3003", "-15 days"),
    Notice(
        21,
        "LF",
        "W12",
        "pending_paperwork",
        "LF-3002",
        None,
        "L06 pending paperwork for W12 about LF-3002",
        "-5 days",
    ),
    Notice(
        22, "LF", "W11", "message", None, None, "L07 message from LF for W11 (no personal data)", "-1 day"
    ),
    Notice(
        23,
        "GW1",
        "S1",
        "pending_paperwork",
        "GW1-2001",
        None,
        "G01 pending paperwork for S1 about GW1-2001",
        "-3 days",
    ),
    Notice(
        24, "GW1", "S1", "message", None, None, "G02 message from GW1 for S1 (no personal data)", "-1 day"
    ),
    Notice(
        25, "GW1", "M1", "claim", "GW1-2003", "Matsumoto Koji", "G03 claim for M1 about GW1-2003", "-14 days"
    ),
    Notice(
        26,
        "GW1",
        "S1",
        "maturity_list",
        "GW1-2002",
        None,
        "G04 maturity list for S1 about GW1-2002",
        "-16 days",
    ),
    Notice(27, "GW2", "W31", "renewal", "GW2-4002", None, "G05 renewal for W31 about GW2-4002", "-17 days"),
    Notice(
        28,
        "GW3",
        "S2",
        "pending_paperwork",
        "GW3-5001",
        None,
        "G06 pending paperwork for S2 about GW3-5001",
        "-18 days",
    ),
)

RECEIPTS: tuple[Receipt, ...] = (
    Receipt(1, "N02", "S1", "-2 days"),
    Receipt(2, "N02", "W11", "-2 days"),
    Receipt(3, "N04", "W11", "-4 days"),
    Receipt(4, "N06", "W12", "-12 hours"),
    Receipt(5, "N09", "W12", "-39 days"),  # read before the customer moved; the notice is now hidden
    Receipt(6, "L03", "W12", "-1 day"),
    Receipt(7, "L01", "S1", "-2 days"),
    Receipt(8, "N10", "M1", "-5 days"),
    Receipt(9, "G03", "M1", "-13 days"),
)

STAFF_ROLE = "staff_nl_at_m1"
"""The restricted seconded-staff principal (without prefix): agency M1, restricted to insurer NL."""
_STAFF_AGENCY, _STAFF_INSURER = "M1", "NL"

INSURER_IDS: dict[str, int] = {i.code: i.id for i in INSURERS}
AGENCY_IDS: dict[str, int] = {a.code: a.id for a in AGENCIES}
CUSTOMER_IDS: dict[str, int] = {c.full_name: c.id for c in CUSTOMERS}
CONTRACT_IDS: dict[str, int] = {c.policy_number: c.id for c in CONTRACTS}
NOTICE_BODIES: dict[str, str] = {n.body.split(" ", 1)[0]: n.body for n in NOTICES}
NOTICE_IDS: dict[str, int] = {n.body.split(" ", 1)[0]: n.id for n in NOTICES}

#: Every principal of the world, role names without prefix: provisioning's defaults plus the staff.
PRINCIPALS: tuple[str, ...] = (
    *(f"agency_{a.code.lower()}" for a in AGENCIES),
    *(f"insurer_{i.code.lower()}" for i in INSURERS),
    STAFF_ROLE,
)


def _check_world() -> None:
    """Fail at import if the hand-written data is inconsistent (unique keys, dangling names)."""
    for name, values in (
        ("insurer code", [i.code for i in INSURERS]),
        ("agency code", [a.code for a in AGENCIES]),
        ("customer name", [c.full_name for c in CUSTOMERS]),
        ("policy number", [c.policy_number for c in CONTRACTS]),
        ("notice body", [n.body for n in NOTICES]),
        ("notice label", list(NOTICE_BODIES)),
    ):
        dupes = [v for v, n in Counter(values).items() if n > 1]
        assert not dupes and len(set(values)) == len(values), f"duplicate {name}: {dupes}"
    contract_insurer = {c.policy_number: c.insurer for c in CONTRACTS}
    for n in NOTICES:
        assert n.policy_number is None or contract_insurer[n.policy_number] == n.insurer, n
        assert n.kind in ("general", "message") or n.policy_number or n.customer, n
        assert n.customer is None or n.customer in CUSTOMER_IDS, n
        assert n.addressee in AGENCY_IDS and n.insurer in INSURER_IDS, n
    for r in RECEIPTS:
        assert r.notice in NOTICE_IDS and r.agency in AGENCY_IDS, r
    for h in HANDLERS:
        assert h.policy_number in CONTRACT_IDS and h.agency in AGENCY_IDS, h


_check_world()

# ------------------------------------------------------------------------------------------------
# Loader
# ------------------------------------------------------------------------------------------------

_TS = "now() + %s::interval"  # NULL offset -> NULL (open valid_to)
_DATE = "(now() + %s::interval)::date"


def load_sample_world(conn: psycopg.Connection[Any], *, prefix: str = "") -> None:
    """Insert the sample world into the spec's tables in ``public``, inside the caller's transaction.

    Runs as a loader (superuser or table owner with row security not in the way); supplies explicit
    ids, then moves every identity sequence past them. Does not commit. Inserts no default
    principals (provisioning creates ``<prefix>agency_<code>`` / ``<prefix>insurer_<code>``), only
    the restricted ``<prefix>staff_nl_at_m1``.
    """
    a, i, c, k = AGENCY_IDS, INSURER_IDS, CUSTOMER_IDS, CONTRACT_IDS
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.insurer (id, code, name, line, kind) VALUES (%s, %s, %s, %s, %s)",
            [tuple(x) for x in INSURERS],
        )
        cur.executemany(
            "INSERT INTO public.agency (id, code, name) VALUES (%s, %s, %s)",
            [tuple(x) for x in AGENCIES],
        )
        cur.executemany(
            "INSERT INTO public.supervision (id, supervising_agency_id, working_agency_id, valid_from,"
            f" valid_to) VALUES (%s, %s, %s, {_TS}, {_TS})",
            [(s.id, a[s.supervising], a[s.working], s.valid_from, s.valid_to) for s in SUPERVISIONS],
        )
        cur.executemany(
            "INSERT INTO public.entrustment (id, agency_id, insurer_id, valid_from, valid_to)"
            f" VALUES (%s, %s, %s, {_TS}, {_TS})",
            [(e.id, a[e.agency], i[e.insurer], e.valid_from, e.valid_to) for e in ENTRUSTMENTS],
        )
        cur.executemany(
            "INSERT INTO public.customer (id, full_name, full_name_kana, address, phone, fax, email,"
            " birth_date, gender, registered_by_agency_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(*x[:9], None if x.registered_by is None else a[x.registered_by]) for x in CUSTOMERS],
        )
        # Generations in id order, so previous_contract_id always points at an inserted row.
        cur.executemany(
            "INSERT INTO public.contract (id, insurer_id, policy_number, previous_contract_id, product_type,"
            " policyholder_id, insured_id, beneficiary_name, starts_on, expires_on, premium, has_changes,"
            f" has_claims, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {_DATE}, {_DATE}, %s, %s, %s, %s)",
            [
                (
                    x.id,
                    i[x.insurer],
                    x.policy_number,
                    None if x.previous is None else k[x.previous],
                    x.product_type,
                    c[x.policyholder],
                    None if x.insured is None else c[x.insured],
                    x.beneficiary_name,
                    x.starts,
                    x.expires,
                    x.premium,
                    x.has_changes,
                    x.has_claims,
                    x.source,
                )
                for x in CONTRACTS
            ],
        )
        cur.executemany(
            "INSERT INTO public.contract_handler (id, contract_id, agency_id, role, valid_from, valid_to)"
            f" VALUES (%s, %s, %s, %s, {_TS}, {_TS})",
            [(h.id, k[h.policy_number], a[h.agency], h.role, h.valid_from, h.valid_to) for h in HANDLERS],
        )
        cur.executemany(
            "INSERT INTO public.notice (id, insurer_id, addressee_agency_id, kind, contract_id, customer_id,"
            f" body, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, {_TS})",
            [
                (
                    n.id,
                    i[n.insurer],
                    a[n.addressee],
                    n.kind,
                    None if n.policy_number is None else k[n.policy_number],
                    None if n.customer is None else c[n.customer],
                    n.body,
                    n.created,
                )
                for n in NOTICES
            ],
        )
        cur.executemany(
            "INSERT INTO public.notice_receipt (id, notice_id, agency_id, read_at)"
            f" VALUES (%s, %s, %s, {_TS})",
            [(r.id, NOTICE_IDS[r.notice], a[r.agency], r.read) for r in RECEIPTS],
        )
        cur.execute(
            "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id)"
            " VALUES (%s, 'agency', %s, %s)",
            (prefix + STAFF_ROLE, a[_STAFF_AGENCY], i[_STAFF_INSURER]),
        )
    advance_identity_sequences(conn)


# ------------------------------------------------------------------------------------------------
# Row keys: ids are read AS THE PRINCIPAL (under row-level security), keys are built by a superuser
# (joined tables would otherwise be filtered too and drop or blur rows).
# ------------------------------------------------------------------------------------------------

_KEY_SQL: dict[str, str] = {
    "insurer": "SELECT id, code FROM public.insurer",
    "agency": "SELECT id, code FROM public.agency",
    "supervision": (
        "SELECT s.id, sa.code || '>' || wa.code FROM public.supervision s"
        " JOIN public.agency sa ON sa.id = s.supervising_agency_id"
        " JOIN public.agency wa ON wa.id = s.working_agency_id"
    ),
    "entrustment": (
        "SELECT e.id, a.code || ':' || i.code FROM public.entrustment e"
        " JOIN public.agency a ON a.id = e.agency_id JOIN public.insurer i ON i.id = e.insurer_id"
    ),
    "customer": "SELECT id, full_name FROM public.customer",
    "contract": "SELECT id, policy_number FROM public.contract",
    "contract_handler": (
        "SELECT h.id, c.policy_number || '@' || a.code FROM public.contract_handler h"
        " JOIN public.contract c ON c.id = h.contract_id JOIN public.agency a ON a.id = h.agency_id"
    ),
    "notice": "SELECT id, coalesce(body, '#notice' || id) FROM public.notice",
    "notice_receipt": (
        "SELECT r.id, coalesce(n.body, '#notice' || n.id) || '@' || a.code FROM public.notice_receipt r"
        " JOIN public.notice n ON n.id = r.notice_id JOIN public.agency a ON a.id = r.agency_id"
    ),
    "principal": "SELECT role_name, role_name FROM public.principal",
}


def key_query(table: str) -> str:
    """SQL to run AS THE PRINCIPAL: one column ``id`` per visible row (``role_name`` for principal)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    if table == "principal":
        return "SELECT role_name AS id FROM public.principal"
    return f"SELECT id FROM public.{table}"


def id_to_key(conn: psycopg.Connection[Any], table: str, *, prefix: str = "") -> dict[Any, str]:
    """Map every row id of ``table`` to its readable key; ``conn`` must be a SUPERUSER connection.

    Keys: insurer/agency code, 'S1>W11', 'W11:NL', full_name, policy_number, 'NL-1001@S1', notice
    body, '<body>@W11', role_name without ``prefix``. When several rows share a key, each gets
    '#<id>' appended (e.g. 'S1>W11#1', 'S1>W11#2').
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    with conn.cursor() as cur:
        cur.execute(_KEY_SQL[table])
        rows: list[tuple[Any, str]] = [(row[0], row[1]) for row in cur.fetchall()]
    if table == "principal":
        return {name: name[len(prefix) :] if name.startswith(prefix) else name for name, _ in rows}
    counts = Counter(key for _, key in rows)
    return {row_id: key if counts[key] == 1 else f"{key}#{row_id}" for row_id, key in rows}


def visible_keys(
    principal_conn: psycopg.Connection[Any],
    superuser_conn: psycopg.Connection[Any],
    table: str,
    *,
    prefix: str = "",
) -> frozenset[str]:
    """Keys of the rows of ``table`` visible on ``principal_conn`` (already acting as the principal).

    An id the superuser cannot map (it cannot happen unless rows change in between) is reported as
    '#<table><id>' so that it still shows up in a comparison instead of vanishing.
    """
    with principal_conn.cursor() as cur:
        cur.execute(key_query(table))
        ids = [row[0] for row in cur.fetchall()]
    mapping = id_to_key(superuser_conn, table, prefix=prefix)
    return frozenset(mapping.get(x, f"#{table}{x}") for x in ids)


# ------------------------------------------------------------------------------------------------
# EXPECTED: derived by hand from scope-rules.md, rule by rule.
#
# Valid now:  supervision S1>W11#2, S1>W12, S1>S2, S2>W21, S3>W31 (S1>W11#1, S3>W12 ended; S3>W21
#             starts in 30 days);
#             entrustment S1:{NL,LF,GW1,GW2} W11:{NL} W12:{NL,LF} S2:{NL,GW3} W21:{NL,GW3}
#             S3:{NL,LF} W31:{NL,GW2} M1:{NL,GW1} E1:{} ;
#             handler links: all but NL-1001@W11, NL-1007@W11 (future) and NL-1101@W12 (closed).
#
# Readings chosen where the text leaves room (each also noted at its use). R1-R3 and the first half
# of R4 follow the literal text although a narrower alternative exists (named, so a reviewer can
# overrule it); R4's second half and R5 are the narrower choice of an open text.
#  R1 "its own supervision rows" = rows where the agency is on EITHER side (supervising or working):
#     both are part of "its own history". "That agency's supervision rows" for a supervised agency
#     uses the same phrase, so it means the same, e.g. S1 sees S2>W21 (S2's row; S1 still sees
#     nothing of W21 itself: no agency row, no entrustments, no contracts). Narrower alternative:
#     only rows linking the viewer to the supervised agency (S1 would then not see S2>W21, S3>W12).
#  R2 rows of a supervised agency and the restricted principal's "entrustments from N" carry no
#     validity filter in the text (the spec says "current" where it means it, as for insurers), so
#     all of them count; the world avoids the restricted case (M1 has one NL entrustment only).
#     Narrower alternative: only currently valid rows (S1 would not see W11:LF, S2 not S3>W21).
#  R3 "the contract_handler rows of the contracts it sees" = all handler rows of such a contract,
#     any agency, any validity (e.g. S1 sees the future NL-1001@W11 link). Narrower alternative:
#     valid links only.
#  R4 "the notice_receipt rows of its agency" (unrestricted) = all of them, even for a notice the
#     agency no longer sees (N09@W12). The restricted principal sees only receipts of its agency for
#     notices it sees (the narrower of "receipts of its agency" and "of the notices it sees").
#  R5 insurer principals: no supervision rows and no receipts (not listed = default deny).
# ------------------------------------------------------------------------------------------------

_ALL_INSURERS = frozenset(i.code for i in INSURERS)


def _n(*labels: str) -> frozenset[str]:
    """Notice bodies from their labels ('N01', 'L03', 'G05')."""
    return frozenset(NOTICE_BODIES[label] for label in labels)


def _r(*receipts: str) -> frozenset[str]:
    """Receipt keys from 'N02@S1' (notice label @ agency code)."""
    out = []
    for item in receipts:
        label, agency = item.split("@")
        assert agency in AGENCY_IDS, item
        out.append(f"{NOTICE_BODIES[label]}@{agency}")
    return frozenset(out)


def _s(*items: str) -> frozenset[str]:
    return frozenset(items)


def _view(
    *,
    agency: frozenset[str] = frozenset(),
    supervision: frozenset[str] = frozenset(),
    entrustment: frozenset[str] = frozenset(),
    customer: frozenset[str] = frozenset(),
    contract: frozenset[str] = frozenset(),
    contract_handler: frozenset[str] = frozenset(),
    notice: frozenset[str] = frozenset(),
    notice_receipt: frozenset[str] = frozenset(),
    principal: frozenset[str],
) -> dict[str, frozenset[str]]:
    # Spec "Insurers": every role may read insurer.
    return {
        "insurer": _ALL_INSURERS,
        "agency": agency,
        "supervision": supervision,
        "entrustment": entrustment,
        "customer": customer,
        "contract": contract,
        "contract_handler": contract_handler,
        "notice": notice,
        "notice_receipt": notice_receipt,
        "principal": principal,
    }


EXPECTED: dict[str, dict[str, frozenset[str]]] = {
    # S1: entrusted NL, LF, GW1, GW2; handles NL-1001, NL-1002, LF-3001, LF-3005, GW1-2001, GW2-4001;
    # supervises W11, W12, S2 (not W21: not transitive).
    "agency_s1": _view(
        # own row; no supervisor; supervised W11, W12, S2.
        agency=_s("S1", "W11", "W12", "S2"),
        # own S1>W11#1 (ended: own history), S1>W11#2, S1>W12, S1>S2; W12's S3>W12 (ended, W12's
        # history); S2's S2>W21 (reading R1). Not S3>W21 (W21 is not supervised by S1).
        supervision=_s("S1>W11#1", "S1>W11#2", "S1>W12", "S1>S2", "S2>W21", "S3>W12"),
        # own four; W11's (incl. the future LF one), W12's, S2's - any validity (R2). Not W21's.
        entrustment=_s(
            "S1:NL", "S1:LF", "S1:GW1", "S1:GW2", "W11:NL", "W11:LF", "W12:NL", "W12:LF", "S2:NL", "S2:GW3"
        ),
        customer=_s(
            "Aoki Haruto",
            "Aoki Mei",
            "Aoki Sota",
            "Ito Kenji",
            "Ueda Sakura",
            "Hayashi Nana",
            "Shimizu Rin",
            "Endo Riku",
            "Ota Yui",
            "Kato Daiki",
            "Ogawa Mana",
            "Kimura Hina",
            "Kudo Ren",
            "Saito Mio",
            # prospect registered by S1 itself; NOT W11's prospects Yamamoto Kana, Yamaguchi Ryo
            # (registered_by_agency_id = A only, supervision does not extend it).
            "Watanabe Jun",
        ),
        contract=_s(
            "NL-1001",
            "NL-1002",
            "LF-3001",
            "LF-3005",
            "GW1-2001",
            "GW2-4001",  # own
            "NL-1003",
            "NL-1004",
            "LF-3003",  # via W11; LF-3003: only the viewer's entrustment counts
            "NL-1005",
            "LF-3002",
            "GW1-2002",  # via W12; GW1-2002 although W12 holds no GW1 entrustment
            "NL-1202",  # via S2; not GW3-5002 (S1 has no GW3 entrustment); not NL-1201 (W21, not transitive)
        ),
        # R3: all handler rows of visible contracts, incl. the future NL-1001@W11 and other agencies'.
        contract_handler=_s(
            "NL-1001@S1",
            "NL-1001@W11",
            "NL-1002@S1",
            "LF-3001@S1",
            "LF-3005@S1",
            "GW1-2001@S1",
            "GW2-4001@S1",
            "NL-1003@W11",
            "NL-1004@W11",
            "NL-1004@W12",
            "LF-3003@W11",
            "NL-1005@W12",
            "NL-1005@W31",
            "LF-3002@W12",
            "GW1-2002@W12",
            "NL-1202@S2",
        ),
        # addressed to S1 only (flows down only: not N04/N05/N12/L04/L06/L07 addressed to W11/W12).
        notice=_n("N01", "N02", "N03", "N06", "N08", "N13", "L01", "L02", "L03", "L05", "G01", "G02", "G04"),
        notice_receipt=_r("N02@S1", "L01@S1"),
        principal=_s("agency_s1"),
    ),
    # W11: entrusted NL only (LF from 30 days ahead); handles NL-1003, NL-1004, LF-3003; under S1.
    "agency_w11": _view(
        agency=_s("W11", "S1"),  # own row + currently valid supervisor
        supervision=_s("S1>W11#1", "S1>W11#2"),  # own rows, whatever their validity
        entrustment=_s("W11:NL", "W11:LF"),  # own rows, incl. the future LF one
        # incident 1-3: nothing of S1's own contracts; LF-3003 hidden (no LF entrustment), so is Kato Daiki.
        customer=_s("Ito Kenji", "Ueda Sakura", "Yamamoto Kana", "Yamaguchi Ryo"),
        contract=_s("NL-1003", "NL-1004"),  # NL-1001/NL-1007: handler links not started yet
        contract_handler=_s("NL-1003@W11", "NL-1004@W11", "NL-1004@W12"),
        # from S1 (its supervisor): only NL (entrusted) and only about contracts/customers W11 sees:
        # N02 (NL-1003), N03 (Ueda Sakura), N06 (no subject), N13 (NL-1004); not N01 (NL-1001), N08
        # (NL-1202). Own: N04, N12 (its prospect). Not L07 although addressed to W11: no LF entrustment.
        notice=_n("N02", "N03", "N04", "N06", "N12", "N13"),
        notice_receipt=_r("N02@W11", "N04@W11"),
        principal=_s("agency_w11"),
    ),
    # W12: entrusted NL, LF; handles NL-1004 (joint), NL-1005, LF-3002, GW1-2002 (no GW1 entrustment);
    # the NL-1101 link closed a month ago; under S1 (under S3 until a year ago).
    "agency_w12": _view(
        agency=_s("W12", "S1"),  # S3 is no longer a valid supervisor
        supervision=_s("S1>W12", "S3>W12"),
        entrustment=_s("W12:NL", "W12:LF"),
        customer=_s("Ueda Sakura", "Hayashi Nana", "Ota Yui", "Ito Kenji"),  # not Tanaka Hiroshi (renewal)
        contract=_s("NL-1004", "NL-1005", "LF-3002"),  # renewal: neither NL-1101 nor NL-1102
        contract_handler=_s("NL-1004@W11", "NL-1004@W12", "NL-1005@W12", "NL-1005@W31", "LF-3002@W12"),
        # from S1: N03 (Ueda), N06, N13 (NL-1004), L02 (Ito Kenji, insured of LF-3002), L03 (no subject);
        # not N02 (NL-1003), L01 (LF-3001), L05 (LF-3003), G* (no GW1 entrustment).
        # own: N05, L04, L06; not N09 (NL-1101 no longer visible: the maturity-list case).
        notice=_n("N03", "N05", "N06", "N13", "L02", "L03", "L04", "L06"),
        notice_receipt=_r("N06@W12", "N09@W12", "L03@W12"),  # R4: N09's receipt stays W12's own row
        principal=_s("agency_w12"),
    ),
    # S2: entrusted NL, GW3; handles NL-1202, GW3-5002; supervises W21; supervised by S1.
    "agency_s2": _view(
        agency=_s("S2", "S1", "W21"),  # own, valid supervisor S1, supervised W21
        # own S1>S2, S2>W21; W21's rows: S2>W21 and the future S3>W21 (R1, R2).
        supervision=_s("S1>S2", "S2>W21", "S3>W21"),
        entrustment=_s("S2:NL", "S2:GW3", "W21:NL", "W21:GW3"),
        customer=_s("Shimizu Rin", "Takahashi Aoi", "Sasaki Yuto", "Suzuki Sora"),
        contract=_s("NL-1202", "GW3-5002", "NL-1201", "GW3-5001"),
        contract_handler=_s("NL-1202@S2", "GW3-5002@S2", "NL-1201@W21", "GW3-5001@W21"),
        # from S1 (S1 supervises S2): NL only; N06 (no subject), N08 (NL-1202 handled by S2);
        # not N01/N02/N03/N13 (subjects S2 does not see). Own: N07, G06 (GW3-5001 via W21).
        notice=_n("N06", "N07", "N08", "G06"),
        principal=_s("agency_s2"),
    ),
    # W21: entrusted NL, GW3; handles NL-1201, GW3-5001; under S2 (S3 from 30 days ahead).
    "agency_w21": _view(
        agency=_s("W21", "S2"),  # S3 is not yet a valid supervisor
        supervision=_s("S2>W21", "S3>W21"),
        entrustment=_s("W21:NL", "W21:GW3"),
        customer=_s("Sasaki Yuto", "Suzuki Sora"),
        contract=_s("NL-1201", "GW3-5001"),
        contract_handler=_s("NL-1201@W21", "GW3-5001@W21"),
        notice=_n("N07", "G06"),  # from S2; not N06 (addressed to S1, which does not supervise W21)
        principal=_s("agency_w21"),
    ),
    # S3: entrusted NL, LF (GW2 expired); handles NL-1301; supervises W31 (W12 ended, W21 future).
    "agency_s3": _view(
        agency=_s("S3", "W31"),
        supervision=_s("S3>W31", "S3>W12", "S3>W21"),  # own rows whatever their validity
        entrustment=_s("S3:NL", "S3:LF", "S3:GW2", "W31:NL", "W31:GW2"),
        customer=_s("Nakamura Emi", "Hayashi Nana", "Tanaka Hiroshi"),
        # via W31: NL-1005, NL-1102; not GW2-4002 (S3's own GW2 entrustment expired); nothing of W12's.
        contract=_s("NL-1301", "NL-1005", "NL-1102"),
        contract_handler=_s("NL-1301@S3", "NL-1005@W12", "NL-1005@W31", "NL-1102@W31"),
        notice=_n("N11"),  # not G05 (addressed to W31: flows down only)
        principal=_s("agency_s3"),
    ),
    # W31: entrusted NL, GW2; handles NL-1005 (joint), NL-1102 (renewal generation 2), GW2-4002.
    "agency_w31": _view(
        agency=_s("W31", "S3"),
        supervision=_s("S3>W31"),
        entrustment=_s("W31:NL", "W31:GW2"),
        customer=_s("Hayashi Nana", "Tanaka Hiroshi", "Nishida Kaito"),
        contract=_s("NL-1005", "NL-1102", "GW2-4002"),  # not NL-1101: never handled by W31
        contract_handler=_s("NL-1005@W12", "NL-1005@W31", "NL-1102@W31", "GW2-4002@W31"),
        notice=_n("N11", "G05"),
        principal=_s("agency_w31"),
    ),
    # M1: entrusted NL, GW1 (LF expired); handles NL-1006, LF-3004, GW1-2003.
    "agency_m1": _view(
        agency=_s("M1"),
        entrustment=_s("M1:NL", "M1:GW1", "M1:LF"),
        customer=_s("Fujita Yuna", "Matsumoto Koji", "Yoshida Taichi"),  # not Mori Akira (LF expired)
        contract=_s("NL-1006", "GW1-2003"),
        contract_handler=_s("NL-1006@M1", "GW1-2003@M1"),
        notice=_n("N10", "N15", "G03"),
        notice_receipt=_r("N10@M1", "G03@M1"),
        principal=_s("agency_m1"),
    ),
    # E1: no valid entrustment; its open handler link on NL-1401 gives nothing.
    "agency_e1": _view(
        agency=_s("E1"),
        entrustment=frozenset({"E1:NL#21", "E1:NL#22"}),  # own history, both expired
        principal=_s("agency_e1"),
    ),
    # Restricted: agency M1, insurer NL. Everything must concern NL; no prospects; master data = own
    # agency row + M1's entrustments from NL; receipts of M1 for notices it sees (R4).
    STAFF_ROLE: _view(
        agency=_s("M1"),
        entrustment=_s("M1:NL"),
        customer=_s("Fujita Yuna"),  # via NL-1006; not Matsumoto Koji (GW1 only) nor prospect Yoshida Taichi
        contract=_s("NL-1006"),
        contract_handler=_s("NL-1006@M1"),
        notice=_n("N10", "N15"),
        notice_receipt=_r("N10@M1"),
        principal=_s(STAFF_ROLE),
    ),
    # Insurer principals: own contracts whatever their source; their policyholders/insured; notices
    # they issued; handler rows of their contracts; agencies currently entrusted by them and those
    # current entrustments; own principal row. No supervision, no receipts (R5).
    "insurer_nl": _view(
        agency=_s("S1", "W11", "W12", "S2", "W21", "S3", "W31", "M1"),  # not E1 (expired)
        entrustment=_s("S1:NL", "W11:NL", "W12:NL", "S2:NL", "W21:NL", "S3:NL", "W31:NL", "M1:NL"),
        # Fujita Yuna through NL-1006; never Matsumoto Koji (only in GW1-2003, another insurer's gateway
        # contract at M1, which NL entrusts).
        customer=_s(
            "Aoki Haruto",
            "Aoki Mei",
            "Aoki Sota",
            "Ito Kenji",
            "Ueda Sakura",
            "Hayashi Nana",
            "Fujita Yuna",
            "Ishii Noa",
            "Tanaka Hiroshi",
            "Sasaki Yuto",
            "Shimizu Rin",
            "Nakamura Emi",
            "Yamada Shun",
        ),
        contract=_s(
            "NL-1001",
            "NL-1002",
            "NL-1003",
            "NL-1004",
            "NL-1005",
            "NL-1006",
            "NL-1007",
            "NL-1101",
            "NL-1102",
            "NL-1201",
            "NL-1202",
            "NL-1301",
            "NL-1401",
        ),
        contract_handler=_s(
            "NL-1001@S1",
            "NL-1001@W11",
            "NL-1002@S1",
            "NL-1003@W11",
            "NL-1004@W11",
            "NL-1004@W12",
            "NL-1005@W12",
            "NL-1005@W31",
            "NL-1006@M1",
            "NL-1007@W11",
            "NL-1101@W12",
            "NL-1102@W31",
            "NL-1201@W21",
            "NL-1202@S2",
            "NL-1301@S3",
            "NL-1401@E1",
        ),
        notice=_n(
            "N01",
            "N02",
            "N03",
            "N04",
            "N05",
            "N06",
            "N07",
            "N08",
            "N09",
            "N10",
            "N11",
            "N12",
            "N13",
            "N14",
            "N15",
        ),
        principal=_s("insurer_nl"),
    ),
    "insurer_lf": _view(
        agency=_s("S1", "W12", "S3"),  # not W11 (future) nor M1 (expired)
        entrustment=_s("S1:LF", "W12:LF", "S3:LF"),
        customer=_s("Endo Riku", "Ota Yui", "Ito Kenji", "Kato Daiki", "Mori Akira", "Ogawa Mana"),
        contract=_s("LF-3001", "LF-3002", "LF-3003", "LF-3004", "LF-3005"),  # LF-3005 is source gateway
        contract_handler=_s("LF-3001@S1", "LF-3002@W12", "LF-3003@W11", "LF-3004@M1", "LF-3005@S1"),
        notice=_n("L01", "L02", "L03", "L04", "L05", "L06", "L07"),
        principal=_s("insurer_lf"),
    ),
    "insurer_gw1": _view(
        agency=_s("S1", "M1"),
        entrustment=_s("S1:GW1", "M1:GW1"),
        customer=_s("Kimura Hina", "Kudo Ren", "Fujita Yuna", "Matsumoto Koji"),
        contract=_s("GW1-2001", "GW1-2002", "GW1-2003"),
        contract_handler=_s("GW1-2001@S1", "GW1-2002@W12", "GW1-2003@M1"),
        notice=_n("G01", "G02", "G03", "G04"),
        principal=_s("insurer_gw1"),
    ),
    "insurer_gw2": _view(
        agency=_s("S1", "W31"),  # not S3 (expired)
        entrustment=_s("S1:GW2", "W31:GW2"),
        customer=_s("Saito Mio", "Nishida Kaito"),
        contract=_s("GW2-4001", "GW2-4002"),
        contract_handler=_s("GW2-4001@S1", "GW2-4002@W31"),
        notice=_n("G05"),
        principal=_s("insurer_gw2"),
    ),
    "insurer_gw3": _view(
        agency=_s("S2", "W21"),
        entrustment=_s("S2:GW3", "W21:GW3"),
        customer=_s("Suzuki Sora", "Takahashi Aoi"),
        contract=_s("GW3-5001", "GW3-5002"),
        contract_handler=_s("GW3-5001@W21", "GW3-5002@S2"),
        notice=_n("G06"),
        principal=_s("insurer_gw3"),
    ),
}

assert set(EXPECTED) == set(PRINCIPALS), sorted(set(EXPECTED) ^ set(PRINCIPALS))

# ------------------------------------------------------------------------------------------------
# Writes (spec "Write rules"). Run each case in its own transaction as the principal and roll back.
# allowed=True: must succeed and affect exactly `rows` rows (0 = silently filtered by row security).
# allowed=False: must raise an error and change nothing.
# ------------------------------------------------------------------------------------------------


class WriteCase(TypedDict):
    label: str
    role: str  # without prefix
    sql: str
    allowed: bool
    rows: int | None  # None for refused writes


def _w(label: str, role: str, statement: str, allowed: bool, rows: int | None = None) -> WriteCase:
    assert allowed == (rows is not None), label
    return {"label": label, "role": role, "sql": statement, "allowed": allowed, "rows": rows}


_A, _I, _K, _N = AGENCY_IDS, INSURER_IDS, CONTRACT_IDS, NOTICE_IDS


def _receipt(notice_label: str, agency: str) -> str:
    return (
        f"INSERT INTO public.notice_receipt (notice_id, agency_id) VALUES ({_N[notice_label]}, {_A[agency]})"
    )


WRITES: list[WriteCase] = [
    # --- allowed -------------------------------------------------------------------------------
    _w(
        "W11 updates the phone of a customer it sees",
        "agency_w11",
        "UPDATE public.customer SET phone = '03-0000-0000' WHERE full_name = 'Ito Kenji'",
        True,
        1,
    ),
    _w(
        "W11 updates contact columns of its own prospect",
        "agency_w11",
        "UPDATE public.customer SET address = '9-9 Ginza, Tokyo', email = 'kana@example.jp', fax = NULL"
        " WHERE full_name = 'Yamamoto Kana'",
        True,
        1,
    ),
    _w(
        "W11 updates fax of every customer: only its 4 visible ones are touched",
        "agency_w11",
        "UPDATE public.customer SET fax = NULL",
        True,
        4,
    ),
    _w(
        "W11 updates a hidden customer of S1's gateway contract: filtered",
        "agency_w11",
        "UPDATE public.customer SET phone = '000' WHERE full_name = 'Kimura Hina'",
        True,
        0,
    ),
    _w(
        "W11 updates LF-3003's policyholder (W11 handles it, no LF entrustment): filtered",
        "agency_w11",
        "UPDATE public.customer SET phone = '000' WHERE full_name = 'Kato Daiki'",
        True,
        0,
    ),
    _w(
        "S1 updates W11's prospect (registered_by is A only): filtered",
        "agency_s1",
        "UPDATE public.customer SET phone = '000' WHERE full_name = 'Yamamoto Kana'",
        True,
        0,
    ),
    _w(
        "S1 updates the e-mail of a customer seen through W11's LF contract",
        "agency_s1",
        "UPDATE public.customer SET email = 'daiki@example.jp' WHERE full_name = 'Kato Daiki'",
        True,
        1,
    ),
    _w(
        "M1 updates the phone of a GW1 customer it sees",
        "agency_m1",
        "UPDATE public.customer SET phone = '0742-00-0000' WHERE full_name = 'Matsumoto Koji'",
        True,
        1,
    ),
    _w(
        "E1 (no valid entrustment) updates the customer of its NL-1401: filtered",
        "agency_e1",
        "UPDATE public.customer SET phone = '000' WHERE full_name = 'Yamada Shun'",
        True,
        0,
    ),
    _w(
        "W11 inserts a prospect for itself",
        "agency_w11",
        f"INSERT INTO public.customer (full_name, phone, registered_by_agency_id)"
        f" VALUES ('New Prospect of W11', '090-1234-5678', {_A['W11']})",
        True,
        1,
    ),
    _w(
        "W11 marks visible notice N03 (addressed to S1) as read",
        "agency_w11",
        _receipt("N03", "W11"),
        True,
        1,
    ),
    _w("W12 marks visible LF notice L02 as read", "agency_w12", _receipt("L02", "W12"), True, 1),
    _w("M1 marks N15 as read", "agency_m1", _receipt("N15", "M1"), True, 1),
    # --- refused: customer -----------------------------------------------------------------------
    _w(
        "W11 sets registered_by_agency_id of its own prospect (even to itself)",
        "agency_w11",
        f"UPDATE public.customer SET registered_by_agency_id = {_A['W11']} WHERE full_name = 'Yamamoto Kana'",
        False,
    ),
    _w(
        "W11 moves its prospect to S1",
        "agency_w11",
        f"UPDATE public.customer SET registered_by_agency_id = {_A['S1']} WHERE full_name = 'Yamamoto Kana'",
        False,
    ),
    _w(
        "W11 updates full_name (not a contact column)",
        "agency_w11",
        "UPDATE public.customer SET full_name = 'Ito Kenichi' WHERE full_name = 'Ito Kenji'",
        False,
    ),
    _w(
        "W11 updates birth_date (not a contact column)",
        "agency_w11",
        "UPDATE public.customer SET birth_date = '1981-01-01' WHERE full_name = 'Ito Kenji'",
        False,
    ),
    _w(
        "W11 inserts a prospect for S1",
        "agency_w11",
        "INSERT INTO public.customer (full_name, registered_by_agency_id)"
        f" VALUES ('Prospect for S1', {_A['S1']})",
        False,
    ),
    _w(
        "W11 inserts a customer with no registering agency",
        "agency_w11",
        "INSERT INTO public.customer (full_name) VALUES ('Unregistered Person')",
        False,
    ),
    _w(
        "W11 inserts a prospect choosing its id",
        "agency_w11",
        f"INSERT INTO public.customer (id, full_name, registered_by_agency_id)"
        f" VALUES (9001, 'Prospect With Id', {_A['W11']})",
        False,
    ),
    _w(
        "W11 deletes its own (unreferenced) prospect",
        "agency_w11",
        "DELETE FROM public.customer WHERE full_name = 'Yamaguchi Ryo'",
        False,
    ),
    _w("W11 truncates customer", "agency_w11", "TRUNCATE public.customer CASCADE", False),
    # --- refused: notice_receipt -----------------------------------------------------------------
    _w("W11 marks hidden LF notice L01 (to S1) as read", "agency_w11", _receipt("L01", "W11"), False),
    _w(
        "W11 marks L07 (addressed to W11, no LF entrustment) as read",
        "agency_w11",
        _receipt("L07", "W11"),
        False,
    ),
    # Fails on the foreign key even for a loader; it must fail with the SAME error as the hidden L01
    # case above (threats #13), so that a principal cannot tell hidden from non-existent.
    _w(
        "W11 marks a non-existent notice as read",
        "agency_w11",
        f"INSERT INTO public.notice_receipt (notice_id, agency_id) VALUES (999999, {_A['W11']})",
        False,
    ),
    _w("W11 marks visible N03 as read on behalf of S1", "agency_w11", _receipt("N03", "S1"), False),
    _w(
        "S1 marks N04 (addressed to W11: notices flow down only) as read",
        "agency_s1",
        _receipt("N04", "S1"),
        False,
    ),
    _w("W11 updates its receipt", "agency_w11", "UPDATE public.notice_receipt SET read_at = now()", False),
    _w(
        "W11 deletes its receipts",
        "agency_w11",
        f"DELETE FROM public.notice_receipt WHERE agency_id = {_A['W11']}",
        False,
    ),
    # --- refused: master data, contracts, notices, principals --------------------------------------
    _w(
        "W11 inserts a contract_handler row for S1's gateway contract",
        "agency_w11",
        f"INSERT INTO public.contract_handler (contract_id, agency_id, role, valid_from)"
        f" VALUES ({_K['GW1-2001']}, {_A['W11']}, 'joint', now())",
        False,
    ),
    _w(
        "W11 inserts an entrustment from LF",
        "agency_w11",
        f"INSERT INTO public.entrustment (agency_id, insurer_id, valid_from)"
        f" VALUES ({_A['W11']}, {_I['LF']}, now())",
        False,
    ),
    _w(
        "W11 inserts a supervision row making it S1's supervisor",
        "agency_w11",
        f"INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)"
        f" VALUES ({_A['W11']}, {_A['S1']}, now())",
        False,
    ),
    _w(
        "W11 extends its future LF entrustment to now",
        "agency_w11",
        f"UPDATE public.entrustment SET valid_from = now() - interval '1 day' WHERE agency_id = {_A['W11']}",
        False,
    ),
    _w(
        "W11 moves its handler link to S1",
        "agency_w11",
        f"UPDATE public.contract_handler SET agency_id = {_A['S1']} WHERE contract_id = {_K['NL-1003']}",
        False,
    ),
    _w(
        "W11 changes a visible contract",
        "agency_w11",
        "UPDATE public.contract SET premium = 0 WHERE policy_number = 'NL-1003'",
        False,
    ),
    _w(
        "W11 moves its NL entrustment to LF",
        "agency_w11",
        f"UPDATE public.entrustment SET insurer_id = {_I['LF']}"
        f" WHERE agency_id = {_A['W11']} AND insurer_id = {_I['NL']}",
        False,
    ),
    _w(
        "W11 deletes its handler link on a visible contract",
        "agency_w11",
        f"DELETE FROM public.contract_handler WHERE contract_id = {_K['NL-1003']}",
        False,
    ),
    _w(
        "W11 inserts a notice",
        "agency_w11",
        f"INSERT INTO public.notice (insurer_id, addressee_agency_id, kind, body)"
        f" VALUES ({_I['NL']}, {_A['W11']}, 'general', 'forged')",
        False,
    ),
    _w(
        "W11 renames its agency",
        "agency_w11",
        f"UPDATE public.agency SET name = 'renamed' WHERE id = {_A['W11']}",
        False,
    ),
    _w(
        "W11 renames an insurer",
        "agency_w11",
        f"UPDATE public.insurer SET name = 'renamed' WHERE id = {_I['NL']}",
        False,
    ),
    _w(
        "W11 inserts a principal row",
        "agency_w11",
        f"INSERT INTO public.principal (role_name, kind, agency_id) VALUES ('agency_x', 'agency', {_A['S1']})",
        False,
    ),
    _w(
        "W11 remaps its own principal row",
        "agency_w11",
        f"UPDATE public.principal SET agency_id = {_A['S1']}",
        False,
    ),
    # --- refused: insurer principals are read-only -------------------------------------------------
    _w(
        "NL updates the phone of a customer it sees",
        "insurer_nl",
        "UPDATE public.customer SET phone = '000' WHERE full_name = 'Aoki Haruto'",
        False,
    ),
    _w(
        "NL inserts a prospect",
        "insurer_nl",
        f"INSERT INTO public.customer (full_name, registered_by_agency_id) VALUES ('NL Prospect', {_A['S1']})",
        False,
    ),
    _w(
        "NL inserts a notice",
        "insurer_nl",
        f"INSERT INTO public.notice (insurer_id, addressee_agency_id, kind, body)"
        f" VALUES ({_I['NL']}, {_A['S1']}, 'general', 'from insurer principal')",
        False,
    ),
    _w("NL marks a notice as read", "insurer_nl", _receipt("N01", "S1"), False),
    _w(
        "NL changes its contract",
        "insurer_nl",
        "UPDATE public.contract SET has_claims = true WHERE policy_number = 'NL-1001'",
        False,
    ),
    _w(
        "NL deletes a notice it issued",
        "insurer_nl",
        f"DELETE FROM public.notice WHERE id = {_N['N07']}",
        False,
    ),
    _w(
        "NL inserts an entrustment",
        "insurer_nl",
        f"INSERT INTO public.entrustment (agency_id, insurer_id, valid_from)"
        f" VALUES ({_A['E1']}, {_I['NL']}, now())",
        False,
    ),
    _w(
        "GW1 closes a handler link",
        "insurer_gw1",
        f"UPDATE public.contract_handler SET valid_to = now() WHERE contract_id = {_K['GW1-2003']}",
        False,
    ),
    # --- refused: the restricted principal writes nothing ------------------------------------------
    _w(
        "staff updates the phone of an NL customer it sees",
        STAFF_ROLE,
        "UPDATE public.customer SET phone = '000' WHERE full_name = 'Fujita Yuna'",
        False,
    ),
    _w(
        "staff inserts a prospect for M1",
        STAFF_ROLE,
        "INSERT INTO public.customer (full_name, registered_by_agency_id)"
        f" VALUES ('Staff Prospect', {_A['M1']})",
        False,
    ),
    _w("staff marks visible N15 as read", STAFF_ROLE, _receipt("N15", "M1"), False),
]

# ------------------------------------------------------------------------------------------------
# Incident replay for the demo: (label, role without prefix, count SQL, expected count).
# ------------------------------------------------------------------------------------------------


class IncidentCheck(NamedTuple):
    label: str
    role: str
    sql: str
    expected: int


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_S1_OWN_NL = ("NL-1001", "NL-1002", "NL-1202", "NL-1005")  # S1's (or its other agencies') NL business
_S1_GATEWAY = ("GW1-2001", "GW1-2002", "GW2-4001", "LF-3005")
_LF = "(SELECT id FROM public.insurer WHERE code = 'LF')"
_NL = "(SELECT id FROM public.insurer WHERE code = 'NL')"

INCIDENT_CHECKS: list[IncidentCheck] = [
    IncidentCheck(
        "incident 1: W11 reads S1's NL contracts it does not handle",
        "agency_w11",
        f"SELECT count(*) FROM public.contract WHERE policy_number IN {_in(_S1_OWN_NL)}",
        0,
    ),
    IncidentCheck(
        "incident 1: W11 reads the customers of those contracts",
        "agency_w11",
        "SELECT count(*) FROM public.customer"
        " WHERE full_name IN " + _in(("Aoki Haruto", "Aoki Mei", "Aoki Sota", "Shimizu Rin", "Hayashi Nana")),
        0,
    ),
    IncidentCheck(
        "incident 1 (allowed): W11 reads the NL contracts it handles itself",
        "agency_w11",
        "SELECT count(*) FROM public.contract",
        2,
    ),
    IncidentCheck(
        "incident 2: W11 reads gateway contracts S1 manages",
        "agency_w11",
        "SELECT count(*) FROM public.contract WHERE source = 'gateway'",
        0,
    ),
    IncidentCheck(
        "incident 2: W12 reads GW1-2002, which it handles without a GW1 entrustment",
        "agency_w12",
        "SELECT count(*) FROM public.contract WHERE source = 'gateway'",
        0,
    ),
    IncidentCheck(
        "incident 2: W11 reads the customers of S1's gateway contracts",
        "agency_w11",
        "SELECT count(*) FROM public.customer"
        " WHERE full_name IN ('Kimura Hina', 'Kudo Ren', 'Saito Mio', 'Ogawa Mana')",
        0,
    ),
    IncidentCheck(
        "incident 2 (allowed): S1 reads the gateway contracts it manages",
        "agency_s1",
        f"SELECT count(*) FROM public.contract WHERE policy_number IN {_in(_S1_GATEWAY)}",
        4,
    ),
    IncidentCheck(
        "incident 2: W11 reads NL notices to S1 about contracts W11 does not handle",
        "agency_w11",
        "SELECT count(*) FROM public.notice WHERE body IN "
        + _in((NOTICE_BODIES["N01"], NOTICE_BODIES["N08"])),
        0,
    ),
    IncidentCheck(
        "incident 2 (allowed): W11 reads S1's NL notices about its own business",
        "agency_w11",
        f"SELECT count(*) FROM public.notice WHERE insurer_id = {_NL}",
        6,
    ),
    IncidentCheck(
        "incident 3: W11 (no LF entrustment) counts LF notices, incl. L07 addressed to it",
        "agency_w11",
        f"SELECT count(*) FROM public.notice WHERE insurer_id = {_LF}",
        0,
    ),
    IncidentCheck(
        "incident 3: W11 reads LF contracts, incl. LF-3003 which it handles",
        "agency_w11",
        f"SELECT count(*) FROM public.contract WHERE insurer_id = {_LF}",
        0,
    ),
    IncidentCheck(
        "incident 3: W11 reads LF's customers Endo Riku and Kato Daiki",
        "agency_w11",
        "SELECT count(*) FROM public.customer WHERE full_name IN ('Endo Riku', 'Kato Daiki')",
        0,
    ),
    IncidentCheck(
        "incident 3 (allowed): W12, entrusted by LF, reads LF notices for itself and S1",
        "agency_w12",
        f"SELECT count(*) FROM public.notice WHERE insurer_id = {_LF}",
        4,
    ),
    IncidentCheck(
        "notices flow down only: S1 reads notices addressed to W11 and W12",
        "agency_s1",
        f"SELECT count(*) FROM public.notice WHERE addressee_agency_id <> {_A['S1']}",
        0,
    ),
    IncidentCheck(
        "not transitive: S1 reads W21's contracts through S2",
        "agency_s1",
        "SELECT count(*) FROM public.contract WHERE policy_number IN ('NL-1201', 'GW3-5001')",
        0,
    ),
    IncidentCheck(
        "not transitive (allowed): S1 reads S2's own NL contract",
        "agency_s1",
        "SELECT count(*) FROM public.contract WHERE policy_number = 'NL-1202'",
        1,
    ),
    IncidentCheck(
        "renewal: W12 reads either generation of Tanaka Hiroshi's contract",
        "agency_w12",
        "SELECT count(*) FROM public.contract WHERE policy_number IN ('NL-1101', 'NL-1102')",
        0,
    ),
    IncidentCheck(
        "renewal: W12 reads Tanaka Hiroshi or the old maturity list N09",
        "agency_w12",
        "SELECT (SELECT count(*) FROM public.customer WHERE full_name = 'Tanaka Hiroshi')"
        f" + (SELECT count(*) FROM public.notice WHERE body = '{NOTICE_BODIES['N09']}')",
        0,
    ),
    IncidentCheck(
        "renewal (allowed): W31 reads the new generation only",
        "agency_w31",
        "SELECT count(*) FROM public.contract WHERE policy_number IN ('NL-1101', 'NL-1102')",
        1,
    ),
    IncidentCheck(
        "seconded staff: NL staff at M1 reads contracts of other insurers",
        STAFF_ROLE,
        f"SELECT count(*) FROM public.contract WHERE insurer_id <> {_NL}",
        0,
    ),
    IncidentCheck(
        "seconded staff: reads GW1's customer, M1's prospect, GW1's notice",
        STAFF_ROLE,
        "SELECT (SELECT count(*) FROM public.customer"
        " WHERE full_name IN ('Matsumoto Koji', 'Yoshida Taichi'))"
        f" + (SELECT count(*) FROM public.notice WHERE insurer_id <> {_NL})",
        0,
    ),
    IncidentCheck(
        "seconded staff (allowed): reads NL's contract at M1",
        STAFF_ROLE,
        "SELECT count(*) FROM public.contract",
        1,
    ),
    IncidentCheck(
        "insurer NL reads other insurers' gateway contracts at agencies it entrusts",
        "insurer_nl",
        "SELECT count(*) FROM public.contract WHERE source = 'gateway'",
        0,
    ),
    IncidentCheck(
        "insurer NL reads Matsumoto Koji (insured only under GW1-2003 at M1)",
        "insurer_nl",
        "SELECT count(*) FROM public.customer WHERE full_name = 'Matsumoto Koji'",
        0,
    ),
    IncidentCheck(
        "insurer (allowed): GW1 reads its own gateway contracts",
        "insurer_gw1",
        "SELECT count(*) FROM public.contract",
        3,
    ),
    IncidentCheck(
        "entrustment ended: E1 reads NL-1401, which it still has a handler link for",
        "agency_e1",
        "SELECT count(*) FROM public.contract",
        0,
    ),
]

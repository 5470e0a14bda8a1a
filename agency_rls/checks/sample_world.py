"""The sample world: ``scenarios/sample_world.yaml``, read through the one scenario loader.

The world, what every principal must see of every table (derived by hand from the spec, with the
reading notes R1-R6), the incident cases and the write cases all live in that file, which is one of
the shipped scenarios (``agency-rls check`` checks it against the database and the reference model).
``agency-rls demo`` installs it with ``install_scenario``, as ``check`` does; this module only offers
what the demo and the test suite read from it, in the readable keys the tests compare:

- ``install_sample_world(conn, prefix=...)``: ``install_scenario`` of the file (load and provision);
- ``EXPECTED[principal][table]``: the file's ``sees`` as readable keys (those of ``id_to_key``);
- ``WRITES`` (``WriteCase``) and ``INCIDENT_CHECKS`` (``IncidentCheck``: the file's named cases as
  count queries), ``PRINCIPALS``, ``STAFF_ROLE``, ``TABLES``;
- the id maps ``INSURER_IDS``, ``AGENCY_IDS`` (code -> id), ``CUSTOMER_IDS`` (full name),
  ``CONTRACT_IDS`` (policy number), ``NOTICE_IDS`` and ``NOTICE_BODIES`` (notice label such as
  ``'N01'``), fixed by the file's explicit ids;
- ``key_query``, ``id_to_key``, ``visible_keys``: a table's rows as readable keys, read from a database.

Readable keys: insurer/agency code, ``S1>W11`` (supervision), ``W11:NL`` (entrustment: agency, insurer),
full name, policy number, ``NL-1001@S1`` (handler), notice body, ``<body>@W11`` (receipt), role name
without prefix; a key several rows share gets ``#<id>`` appended (``S1>W11#1``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import Any, NamedTuple, TypedDict

import psycopg

from agency_rls.checks.check import LoadedScenario, install_scenario, load_scenario
from agency_rls.reference_model.scenario_file import NamedCase, Scenario
from agency_rls.reference_model.world import World
from agency_rls.scenarios import SCENARIO_DIR
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
    "SCENARIO_FILE",
    "STAFF_ROLE",
    "TABLES",
    "WRITES",
    "IncidentCheck",
    "WriteCase",
    "id_to_key",
    "install_sample_world",
    "key_query",
    "sample_scenario",
    "visible_keys",
]

SCENARIO_FILE = SCENARIO_DIR / "sample_world.yaml"
TABLES: tuple[str, ...] = ALL_TABLES

STAFF_ROLE = "staff_nl_at_m1"
"""The restricted seconded-staff principal (without prefix): agency M1, restricted to insurer NL."""


@cache
def sample_scenario() -> Scenario:
    """The parsed, validated sample world file (read once)."""
    return load_scenario(SCENARIO_FILE)


def install_sample_world(
    conn: psycopg.Connection[Any], *, prefix: str, replace: bool = False
) -> LoadedScenario:
    """Load the sample world into the migrated database of ``conn`` (a superuser) and provision it."""
    return install_scenario(conn, sample_scenario(), prefix=prefix, replace=replace)


# ------------------------------------------------------------------------------------------------
# What the file says, in the tests' readable keys
# ------------------------------------------------------------------------------------------------

_SCENARIO = sample_scenario()
#: Row keys and ids do not depend on the moment; any aware time places the relative ones.
_WORLD: World = _SCENARIO.world(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def _readable_keys(world: World) -> dict[str, dict[Any, str]]:
    """table -> id -> readable key, as ``id_to_key`` reads them from a database holding ``world``."""
    agency = {a.id: a.code for a in world.agency}
    insurer = {i.id: i.code for i in world.insurer}
    contract = {c.id: c.policy_number for c in world.contract}
    notice = {n.id: n.body if n.body is not None else f"#notice{n.id}" for n in world.notice}
    natural: dict[str, list[tuple[Any, str]]] = {
        "insurer": [(i.id, i.code) for i in world.insurer],
        "agency": [(a.id, a.code) for a in world.agency],
        "supervision": [
            (s.id, f"{agency[s.supervising_agency_id]}>{agency[s.working_agency_id]}")
            for s in world.supervision
        ],
        "entrustment": [(e.id, f"{agency[e.agency_id]}:{insurer[e.insurer_id]}") for e in world.entrustment],
        "customer": [(c.id, c.full_name) for c in world.customer],
        "contract": [(c.id, c.policy_number) for c in world.contract],
        "contract_handler": [
            (h.id, f"{contract[h.contract_id]}@{agency[h.agency_id]}") for h in world.contract_handler
        ],
        "notice": list(notice.items()),
        "notice_receipt": [
            (r.id, f"{notice[r.notice_id]}@{agency[r.agency_id]}") for r in world.notice_receipt
        ],
    }
    keys: dict[str, dict[Any, str]] = {"principal": {p.role_name: p.role_name for p in world.principal}}
    for table, rows in natural.items():
        counts = Counter(key for _, key in rows)
        keys[table] = {row_id: key if counts[key] == 1 else f"{key}#{row_id}" for row_id, key in rows}
    return keys


_KEYS = _readable_keys(_WORLD)

#: Every principal of the world, role names without prefix: the agencies' and insurers' defaults
#: (as ``provision`` creates them), then the file's own principal rows (the seconded staff).
PRINCIPALS: tuple[str, ...] = (
    *(f"agency_{a.code.lower()}" for a in _WORLD.agency),
    *(f"insurer_{i.code.lower()}" for i in _WORLD.insurer),
    *(p for p in _SCENARIO.principals if not p.startswith(("agency_", "insurer_"))),
)
assert sorted(PRINCIPALS) == sorted(_SCENARIO.principals) and STAFF_ROLE in PRINCIPALS

INSURER_IDS: dict[str, int] = {i.code: i.id for i in _WORLD.insurer}
AGENCY_IDS: dict[str, int] = {a.code: a.id for a in _WORLD.agency}
CUSTOMER_IDS: dict[str, int] = {c.full_name: c.id for c in _WORLD.customer}
CONTRACT_IDS: dict[str, int] = {c.policy_number: c.id for c in _WORLD.contract}
NOTICE_IDS: dict[str, int] = {_SCENARIO.name("notice", n.id): n.id for n in _WORLD.notice}
NOTICE_BODIES: dict[str, str] = {_SCENARIO.name("notice", n.id): str(n.body) for n in _WORLD.notice}


def _expected() -> dict[str, dict[str, frozenset[str]]]:
    """The file's ``sees`` of every principal and table (the file gives one for each)."""
    expected: dict[str, dict[str, frozenset[str]]] = {}
    for principal in PRINCIPALS:
        expected[principal] = {}
        for table in TABLES:
            expectation = _SCENARIO.expectation(principal, table)
            if expectation is None or expectation.sees is None:
                raise ValueError(f"{SCENARIO_FILE}: no 'sees' for {principal} x {table}")
            expected[principal][table] = frozenset(_KEYS[table][key] for key in expectation.sees)
    return expected


#: principal (without prefix) -> table -> the exact rows it must see, as readable keys.
EXPECTED: dict[str, dict[str, frozenset[str]]] = _expected()


class WriteCase(TypedDict):
    """A write of the file: must succeed touching ``rows`` rows (allowed) or fail (refused)."""

    label: str
    role: str  # without prefix
    sql: str
    allowed: bool
    rows: int | None  # None for refused writes


WRITES: list[WriteCase] = [
    {"label": w.name, "role": w.principal, "sql": w.sql, "allowed": w.expect_ok, "rows": w.rows}
    for w in _SCENARIO.writes
]


class IncidentCheck(NamedTuple):
    """A named case of the file, as a count query to run as ``role``; ``expected`` rows of it visible."""

    label: str
    role: str  # without prefix
    sql: str
    expected: int


def count_query(case: NamedCase, *, prefix: str = "") -> str:
    """SQL counting, as the principal that runs it, the rows of ``case`` it sees (ids only: no input)."""
    parts = []
    for table in case.tables:
        keys = sorted(case.rows(table), key=str)
        if table == "principal":
            names = ", ".join("'" + (prefix + str(k)).replace("'", "''") + "'" for k in keys)
            parts.append(f"(SELECT count(*) FROM public.principal WHERE role_name IN ({names}))")
        else:
            ids = ", ".join(str(int(k)) for k in keys)
            parts.append(f"(SELECT count(*) FROM public.{table} WHERE id IN ({ids}))")
    return "SELECT " + " + ".join(parts)


#: The incident replay (``agency-rls demo``): the file's named cases, by name.
INCIDENT_CHECKS: list[IncidentCheck] = sorted(
    (IncidentCheck(c.name, c.principal, count_query(c), c.expected_count) for c in _SCENARIO.cases),
    key=lambda check: check.label,
)

# ------------------------------------------------------------------------------------------------
# Row keys read from a database: ids are read AS THE PRINCIPAL (under row-level security), keys are
# built by a superuser (joined tables would otherwise be filtered too and drop or blur rows).
# ------------------------------------------------------------------------------------------------

_KEY_SQL: Mapping[str, str] = {
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

    Keys as in the module docstring; role names without ``prefix``. When several rows share a key,
    each gets '#<id>' appended (e.g. 'S1>W11#1', 'S1>W11#2').
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

"""A scenario file: a world, what each principal must and must not see, and writes that must succeed
or fail. ``agency-rls check`` loads it into a database and compares the database, the file and the
reference model (``agency_rls.checks.check``); this module only reads and validates it.

Top-level keys (everything but the world is optional)::

    description: free text
    insurer: [...]    agency: [...]   ...   principal: [...]     # the world: see scenario_world
    expect:
      agency_w11:                      # a principal: default role name without prefix, or declared
        contract:                      # a table of the spec
          sees: [NL/NL-1003]           # exactly these rows (by their keys; [] = none)
          must_see: [NL/NL-1003]       # at least these
          must_not_see: [GW1/GW1-2001] # none of these
        customer:
          must_not_see:                # or named lists (cases), e.g. for a demo's replay:
            "incident 1: W11 reads S1's customers": [Aoki Haruto]
    writes:
      - name: W11 updates a customer it sees                 # optional; default: the SQL
        as: agency_w11
        sql: UPDATE public.customer SET phone = '1' WHERE id = {customer:ito}
        expect: ok                     # ok | error
        rows: 1                        # with ok: the row count the statement must report
        sqlstate: '42501'              # with error: the SQLSTATE it must fail with

A ``must_see`` / ``must_not_see`` given as a mapping names its lists: each name is a *case* whose rows
count as listed in that mode; a case may name rows of several tables and of both modes (the rows it
must see, the rows it must not), and ``Scenario.cases`` gathers them per principal and name.

``{table:key}`` in a write's SQL is replaced by the row's id (``{contract:NL/NL-1001}``,
``{notice:n3}``, ``{agency:W11}``). Each write runs in a transaction of its own that is rolled back.
A file without ``expect`` and ``writes`` (e.g. a world printed by the fuzzer) is still checked:
the database must show every principal exactly what the reference model shows.

Mistakes are reported as ``file:line: message`` (``ScenarioError``): malformed YAML, unknown keys
(with a suggestion), unknown or ambiguous labels, contradicting expectations, broken rows.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from agency_rls.reference_model.scenario_columns import contract_reference
from agency_rls.reference_model.scenario_world import WorldParser, WorldSpec
from agency_rls.reference_model.scenario_yaml import Issues, LocatedList, LocatedMap, ScenarioError, compose
from agency_rls.reference_model.world import TABLES, World

__all__ = [
    "Expectation",
    "NamedCase",
    "NamedRows",
    "Scenario",
    "ScenarioError",
    "Write",
    "load_scenario_file",
    "parse_scenario",
]

TOP_KEYS = ("description", *TABLES, "expect", "writes")
MODES = ("sees", "must_see", "must_not_see")
WRITE_KEYS = ("name", "as", "sql", "expect", "rows", "sqlstate")
PLACEHOLDER = re.compile(r"\{([A-Za-z_]+):([^{}]+)\}")


@dataclass(frozen=True)
class NamedRows:
    """A named ``must_see`` / ``must_not_see`` list of one expectation (part of a ``NamedCase``)."""

    name: str
    visible: bool  # listed under must_see
    rows: frozenset[int | str]
    line: int


@dataclass(frozen=True)
class Expectation:
    """What one principal must (not) see of one table; row keys are ids (role names for principal)."""

    principal: str
    table: str
    sees: frozenset[int | str] | None
    must_see: frozenset[int | str]
    must_not_see: frozenset[int | str]
    line: int
    named: tuple[NamedRows, ...] = ()

    def expects(self, key: int | str) -> tuple[bool, str] | None:
        """Whether the file expects the row visible, and the list saying so; None when it says nothing."""
        if self.sees is not None:
            return key in self.sees, "sees"
        if key in self.must_see:
            return True, "must_see"
        if key in self.must_not_see:
            return False, "must_not_see"
        return None

    @property
    def mentioned(self) -> frozenset[int | str]:
        """Every row the expectation names."""
        return (self.sees or frozenset()) | self.must_see | self.must_not_see


@dataclass(frozen=True)
class Write:
    """A statement a principal runs; it must succeed (touching ``rows`` rows) or fail."""

    name: str
    principal: str
    sql: str  # placeholders already replaced by ids
    expect_ok: bool
    rows: int | None
    sqlstate: str | None
    line: int


@dataclass(frozen=True)
class NamedCase:
    """A named check of one principal: rows it must see and rows it must not, by table."""

    principal: str
    name: str
    must_see: dict[str, frozenset[int | str]]
    must_not_see: dict[str, frozenset[int | str]]
    line: int  # where the name first appears

    @property
    def expected_count(self) -> int:
        """How many of the case's rows the principal must see."""
        return sum(len(rows) for rows in self.must_see.values())

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables the case names rows of, in the spec's order."""
        return tuple(t for t in TABLES if t in self.must_see or t in self.must_not_see)

    def rows(self, table: str) -> frozenset[int | str]:
        """Every row of ``table`` the case names (to see or not)."""
        return self.must_see.get(table, frozenset()) | self.must_not_see.get(table, frozenset())


@dataclass(frozen=True)
class Scenario:
    """A parsed, valid scenario file."""

    path: str
    description: str | None
    spec: WorldSpec
    expectations: tuple[Expectation, ...]
    writes: tuple[Write, ...]

    def world(self, now: dt.datetime) -> World:
        """The world with every relative time placed around ``now``; default principals included."""
        return self.spec.world(now)

    @property
    def principals(self) -> tuple[str, ...]:
        """Every principal's role name, without prefix."""
        return self.spec.principals

    def expectation(self, principal: str, table: str) -> Expectation | None:
        """The file's expectation for ``principal`` on ``table``, if any."""
        return next((e for e in self.expectations if (e.principal, e.table) == (principal, table)), None)

    @property
    def cases(self) -> tuple[NamedCase, ...]:
        """The named must_see / must_not_see lists, gathered per principal and name, in file order."""
        gathered: dict[tuple[str, str], NamedCase] = {}
        for expectation in self.expectations:
            for named in expectation.named:
                key = (expectation.principal, named.name)
                case = gathered.setdefault(key, NamedCase(key[0], key[1], {}, {}, named.line))
                into = case.must_see if named.visible else case.must_not_see
                into[expectation.table] = into.get(expectation.table, frozenset()) | named.rows
        return tuple(sorted(gathered.values(), key=lambda c: c.line))

    def name(self, table: str, key: int | str) -> str:
        """A row's readable name (label, natural key or ``#id``)."""
        return self.spec.name(table, key)

    def id(self, table: str, reference: str) -> int | str:
        """The id (role name for principal) of the row ``reference`` names; ``LookupError`` if none."""
        return self.spec.resolve(table, reference)


def load_scenario_file(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ``ScenarioError`` names file, line and key of every mistake."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError([f"{source}: cannot read: {error}"]) from None
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate scenario ``text``; ``source`` names it in messages."""
    issues = Issues(source)
    doc = compose(text, issues)
    if doc is None:
        issues.fail(0, "empty scenario file")
    if not isinstance(doc, LocatedMap):
        issues.fail(1, "a scenario is a mapping (description, tables, expect, writes)")
    for key in doc:
        if key not in TOP_KEYS:
            issues.unknown(doc.line_of(key), "key", key, "the scenario", TOP_KEYS)
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        issues.add(doc.line_of("description"), "description must be text")
    spec = WorldParser(doc, issues).parse()
    expectations = _expectations(doc, spec, issues)
    writes = _writes(doc, spec, issues)
    issues.raise_if_any()
    return Scenario(source, description, spec, expectations, writes)


def _expectations(doc: LocatedMap, spec: WorldSpec, issues: Issues) -> tuple[Expectation, ...]:
    section = doc.get("expect")
    if section is None:
        return ()
    if not isinstance(section, LocatedMap):
        issues.add(doc.line_of("expect"), "expect: a mapping of principal to tables")
        return ()
    found = []
    for principal, tables in section.items():
        line = section.line_of(principal)
        if principal not in spec.principals:
            issues.unknown(line, "principal", principal, "expect", spec.principals)
            continue
        if not isinstance(tables, LocatedMap):
            issues.add(line, f"expect.{principal}: a mapping of table to sees / must_see / must_not_see")
            continue
        for table, modes in tables.items():
            where = f"expect.{principal}.{table}"
            if table not in TABLES:
                issues.unknown(tables.line_of(table), "table", table, f"expect.{principal}", TABLES)
                continue
            if not isinstance(modes, LocatedMap):
                issues.add(tables.line_of(table), f"{where}: a mapping of sees / must_see / must_not_see")
                continue
            found.append(_expectation(principal, table, modes, spec, issues, where, tables.line_of(table)))
    return tuple(found)


def _expectation(
    principal: str, table: str, modes: LocatedMap, spec: WorldSpec, issues: Issues, where: str, line: int
) -> Expectation:
    rows: dict[str, frozenset[int | str]] = {}
    named: list[NamedRows] = []
    for mode, items in modes.items():
        if mode not in MODES:
            issues.unknown(modes.line_of(mode), "key", mode, where, MODES)
            continue
        if mode != "sees" and isinstance(items, LocatedMap):  # named lists: {case name: [keys]}
            keys = set()
            for name, listed in items.items():
                name_line = items.line_of(name)
                if not isinstance(listed, LocatedList):
                    issues.add(name_line, f"{where}.{mode}.{name}: a list of {table} keys")
                    continue
                found = _keys(listed, table, spec, issues, f"{where}.{mode}")
                named.append(NamedRows(name, mode == "must_see", found, name_line))
                keys |= found
            rows[mode] = frozenset(keys)
            continue
        if not isinstance(items, LocatedList):
            what = "" if mode == "sees" else " (or a mapping of case name to such lists)"
            issues.add(modes.line_of(mode), f"{where}.{mode}: a list of {table} keys ([] for none){what}")
            continue
        rows[mode] = _keys(items, table, spec, issues, f"{where}.{mode}")
    sees, must, must_not = (
        rows.get("sees"),
        rows.get("must_see", frozenset()),
        rows.get("must_not_see", frozenset()),
    )
    for what, clash in (
        ("in sees and must_not_see", (sees or frozenset()) & must_not),
        ("in must_see but not in sees", must - sees if sees is not None else frozenset()),
        ("in must_see and must_not_see", must & must_not),
    ):
        if clash:
            names = ", ".join(sorted(spec.name(table, k) for k in clash))
            issues.add(line, f"{where}: contradicting expectations: {names} {what}")
    return Expectation(principal, table, sees, must, must_not, line, tuple(named))


def _keys(
    items: LocatedList, table: str, spec: WorldSpec, issues: Issues, where: str
) -> frozenset[int | str]:
    """The row keys a list of references names (each mistake recorded at its line)."""
    keys = set()
    for item, item_line in zip(items, items.item_lines, strict=True):
        reference = contract_reference(item) if table == "contract" else item
        if isinstance(reference, bool) or not isinstance(reference, str | int):
            issues.add(item_line, f"{where}: {item!r} is not a {table} key")
            continue
        try:
            keys.add(spec.resolve(table, str(reference)))
        except LookupError:
            _unresolved(issues, item_line, table, str(reference), where, spec)
    return frozenset(keys)


def _writes(doc: LocatedMap, spec: WorldSpec, issues: Issues) -> tuple[Write, ...]:
    section = doc.get("writes")
    if section is None:
        return ()
    if not isinstance(section, LocatedList):
        issues.add(doc.line_of("writes"), "writes: a list of writes (as, sql, expect)")
        return ()
    writes = []
    for index, (item, line) in enumerate(zip(section, section.item_lines, strict=True)):
        where = f"writes[{index}]"
        if not isinstance(item, LocatedMap):
            issues.add(line, f"{where}: a mapping with as, sql and expect")
            continue
        write = _write(item, spec, issues, where)
        if write is not None:
            writes.append(write)
    return tuple(writes)


def _write(item: LocatedMap, spec: WorldSpec, issues: Issues, where: str) -> Write | None:
    count = len(issues.found)
    for key in item:
        if key not in WRITE_KEYS:
            issues.unknown(item.line_of(key), "key", key, where, WRITE_KEYS)
    for key in ("as", "sql", "expect"):
        if key not in item:
            issues.add(item.line, f"{where}: missing {key!r}")
    principal, sql, expect = item.get("as"), item.get("sql"), item.get("expect")
    if "as" in item and principal not in spec.principals:
        issues.unknown(item.line_of("as"), "principal", str(principal), f"{where}.as", spec.principals)
    if "sql" in item and not (isinstance(sql, str) and sql.strip()):
        issues.add(item.line_of("sql"), f"{where}: sql must be a statement")
    if "expect" in item and expect not in ("ok", "error"):
        issues.add(item.line_of("expect"), f"{where}: expect must be ok or error, not {expect!r}")
    rows, sqlstate = item.get("rows"), item.get("sqlstate")
    if rows is not None and (
        isinstance(rows, bool) or not isinstance(rows, int) or rows < 0 or expect != "ok"
    ):
        issues.add(item.line_of("rows"), f"{where}: rows is a row count, and only goes with expect: ok")
    if sqlstate is not None and (not isinstance(sqlstate, str) or len(sqlstate) != 5 or expect != "error"):
        issues.add(
            item.line_of("sqlstate"), f"{where}: sqlstate is a quoted 5-character code, with expect: error"
        )
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        issues.add(item.line_of("name"), f"{where}: name must be text")
    if not isinstance(sql, str):
        return None
    statement = _substitute(sql, spec, issues, item.line_of("sql"), where)
    if len(issues.found) > count:
        return None
    return Write(
        name if isinstance(name, str) else " ".join(sql.split()),
        str(principal),
        statement,
        expect == "ok",
        rows,
        sqlstate,
        item.line,
    )


def _substitute(sql: str, spec: WorldSpec, issues: Issues, line: int, where: str) -> str:
    """Replace ``{table:key}`` by the row's id."""

    def replace(match: re.Match[str]) -> str:
        table, reference = match[1], match[2].strip()
        if table not in TABLES or table == "principal":
            known = [t for t in TABLES if t != "principal"]
            issues.unknown(line, "table", table, f"{where}.sql {match[0]}", known)
            return match[0]
        try:
            return str(spec.resolve(table, reference))
        except LookupError:
            _unresolved(issues, line, table, reference, f"{where}.sql", spec)
            return match[0]

    return PLACEHOLDER.sub(replace, sql)


def _unresolved(issues: Issues, line: int, table: str, reference: str, where: str, spec: WorldSpec) -> None:
    """Report a reference to no row, or to several rows sharing a natural key."""
    if reference in spec.ambiguous[table]:
        issues.add(
            line, f"ambiguous {table} {reference!r} in {where}: several rows have it (use a label or #id)"
        )
    else:
        issues.unknown(line, table, reference, where, spec.aliases[table])

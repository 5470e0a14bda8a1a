"""The world part of a scenario file: the spec's rows, written by readable keys, checked line by line.

A scenario names rows the way people do: agency ``W11``, contract ``NL/NL-1001``, customer
``Ito Kenji`` (or a label), and gives labels to rows without a natural key (notices, ...). The same
format is what ``scenario.world_to_yaml`` dumps (explicit ``id`` and ``*_id`` columns, times relative
to now), so a failing fuzz world is a valid scenario as it is. How columns are written, typed and
defaulted: ``scenario_columns``.

Every row is known by a key: its ``label`` if the row has one (supervision, entrustment, customer,
contract_handler, notice, notice_receipt), else its natural key if no other row shares it, else
``#<id>``. Natural keys: insurer and agency ``code``; supervision ``S1>W11`` (S1 supervises W11);
entrustment ``NL>W11`` (NL entrusts W11); customer ``full_name``; contract ``NL/NL-1001`` (and the bare
policy number when unique); contract_handler ``NL/NL-1001@W11``; notice_receipt ``<notice>@W11``;
principal ``role_name`` (without the role prefix). References in rows, expectations and writes
accept any of these (and ``#<id>``); one that several rows share is refused as ambiguous.

Tables are parsed in the spec's insert order, so a reference can be resolved as soon as it is read
(renewals, which point into their own table, come after the contracts' names). Ids the file omits
are numbered after the largest explicit id of the table, in file order. Every agency and insurer
gets its default principal (``agency_<code>``, ``insurer_<code>``) unless the file declares it, as
``provision`` would.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from agency_rls.reference_model.scenario_columns import (
    DEFAULTS,
    KINDS,
    LABELLED,
    REFS,
    Ref,
    contract_reference,
    convert,
    place,
    readable,
    written_by_name,
)
from agency_rls.reference_model.scenario_yaml import Issues, LocatedList, LocatedMap
from agency_rls.reference_model.world import ROW_TYPES, TABLES, World


@dataclass(frozen=True)
class RowSpec:
    """One row as the file gives it; times stay relative (timedelta from now) until ``WorldSpec.world``."""

    table: str
    key: int | str  # id, or role_name for principal
    values: Mapping[str, Any]
    line: int  # a default principal the file leaves implicit: its agency or insurer row's line
    label: str | None = None


@dataclass(frozen=True)
class WorldSpec:
    """The rows of a scenario and the names they are known by."""

    rows: Mapping[str, tuple[RowSpec, ...]]
    #: table -> row key -> the name shown in reports (label, natural key or #id)
    names: Mapping[str, Mapping[int | str, str]]
    #: table -> every accepted reference (label, natural key, #id ...) -> row key
    aliases: Mapping[str, Mapping[str, int | str]]
    #: table -> natural keys several rows share (refer to those rows by label or #id)
    ambiguous: Mapping[str, frozenset[str]]

    def world(self, now: dt.datetime) -> World:
        """The rows as a ``World``, every relative time placed around ``now`` (timezone-aware)."""
        tables = {}
        for table in TABLES:
            row_type, kinds = ROW_TYPES[table], KINDS[table]
            tables[table] = tuple(
                row_type(**{c: place(kinds[c][0], v, now) for c, v in spec.values.items()})
                for spec in self.rows[table]
            )
        return World(**tables)

    def name(self, table: str, key: int | str) -> str:
        """The readable name of a row (``#<id>`` for a row the file does not have)."""
        return self.names[table].get(key, f"#{key}")

    def resolve(self, table: str, reference: str) -> int | str:
        """The key of the row ``reference`` names; ``LookupError`` with a readable reason otherwise."""
        found = self.aliases[table].get(reference)
        if found is not None:
            return found
        if reference in self.ambiguous[table]:
            raise LookupError(f"ambiguous {table} {reference!r}: several rows have it (use a label or #id)")
        raise LookupError(f"unknown {table} {reference!r}")

    @property
    def principals(self) -> tuple[str, ...]:
        """Every principal's role name (without prefix), the defaults included."""
        return tuple(str(r.key) for r in self.rows["principal"])


@dataclass
class _Draft:
    """A row being parsed."""

    where: str  # e.g. contract[3]
    item: LocatedMap
    values: dict[str, Any] = field(default_factory=dict)
    key: int | str | None = None
    label: str | None = None

    def line(self, column: str | None = None) -> int:
        return self.item.line if column is None else self.item.line_of(column)


class WorldParser:
    """Reads the table sections of a scenario document into a ``WorldSpec``, recording every problem."""

    def __init__(self, doc: LocatedMap, issues: Issues) -> None:
        self.doc = doc
        self.issues = issues
        self.drafts: dict[str, list[_Draft]] = {t: [] for t in TABLES}
        self.aliases: dict[str, dict[str, int | str]] = {t: {} for t in TABLES}
        self.ambiguous: dict[str, set[str]] = {t: set() for t in TABLES}
        self.names: dict[str, dict[int | str, str]] = {t: {} for t in TABLES}

    def parse(self) -> WorldSpec:
        """Parse every table in insert order (references point backwards, but for renewals)."""
        for table in TABLES:
            self._table(table)
        self._default_principals()
        self._check_rows()
        rows = {
            t: tuple(
                RowSpec(t, d.key, d.values, d.item.line, d.label)
                for d in self.drafts[t]
                if d.key is not None and set(d.values) == set(KINDS[t])
            )
            for t in TABLES
        }
        spec = WorldSpec(rows, self.names, self.aliases, {t: frozenset(a) for t, a in self.ambiguous.items()})
        if not self.issues.found:
            try:  # the schema's constraints, as the loader would meet them
                spec.world(dt.datetime.now(dt.UTC)).check()
            except ValueError as error:
                self.issues.add(0, str(error))
        return spec

    # -- one table ------------------------------------------------------------------------------

    def _table(self, table: str) -> None:
        section = self.doc.get(table)
        if section is None:
            return
        if not isinstance(section, LocatedList):
            self.issues.add(self.doc.line_of(table), f"{table}: expected a list of rows")
            return
        drafts = self.drafts[table]
        for index, (item, line) in enumerate(zip(section, section.item_lines, strict=True)):
            where = f"{table}[{index}]"
            if not isinstance(item, LocatedMap):
                self.issues.add(line, f"{where}: a row is a mapping of column: value")
                continue
            drafts.append(self._draft(table, where, item))
        self._assign_ids(table, drafts)
        for draft in drafts:
            self._references(table, draft, same_table=False)
        self._register(table, drafts)
        for draft in drafts:
            self._references(table, draft, same_table=True)
            self._defaults(table, draft)

    def _draft(self, table: str, where: str, item: LocatedMap) -> _Draft:
        """Check the row's keys and convert its plain columns (references come later)."""
        draft = _Draft(where, item)
        refs = {r.name: r for r in REFS.get(table, ())}
        allowed = set(KINDS[table]) | set(refs) | ({"label"} if table in LABELLED else set())
        for key in item:
            if key not in allowed:
                self.issues.unknown(item.line_of(key), "key", key, where, sorted(allowed))
        for ref in refs.values():
            if ref.name in item and ref.column in item:
                self.issues.add(
                    item.line_of(ref.name), f"{where}: give {ref.name!r} or {ref.column!r}, not both"
                )
        if "label" in item and table in LABELLED:
            label = item["label"]
            if not isinstance(label, str) or not label or label.startswith("#"):
                self.issues.add(item.line_of("label"), f"{where}: a label is text not starting with '#'")
            else:
                draft.label = label
        ref_columns = {r.column for r in refs.values()}
        for column in KINDS[table]:
            if column in item and column not in ref_columns and column != "id":
                value, problem = convert(table, column, item[column])
                if problem is None:
                    draft.values[column] = value
                else:
                    self.issues.add(item.line_of(column), f"{where}: {column} {problem}")
        return draft

    def _assign_ids(self, table: str, drafts: list[_Draft]) -> None:
        if table == "principal":
            for draft in drafts:
                name = draft.values.get("role_name")
                draft.key = name if isinstance(name, str) else None
            return
        taken: dict[int, int] = {}
        for draft in drafts:
            if "id" not in draft.item:
                continue
            ident, line = draft.item["id"], draft.item.line_of("id")
            if isinstance(ident, bool) or not isinstance(ident, int) or ident < 1:
                self.issues.add(line, f"{draft.where}: id must be a positive integer, not {ident!r}")
            elif ident in taken:
                self.issues.add(line, f"{draft.where}: id {ident} is already used on line {taken[ident]}")
            else:
                taken[ident] = line
                draft.key = ident
        next_id = max(taken, default=0) + 1
        for draft in drafts:
            if draft.key is None and "id" not in draft.item:
                draft.key = next_id
                next_id += 1
        for draft in drafts:
            if draft.key is not None:
                draft.values["id"] = draft.key

    # -- references -----------------------------------------------------------------------------

    def _references(self, table: str, draft: _Draft, *, same_table: bool) -> None:
        for ref in REFS.get(table, ()):
            if (ref.target == table) != same_table:
                continue
            if ref.name in draft.item:
                written, line = draft.item[ref.name], draft.line(ref.name)
                if ref.target == "contract":
                    written = contract_reference(written)
                if written is None:
                    self._null(table, ref, draft, line)
                    continue
                if isinstance(written, bool) or not isinstance(written, str | int):
                    self.issues.add(
                        line, f"{draft.where}: {ref.name} must name a {ref.target}, not {written!r}"
                    )
                    continue
                found = self._lookup(ref, str(written), draft, line)
            elif ref.column in draft.item:
                ident, line = draft.item[ref.column], draft.line(ref.column)
                if ident is None:
                    self._null(table, ref, draft, line)
                    continue
                known = (
                    isinstance(ident, int) and not isinstance(ident, bool) and ident in self.names[ref.target]
                )
                found = ident if known else None
                if found is None:
                    self.issues.add(line, f"{draft.where}: {ref.column}: no {ref.target} with id {ident!r}")
            else:
                continue
            if found is not None:
                draft.values[ref.column] = found

    def _null(self, table: str, ref: Ref, draft: _Draft, line: int) -> None:
        if KINDS[table][ref.column][1]:
            draft.values[ref.column] = None
        else:
            self.issues.add(line, f"{draft.where}: {ref.name} must name a {ref.target}")

    def _lookup(self, ref: Ref, written: str, draft: _Draft, line: int) -> int | str | None:
        """The row key ``written`` names in ``ref.target``; a bare policy number is tried under the row's
        own insurer first."""
        aliases = self.aliases[ref.target]
        candidates = [written]
        insurer = draft.values.get("insurer_id")
        if ref.target == "contract" and "/" not in written and insurer is not None:
            candidates.insert(0, f"{self.names['insurer'][insurer]}/{written}")
        for candidate in candidates:
            if candidate in aliases:
                return aliases[candidate]
        if written in self.ambiguous[ref.target]:
            self.issues.add(
                line,
                f"{draft.where}: {ref.name}: {written!r} names several {ref.target} rows (use a label or #id)",
            )
        else:
            self.issues.unknown(line, ref.target, written, f"{draft.where}.{ref.name}", aliases)
        return None

    def _defaults(self, table: str, draft: _Draft) -> None:
        values = draft.values
        if table in ("insurer", "agency") and "name" not in values and isinstance(values.get("code"), str):
            values["name"] = values["code"]
        if table == "notice" and "insurer_id" not in values and "insurer" not in draft.item:
            contract = self._draft_of("contract", values.get("contract_id"))
            if contract is not None and "insurer_id" in contract.values:
                values["insurer_id"] = contract.values["insurer_id"]
        if table == "principal" and "kind" not in values and "kind" not in draft.item:
            values["kind"] = "agency" if values.get("agency_id") is not None else "insurer"
        for (t, column), default in DEFAULTS.items():
            if t == table and column not in values and column not in draft.item:
                values[column] = default
        for f in fields(ROW_TYPES[table]):
            if f.name in values or f.name in draft.item or written_by_name(table, f.name, draft.item):
                continue
            if f.default is not MISSING:
                values[f.name] = f.default
            else:
                self.issues.add(draft.line(), f"{draft.where}: missing {readable(table, f.name)}")

    def _draft_of(self, table: str, key: Any) -> _Draft | None:
        return next((d for d in self.drafts[table] if key is not None and d.key == key), None)

    # -- names ----------------------------------------------------------------------------------

    def _natural(self, table: str, draft: _Draft) -> str | None:
        """The natural key of a row (None when the table has none, or a part is missing)."""
        v = draft.values
        agency, insurer = self.names["agency"], self.names["insurer"]
        try:
            if table in ("insurer", "agency"):
                return str(v["code"])
            if table == "supervision":
                return f"{agency[v['supervising_agency_id']]}>{agency[v['working_agency_id']]}"
            if table == "entrustment":
                return f"{insurer[v['insurer_id']]}>{agency[v['agency_id']]}"
            if table == "customer":
                return str(v["full_name"])
            if table == "contract":
                return f"{insurer[v['insurer_id']]}/{v['policy_number']}"
            if table == "contract_handler":
                return f"{self.names['contract'][v['contract_id']]}@{agency[v['agency_id']]}"
            if table == "notice_receipt":
                return f"{self.names['notice'][v['notice_id']]}@{agency[v['agency_id']]}"
            if table == "principal":
                return str(v["role_name"])
        except KeyError:
            return None
        return None

    def _register(self, table: str, drafts: list[_Draft]) -> None:
        """Give every row its name and aliases: label, natural key (if unique), #id; for contracts also
        the bare policy number (if unique)."""
        naturals = {id(d): self._natural(table, d) for d in drafts}
        counts = Counter(n for n in naturals.values() if n is not None)
        owners = {n: d for d in drafts if (n := naturals[id(d)]) is not None}
        bare = Counter(d.values.get("policy_number") for d in drafts) if table == "contract" else Counter()
        aliases, names = self.aliases[table], self.names[table]
        labels: dict[str, int] = {}
        for draft in drafts:
            if draft.key is None:
                continue
            natural = naturals[id(draft)]
            if natural is not None and counts[natural] > 1:
                if table in ("insurer", "agency", "contract", "principal"):
                    what = {"contract": "policy number of this insurer", "principal": "role_name"}
                    self.issues.add(
                        draft.line(), f"{draft.where}: duplicate {what.get(table, 'code')} {natural!r}"
                    )
                self.ambiguous[table].add(natural)
                natural = None
            if draft.label is not None:
                line = draft.line("label")
                if draft.label in labels:
                    self.issues.add(
                        line,
                        f"{draft.where}: label {draft.label!r} is already used on line {labels[draft.label]}",
                    )
                elif draft.label in owners and (counts[draft.label] > 1 or owners[draft.label] is not draft):
                    self.issues.add(
                        line, f"{draft.where}: label {draft.label!r} is another {table} row's name"
                    )
                labels[draft.label] = line
            names[draft.key] = draft.label or natural or f"#{draft.key}"
            for alias in (f"#{draft.key}", natural, draft.label):
                if alias is not None:
                    aliases[alias] = draft.key
            number = draft.values.get("policy_number")
            if table == "contract" and isinstance(number, str):
                if bare[number] == 1:
                    aliases.setdefault(number, draft.key)
                else:
                    self.ambiguous[table].add(number)

    # -- whole world ----------------------------------------------------------------------------

    def _default_principals(self) -> None:
        """Add ``agency_<code>`` / ``insurer_<code>`` rows the file does not declare (as provision would)."""
        declared = {d.key: d for d in self.drafts["principal"] if d.key is not None}
        for kind in ("agency", "insurer"):
            for draft in self.drafts[kind]:
                code = draft.values.get("code")
                if draft.key is None or not isinstance(code, str):
                    continue
                role = f"{kind}_{code.lower()}"
                wanted = {
                    "role_name": role,
                    "kind": kind,
                    "agency_id": draft.key if kind == "agency" else None,
                    "insurer_id": draft.key if kind == "insurer" else None,
                }
                if role in declared:
                    mine = declared[role]
                    if {c: mine.values.get(c) for c in wanted} != wanted:
                        self.issues.add(
                            mine.line(),
                            f"{mine.where}: {role!r} is the default principal of {kind} {code!r} and must map to it",
                        )
                    continue
                implicit = _Draft(
                    f"{draft.where} (its principal)", LocatedMap(draft.line()), values=wanted, key=role
                )
                self.drafts["principal"].append(implicit)
                self.names["principal"][role] = role
                self.aliases["principal"][role] = role

    def _check_rows(self) -> None:
        """The spec's row constraints, reported at the row's line (``World.check`` repeats them)."""
        contract_insurer = {d.key: d.values.get("insurer_id") for d in self.drafts["contract"]}
        for d in self.drafts["notice"]:
            v = d.values
            if (
                v.get("kind") not in ("general", "message", None)
                and not v.get("contract_id")
                and not v.get("customer_id")
            ):
                self.issues.add(d.line(), f"{d.where}: a {v['kind']} notice names a contract or a customer")
            insurer = v.get("insurer_id")
            if (
                v.get("contract_id") is not None
                and insurer is not None
                and contract_insurer.get(v["contract_id"]) != insurer
            ):
                self.issues.add(
                    d.line(), f"{d.where}: a notice about a contract is issued by that contract's insurer"
                )
        seen: dict[tuple[Any, Any], int] = {}
        for d in self.drafts["notice_receipt"]:
            pair = (d.values.get("notice_id"), d.values.get("agency_id"))
            if pair in seen:
                self.issues.add(
                    d.line(),
                    f"{d.where}: this agency's receipt of this notice is already on line {seen[pair]}",
                )
            seen[pair] = d.line()
        for d in self.drafts["principal"]:
            v = d.values
            if v.get("kind") == "agency" and v.get("agency_id") is None:
                self.issues.add(d.line(), f"{d.where}: an agency principal names its agency")
            if v.get("kind") == "insurer" and (v.get("insurer_id") is None or v.get("agency_id") is not None):
                self.issues.add(d.line(), f"{d.where}: an insurer principal names its insurer and no agency")
        previous = {d.key: d.values.get("previous_contract_id") for d in self.drafts["contract"]}
        for d in self.drafts["contract"]:
            trail, at = {d.key}, previous.get(d.key)
            while at is not None:
                if at in trail:
                    self.issues.add(d.line(), f"{d.where}: previous contracts form a cycle")
                    break
                trail.add(at)
                at = previous.get(at)

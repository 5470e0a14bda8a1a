"""The columns of a scenario file's rows: how each is written, typed and defaulted.

A row's columns are the spec's (``world.py``'s row dataclasses, whose annotations give each column's
type and nullability). A reference column may also be written by the readable name of the row it
points at (the spec's ``*_id`` column in brackets)::

    supervision       supervising, working (agency codes)
    entrustment       agency, insurer
    customer          registered_by (agency code of a prospect)
    contract          insurer, previous (policy number of the generation it renews), policyholder,
                      insured (customer labels or names)
    contract_handler  contract (NL/NL-1001, or NL-1001 when unique), agency
    notice            insurer (default: the contract's), addressee, contract, customer
    notice_receipt    notice (its label), agency
    principal         agency, insurer (kind: agency when an agency is named, else insurer)

Values keep YAML's types and are checked here: text (enumerations included), booleans, numbers and
times, either relative to now (``now-30d``, kept as a ``timedelta`` until the world is placed around
a moment) or absolute (a datetime without a zone is UTC, as YAML says). Defaults beyond the spec's:
``name`` = ``code``; ``valid_from`` = ``now-10y`` (long valid), ``valid_to`` open; handler ``role``
primary; notice ``created_at`` and receipt ``read_at`` ``now``.

Why restate the enumerations instead of importing ``schema``: the reference model is a second,
independent reading of the spec, and a scenario file is written against the spec's words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from agency_rls.reference_model.scenario import offset
from agency_rls.reference_model.world import ROW_TYPES, TABLES

LONG_AGO = dt.timedelta(days=-3650)
"""Default ``valid_from``: a link the file does not date has been valid for ten years."""

NOTICE_KINDS = ("pending_paperwork", "maturity_list", "renewal", "claim", "message", "general")
#: The spec's enumerations (restated from scope-rules.md, not imported from ``schema``).
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("insurer", "line"): ("non_life", "life"),
    ("insurer", "kind"): ("operator", "gateway"),
    ("contract", "source"): ("direct", "gateway"),
    ("contract_handler", "role"): ("primary", "joint"),
    ("notice", "kind"): NOTICE_KINDS,
    ("principal", "kind"): ("agency", "insurer"),
}


@dataclass(frozen=True)
class Ref:
    """A column that points at another row: its readable name, the spec's column, the target table."""

    name: str
    column: str
    target: str


REFS: dict[str, tuple[Ref, ...]] = {
    "supervision": (
        Ref("supervising", "supervising_agency_id", "agency"),
        Ref("working", "working_agency_id", "agency"),
    ),
    "entrustment": (Ref("agency", "agency_id", "agency"), Ref("insurer", "insurer_id", "insurer")),
    "customer": (Ref("registered_by", "registered_by_agency_id", "agency"),),
    "contract": (
        Ref("insurer", "insurer_id", "insurer"),
        Ref("previous", "previous_contract_id", "contract"),
        Ref("policyholder", "policyholder_id", "customer"),
        Ref("insured", "insured_id", "customer"),
    ),
    "contract_handler": (Ref("contract", "contract_id", "contract"), Ref("agency", "agency_id", "agency")),
    "notice": (
        Ref("insurer", "insurer_id", "insurer"),
        Ref("addressee", "addressee_agency_id", "agency"),
        Ref("contract", "contract_id", "contract"),
        Ref("customer", "customer_id", "customer"),
    ),
    "notice_receipt": (Ref("notice", "notice_id", "notice"), Ref("agency", "agency_id", "agency")),
    "principal": (Ref("agency", "agency_id", "agency"), Ref("insurer", "insurer_id", "insurer")),
}
#: Tables whose rows may carry a ``label`` (the others have a natural key that is unique).
LABELLED = frozenset(
    {"supervision", "entrustment", "customer", "contract_handler", "notice", "notice_receipt"}
)
#: Defaults the readable format adds; ``None`` means null, a timedelta a time relative to now.
DEFAULTS: dict[tuple[str, str], Any] = {
    **{(t, "valid_from"): LONG_AGO for t in ("supervision", "entrustment", "contract_handler")},
    **{(t, "valid_to"): None for t in ("supervision", "entrustment", "contract_handler")},
    ("contract_handler", "role"): "primary",
    ("notice", "contract_id"): None,
    ("notice", "customer_id"): None,
    ("notice", "body"): None,
    ("notice", "created_at"): dt.timedelta(0),
    ("notice_receipt", "read_at"): dt.timedelta(0),
    ("principal", "agency_id"): None,
    ("principal", "insurer_id"): None,
}


_MARKERS = (
    ("dt.datetime", "datetime"),  # before dt.date, which it contains
    ("dt.date", "date"),
    ("Decimal", "decimal"),
    ("bool", "bool"),
    ("int", "int"),
)


def _column_kinds(row_type: type[Any]) -> dict[str, tuple[str, bool]]:
    """Column -> (kind, nullable), read from the row dataclass's annotations."""
    kinds = {}
    for f in fields(row_type):
        hint = str(f.type)
        kind = next((k for marker, k in _MARKERS if marker in hint), "text")
        kinds[f.name] = (kind, "None" in hint)
    return kinds


#: table -> column -> (kind, nullable); kind is text, int, bool, decimal, datetime or date.
KINDS = {table: _column_kinds(ROW_TYPES[table]) for table in TABLES}


def convert(table: str, column: str, raw: Any) -> tuple[Any, str | None]:
    """A plain (non-reference) column's value typed as the spec's column, or ``(None, problem)``."""
    kind, nullable = KINDS[table][column]
    problem: str
    if raw is None:
        if nullable:
            return None, None
        problem = "must not be empty"
    elif kind == "text":
        if isinstance(raw, str):
            allowed = ENUMS.get((table, column))
            if allowed is None or raw in allowed:
                return raw, None
            problem = f"must be one of {', '.join(allowed)}, not {raw!r}"
        else:
            problem = f"must be text, not {raw!r} (quote it)"
    elif kind == "bool":
        if isinstance(raw, bool):
            return raw, None
        problem = f"must be true or false, not {raw!r}"
    elif kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw, None
        problem = f"must be an integer, not {raw!r}"
    elif kind == "decimal":
        try:
            if not isinstance(raw, bool) and isinstance(raw, int | float | str):
                return Decimal(str(raw)), None
        except InvalidOperation:
            pass
        problem = f"must be a number, not {raw!r}"
    elif kind in ("datetime", "date"):
        value = moment(kind, raw)
        if value is not None:
            return value, None
        example = "'now-30d', 'now+1y' or 2024-04-01T00:00:00Z" if kind == "datetime" else "2024-04-01"
        problem = f"must be a time relative to now or absolute (e.g. {example}), not {raw!r}"
    return None, problem


def moment(kind: str, raw: Any) -> Any:
    """A datetime/date column's value: a timedelta from now, or an absolute datetime/date; None if invalid."""
    if isinstance(raw, str) and raw.strip().startswith("now"):
        try:
            return offset(raw)
        except ValueError:
            return None
    if kind == "datetime":
        if isinstance(raw, dt.datetime):
            return raw if raw.tzinfo is not None else raw.replace(tzinfo=dt.UTC)  # YAML: no zone = UTC
        if isinstance(raw, dt.date):
            return dt.datetime.combine(raw, dt.time(), dt.UTC)
        return None
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return None
    return None


def place(kind: str, value: Any, now: dt.datetime) -> Any:
    """A stored value as the row holds it: a relative time (timedelta) placed around ``now``."""
    if isinstance(value, dt.timedelta):
        return now + value if kind == "datetime" else (now + value).date()
    return value


def contract_reference(value: Any) -> Any:
    """``{insurer: NL, policy_number: NL-1001}`` -> ``NL/NL-1001``; other values unchanged."""
    if isinstance(value, Mapping) and set(value) == {"insurer", "policy_number"}:
        return f"{value['insurer']}/{value['policy_number']}"
    return value


def written_by_name(table: str, column: str, item: Mapping[str, Any]) -> bool:
    """Whether the row wrote ``column`` under its readable name (the reference failed to resolve)."""
    return any(r.column == column and r.name in item for r in REFS.get(table, ()))


def readable(table: str, column: str) -> str:
    """A missing column as the readable format spells it (``agency`` for ``agency_id``)."""
    ref = next((r for r in REFS.get(table, ()) if r.column == column), None)
    return f"{ref.name!r} (or {column!r})" if ref is not None else repr(column)

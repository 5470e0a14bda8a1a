"""A world as plain data (dict / YAML) with every timestamp written relative to ``now``.

Why relative: a world that failed today must fail the same way when replayed next month. "Valid
now" depends only on where each window lies around ``now``, so the dump writes ``now-30d`` or
``now+2d3h`` instead of an absolute time, and ``world_from_scenario`` rebuilds it around the ``now``
of the replay. Dates (``starts_on`` ...) and other columns are written as they are. Read back, a
time may also use years and weeks (``now+1y``, ``now-2w3d``; a year is 365 days, a week 7) and a
date column may be relative too (the UTC date of that moment); absolute values are accepted as well.

A dump is also a valid scenario file for ``agency-rls check`` (``agency_rls.reference_model.scenario_file``,
which adds readable references, labels and expectations on top of this format).

Replay a dump (e.g. printed by a failing fuzz test)::

    import datetime as dt
    from agency_rls.reference_model.scenario import world_from_yaml
    world = world_from_yaml(text, now=dt.datetime.now(dt.UTC))
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import MISSING, asdict, fields
from decimal import Decimal
from typing import Any

import yaml

from agency_rls.reference_model.world import ROW_TYPES, TABLES, World

_RELATIVE = re.compile(
    r"^now(?:(?P<sign>[+-])(?=\d)(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?"
    r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?)?$"
)


def relative(moment: dt.datetime, now: dt.datetime) -> str:
    """``moment`` as ``now``, ``now-30d`` or ``now+1d2h3m4s`` (whole seconds)."""
    seconds = round((moment - now).total_seconds())
    if seconds == 0:
        return "now"
    sign = "+" if seconds > 0 else "-"
    rest = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "now" + sign + "".join(parts)


def offset(text: str) -> dt.timedelta:
    """How far from now ``text`` lies: ``now`` 0, ``now-30d`` minus 30 days, ``now+1y2w`` plus 379 days.

    Units, largest first, each at most once: y (365 days), w, d, h, m (minutes), s. Blanks are ignored
    (``now - 30d``).
    """
    match = _RELATIVE.match("".join(str(text).split()))
    if match is None:
        raise ValueError(
            f"not a time relative to now: {text!r} (e.g. 'now', 'now-30d', 'now+1y', 'now+2d3h')"
        )
    delta = dt.timedelta(
        days=365 * int(match["y"] or 0) + 7 * int(match["w"] or 0) + int(match["d"] or 0),
        hours=int(match["h"] or 0),
        minutes=int(match["m"] or 0),
        seconds=int(match["s"] or 0),
    )
    return -delta if match["sign"] == "-" else delta


def absolute(text: str, now: dt.datetime) -> dt.datetime:
    """The inverse of ``relative``."""
    return now + offset(text)


def _out(value: Any, now: dt.datetime) -> Any:
    if isinstance(value, dt.datetime):
        return relative(value, now)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def world_to_scenario(world: World, now: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    """Every row as a dict of its spec columns; empty tables and columns at their default are left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table in TABLES:
        rows = world.rows(table)
        if rows:
            defaults = {f.name: f.default for f in fields(ROW_TYPES[table]) if f.default is not MISSING}
            out[table] = [
                {k: _out(v, now) for k, v in asdict(r).items() if k not in defaults or v != defaults[k]}
                for r in rows
            ]
    return out


def _in(row_type: type[Any], column: str, value: Any, now: dt.datetime) -> Any:
    hint = {f.name: str(f.type) for f in fields(row_type)}[column]
    if value is None:
        return None
    if "dt.datetime" in hint:
        return value if isinstance(value, dt.datetime) else absolute(str(value), now)
    if "dt.date" in hint:
        if isinstance(value, dt.date):
            return value
        if str(value).strip().startswith("now"):
            return absolute(str(value), now).date()
        return dt.date.fromisoformat(str(value))
    if "Decimal" in hint:
        return Decimal(str(value))
    return value


def world_from_scenario(data: dict[str, list[dict[str, Any]]], now: dt.datetime) -> World:
    """Rebuild a ``World`` from ``world_to_scenario``'s output around ``now``."""
    unknown = set(data) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables: {sorted(unknown)}")
    tables = {}
    for table, rows in data.items():
        row_type = ROW_TYPES[table]
        names = {f.name for f in fields(row_type)}
        built = []
        for row in rows:
            extra = set(row) - names
            if extra:
                raise ValueError(f"{table}: unknown columns {sorted(extra)}")
            built.append(row_type(**{k: _in(row_type, k, v, now) for k, v in row.items()}))
        tables[table] = tuple(built)
    return World(**tables)


def world_to_yaml(world: World, now: dt.datetime) -> str:
    """The scenario as YAML, one flow-style mapping per row so that a world reads like a table."""

    class _Dumper(yaml.SafeDumper):
        pass

    def row(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
        flow = all(not isinstance(v, dict | list) for v in data.values())
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)

    _Dumper.add_representer(dict, row)
    return yaml.dump(
        world_to_scenario(world, now), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=200
    )


def world_from_yaml(text: str, now: dt.datetime) -> World:
    """Parse ``world_to_yaml``'s output."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("a scenario is a mapping of table name to a list of rows")
    return world_from_scenario(data, now)

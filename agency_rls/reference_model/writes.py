"""Writes a loader makes to a loaded world, each as plain SQL and as the same change to a ``World``.

Why: the spec requires that "anything precomputed must stay exact under plain SQL writes by
loaders". Loading whole worlds only ever tests bulk inserts into empty tables; the differential
fuzzer also applies sequences of these writes (``Differential.check_writes``) and compares the
database with the reference model after every step. A write is data (table, columns, values,
condition) so that one object renders the SQL that the database runs and a failing case prints, and
computes the world the model reads afterwards.

- ``Insert``, ``Update``, ``Delete``: one statement; ``Update`` and ``Delete`` change every row that
  matches all of ``where`` (an empty ``where`` matches every row: a multi-row statement);
- ``Merge``: a sync by id in one statement (``MERGE`` updating, inserting and deleting at once, or
  ``INSERT ... ON CONFLICT DO UPDATE``);
- ``Truncate``: ``TRUNCATE`` of the listed tables;
- ``Provision``: what provisioning does to the spec's rows: every agency and insurer gets its default
  principal row (``agency_<code>``, ``insurer_<code>``, code lower-cased) unless one exists by that
  name. The caller runs provisioning itself; the model only adds those rows.

A ``Step`` is one transaction of writes (``Provision`` is always a step of its own). Times are
``Moment`` values: whole days relative to the writing transaction's ``now()`` (``Moment(0)`` is
``now()`` itself, e.g. "end this link now"), so that the SQL replays the same way any day.
Columns the spec does not list (those a definition precomputes) may be written with ``Raw`` SQL
expressions: a loader writing such a column is a write the database must survive, and the model
ignores it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace

from agency_rls.reference_model.world import ROW_TYPES, AnyRow, Principal, World, columns


@dataclass(frozen=True)
class Moment:
    """Whole days from the writing transaction's ``now()``; ``Moment(0)`` is ``now()``."""

    days: int

    def sql(self) -> str:
        if self.days == 0:
            return "now()"
        # Hours, not days: a day interval added to timestamptz follows the session's DST changes.
        sign = "+" if self.days > 0 else "-"
        return f"(now() {sign} interval '{24 * abs(self.days)} hours')"

    def at(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(days=self.days)


@dataclass(frozen=True)
class Raw:
    """A SQL expression for a column the spec does not list; the model ignores the column."""

    expression: str


Value = int | str | bool | None | Moment | Raw
Assignments = tuple[tuple[str, Value], ...]


def _literal(table: str, column: str, value: Value, prefix: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Moment):
        return value.sql()
    if isinstance(value, Raw):
        return value.expression
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if table == "principal" and column == "role_name":
        value = prefix + value
    return "'" + value.replace("'", "''") + "'"


def _condition(table: str, where: Assignments, prefix: str) -> str:
    if not where:
        return ""
    return " WHERE " + " AND ".join(f"{c} = {_literal(table, c, v, prefix)}" for c, v in where)


def _model_value(table: str, column: str, value: Value, now: dt.datetime) -> object:
    if isinstance(value, Raw):
        raise ValueError(f"{table}.{column} is a spec column: write a value, not raw SQL")
    return value.at(now) if isinstance(value, Moment) else value


def _where_label(where: Assignments) -> str:
    return "where " + "+".join(c for c, _ in where) if where else "(every row)"


def _spec_columns(table: str, values: Assignments, now: dt.datetime) -> dict[str, object]:
    """``values`` as model values; columns outside the spec (written with ``Raw``) left out."""
    spec = set(columns(ROW_TYPES[table]))
    out = {}
    for column, value in values:
        if column in spec:
            out[column] = _model_value(table, column, value, now)
        elif not isinstance(value, Raw):
            raise ValueError(f"{table}.{column} is not a spec column: write it with Raw")
    return out


def _matches(row: AnyRow, where: Assignments) -> bool:
    for column, value in where:
        if value is None or isinstance(value, Moment | Raw):
            raise ValueError(f"where {column}: compare with a plain value")
        if getattr(row, column) != value:
            return False
    return True


def _with_rows(world: World, table: str, rows: Iterable[AnyRow]) -> World:
    return replace(world, **{table: tuple(rows)})


@dataclass(frozen=True)
class Insert:
    """``INSERT INTO table (columns) VALUES (...), ...``: one statement, one row per element of
    ``rows`` (all naming the same columns); omitted spec columns take their defaults."""

    table: str
    rows: tuple[Assignments, ...]

    def sql(self, prefix: str = "") -> list[str]:
        names = [c for c, _ in self.rows[0]]
        if any([c for c, _ in row] != names for row in self.rows):
            raise ValueError(f"insert into {self.table}: every row names the same columns")
        tuples = ", ".join(
            "(" + ", ".join(_literal(self.table, c, v, prefix) for c, v in row) + ")" for row in self.rows
        )
        return [f"INSERT INTO public.{self.table} ({', '.join(names)}) VALUES {tuples}"]

    def apply(self, world: World, now: dt.datetime) -> World:
        row_type = ROW_TYPES[self.table]
        new = [row_type(**_spec_columns(self.table, row, now)) for row in self.rows]
        return _with_rows(world, self.table, (*world.rows(self.table), *new))

    @property
    def label(self) -> str:
        return f"{self.table} insert" + (" (rows)" if len(self.rows) > 1 else "")


@dataclass(frozen=True)
class Update:
    """``UPDATE table SET values WHERE ...``: every row matching all of ``where``."""

    table: str
    values: Assignments
    where: Assignments = ()

    def sql(self, prefix: str = "") -> list[str]:
        assignments = ", ".join(f"{c} = {_literal(self.table, c, v, prefix)}" for c, v in self.values)
        return [f"UPDATE public.{self.table} SET {assignments}{_condition(self.table, self.where, prefix)}"]

    def apply(self, world: World, now: dt.datetime) -> World:
        changes = _spec_columns(self.table, self.values, now)
        return _with_rows(
            world,
            self.table,
            (replace(r, **changes) if _matches(r, self.where) else r for r in world.rows(self.table)),  # type: ignore[type-var]
        )

    @property
    def label(self) -> str:
        spec = set(columns(ROW_TYPES[self.table]))
        written = sorted({c if c in spec else "copies" for c, _ in self.values})
        return f"{self.table} update {'+'.join(written)} " + _where_label(self.where)


@dataclass(frozen=True)
class Delete:
    """``DELETE FROM table WHERE ...``: every row matching all of ``where``."""

    table: str
    where: Assignments

    def sql(self, prefix: str = "") -> list[str]:
        return [f"DELETE FROM public.{self.table}{_condition(self.table, self.where, prefix)}"]

    def apply(self, world: World, now: dt.datetime) -> World:
        return _with_rows(
            world, self.table, (r for r in world.rows(self.table) if not _matches(r, self.where))
        )

    @property
    def label(self) -> str:
        return f"{self.table} delete " + _where_label(self.where)


_SQL_TYPES = {"int": "bigint", "str": "text", "bool": "boolean", "dt.datetime": "timestamptz"}


def _sql_type(table: str, column: str) -> str:
    """The column's SQL type, from the row type's annotation (``int | None`` is ``bigint``)."""
    hint = {f.name: str(f.type) for f in fields(ROW_TYPES[table])}[column]
    return _SQL_TYPES[hint.split("|")[0].strip()]


@dataclass(frozen=True)
class Merge:
    """A sync by key in one statement, as ETL jobs write: each of ``rows`` (naming ``id`` and the same
    columns) updates the row with its id or is inserted; the rows with an id in ``deletes`` go.

    Rendered as ``MERGE`` (update, insert and delete actions at once), or with ``upsert`` and no
    deletes as ``INSERT ... ON CONFLICT (id) DO UPDATE``.
    """

    table: str
    rows: tuple[Assignments, ...]
    deletes: tuple[int, ...] = ()
    upsert: bool = False

    def sql(self, prefix: str = "") -> list[str]:
        names = [c for c, _ in self.rows[0]] if self.rows else ["id"]
        if names[0] != "id" or any([c for c, _ in row] != names for row in self.rows):
            raise ValueError(f"merge into {self.table}: every row names id first, then the same columns")
        rest = names[1:]
        if self.upsert:
            if self.deletes or not self.rows:
                raise ValueError("an upsert inserts or updates rows, it deletes none")
            return [
                Insert(self.table, self.rows).sql(prefix)[0]
                + " ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
            ]

        def typed(column: str, value: Value) -> str:
            return f"{_literal(self.table, column, value, prefix)}::{_sql_type(self.table, column)}"

        source = ["(" + ", ".join([*(typed(c, v) for c, v in row), "false"]) + ")" for row in self.rows] + [
            "("
            + ", ".join([typed("id", i), *(f"NULL::{_sql_type(self.table, c)}" for c in rest), "true"])
            + ")"
            for i in self.deletes
        ]
        clauses = ["WHEN MATCHED AND s.gone THEN DELETE"]
        if rest:
            clauses.append("WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{c} = s.{c}" for c in rest))
        clauses.append(
            f"WHEN NOT MATCHED AND NOT s.gone THEN INSERT ({', '.join(names)}) VALUES ({', '.join('s.' + c for c in names)})"
        )
        return [
            f"MERGE INTO public.{self.table} AS t USING (VALUES {', '.join(source)}) AS s ({', '.join(names)}, gone)"
            " ON t.id = s.id " + " ".join(clauses)
        ]

    def apply(self, world: World, now: dt.datetime) -> World:
        row_type = ROW_TYPES[self.table]
        by_id = {r.id: r for r in world.rows(self.table)}  # type: ignore[union-attr]
        for values in self.rows:
            changes = _spec_columns(self.table, values, now)
            old = by_id.get(changes["id"])
            by_id[changes["id"]] = row_type(**changes) if old is None else replace(old, **changes)
        for gone in self.deletes:
            by_id.pop(gone, None)
        return _with_rows(world, self.table, by_id.values())

    @property
    def label(self) -> str:
        how = "upsert" if self.upsert else "merge"
        return f"{self.table} {how}" + (" with deletes" if self.deletes else "")


@dataclass(frozen=True)
class Truncate:
    """``TRUNCATE`` of the listed tables (list every table whose keys point at one of them)."""

    tables: tuple[str, ...]

    def sql(self, prefix: str = "") -> list[str]:
        return ["TRUNCATE " + ", ".join(f"public.{t}" for t in self.tables)]

    def apply(self, world: World, now: dt.datetime) -> World:
        for table in self.tables:
            world = _with_rows(world, table, ())
        return world

    @property
    def label(self) -> str:
        return ",".join(self.tables) + " truncate"


@dataclass(frozen=True)
class Provision:
    """Provisioning (the caller runs it): default principal rows for agencies and insurers lacking one."""

    def sql(self, prefix: str = "") -> list[str]:
        return ["-- agency-rls provision --prune"]

    def apply(self, world: World, now: dt.datetime) -> World:
        return _with_rows(world, "principal", (*world.principal, *missing_default_principals(world)))

    @property
    def label(self) -> str:
        return "principal provision"


Write = Insert | Update | Delete | Merge | Truncate | Provision
Step = tuple[Write, ...]
"""Writes run in one transaction; a ``Provision`` is a step of its own."""


def default_principal_name(kind: str, code: str) -> str:
    """Spec: "Default role names: `agency_<code>` and `insurer_<code>` (code lower-cased)"."""
    return f"{kind}_{code.lower()}"


def missing_default_principals(world: World) -> list[Principal]:
    """The default principal rows provisioning adds: agencies first, then insurers, by id."""
    taken = {p.role_name for p in world.principal}
    wanted = [
        Principal(default_principal_name("agency", a.code), "agency", a.id, None)
        for a in sorted(world.agency, key=lambda a: a.id)
    ]
    wanted += [
        Principal(default_principal_name("insurer", i.code), "insurer", None, i.id)
        for i in sorted(world.insurer, key=lambda i: i.id)
    ]
    return [p for p in wanted if p.role_name not in taken]


def is_provision(step: Step) -> bool:
    """Whether ``step`` is provisioning (run by the caller, outside any transaction of writes)."""
    if any(isinstance(w, Provision) for w in step):
        if len(step) != 1:
            raise ValueError("provisioning is a step of its own")
        return True
    return False


def apply_step(world: World, step: Step, now: dt.datetime) -> World:
    """The world after ``step``, whose transaction's ``now()`` was ``now``."""
    for write in step:
        world = write.apply(world, now)
    return world


def step_sql(step: Step, prefix: str = "") -> list[str]:
    """The statements of ``step``, in order."""
    return [statement for write in step for statement in write.sql(prefix)]


def steps_to_sql(steps: Sequence[Step], prefix: str = "") -> str:
    """A script of ``steps``: one transaction per step, provisioning as a comment where it runs."""
    lines = []
    for number, step in enumerate(steps, 1):
        lines.append(f"-- step {number}")
        if is_provision(step):
            lines.extend(step_sql(step, prefix))
        else:
            lines.append("BEGIN;")
            lines.extend(statement + ";" for statement in step_sql(step, prefix))
            lines.append("COMMIT;")
    return "\n".join(lines) + "\n"

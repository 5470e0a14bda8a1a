"""Move a ``World`` in and out of a database by plain SQL, as a loader (DBA, ETL) would.

``world_from_connection`` reads every row of the spec's tables; ``load_world`` inserts a world with
its explicit ids; ``world_to_sql`` renders the same inserts as a script. All three need a connection
that row-level security does not filter: a superuser (or the table owner with ``row_security``
off). Column lists come from the row dataclasses, i.e. from the spec's "Entities" table.
"""

from __future__ import annotations

from dataclasses import astuple
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from agency_rls.reference_model.world import ROW_TYPES, TABLES, AnyRow, Contract, World, columns


def world_from_connection(conn: psycopg.Connection[Any]) -> World:
    """Every row of the spec's tables on ``conn`` (which must see all rows: superuser), in key order."""
    tables: dict[str, tuple[AnyRow, ...]] = {}
    for table in TABLES:
        row_type = ROW_TYPES[table]
        names = columns(row_type)
        key = "role_name" if table == "principal" else "id"
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.Identifier("public", table),
            sql.Identifier(key),
        )
        with conn.cursor() as cur:
            cur.execute(query)
            tables[table] = tuple(row_type(*row) for row in cur.fetchall())
    return World(**tables)  # type: ignore[arg-type]


def insert_order(world: World) -> World:
    """The world with contracts ordered so that every renewal comes after the generation it renews."""
    by_id = {c.id: c for c in world.contract}
    placed: dict[int, Contract] = {}

    def place(c: Contract, trail: tuple[int, ...] = ()) -> None:
        if c.id in placed:
            return
        if c.id in trail:
            raise ValueError(f"contract {c.id}: previous_contract_id forms a cycle")
        prev = by_id.get(c.previous_contract_id) if c.previous_contract_id is not None else None
        if prev is not None:
            place(prev, (*trail, c.id))
        placed[c.id] = c

    for c in sorted(world.contract, key=lambda c: c.id):
        place(c)
    return World(**{t: world.rows(t) for t in TABLES if t != "contract"}, contract=tuple(placed.values()))  # type: ignore[arg-type]


def _insert(table: str) -> sql.Composed:
    names = columns(ROW_TYPES[table])
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier("public", table),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )


def _setval(table: str) -> sql.Composed:
    """Move the identity sequence past the explicit ids, so later default ids do not collide."""
    return sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), max(id)) FROM {}").format(
        sql.Literal(f"public.{table}"), sql.Identifier("public", table)
    )


def load_world(conn: psycopg.Connection[Any], world: World, *, prefix: str = "") -> None:
    """Insert ``world`` with its explicit ids; principal role names get ``prefix`` in front.

    Runs inside the caller's transaction (it does not commit). ``conn`` must be a loader's
    connection (superuser): principals may never choose ids, loaders may.
    """
    world.check()
    stored = insert_order(world.with_role_prefix(prefix))
    with conn.cursor() as cur:
        for table in TABLES:
            rows = stored.rows(table)
            if rows:
                cur.executemany(_insert(table), [astuple(r) for r in rows])
            if table != "principal":
                cur.execute(_setval(table))


def world_to_sql(world: World, *, prefix: str = "") -> str:
    """``load_world`` as a plain SQL script (one INSERT per row, then the sequences), for review/psql."""
    stored = insert_order(world.with_role_prefix(prefix))
    lines = ["BEGIN;"]
    for table in TABLES:
        names = columns(ROW_TYPES[table])
        head = f"INSERT INTO public.{table} ({', '.join(names)}) VALUES "
        lines.extend(
            head + "(" + ", ".join(_literal(v) for v in astuple(r)) + ");" for r in stored.rows(table)
        )
        if table != "principal":
            lines.append(
                f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), max(id)) FROM public.{table};"
            )
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def _literal(value: object) -> str:
    """A SQL literal for the values rows hold (None, bool, numbers, text, date, aware datetime)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text.replace("'", "''") + "'"

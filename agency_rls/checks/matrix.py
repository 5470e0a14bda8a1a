"""``agency-rls matrix``: what every principal can read and write, measured, not inferred.

For an auditor the question is "who can see what right now", and the only trustworthy answer is
the database's own: each principal's row counts are taken by querying *as that principal*
(``SET LOCAL ROLE``), so row-level security, forced RLS, grants and the scope functions all take
part exactly as they do for the application. Write access is reported from the privilege
catalog (``has_table_privilege`` / ``has_any_column_privilege``) instead of by trying writes:
the command never writes, and a write attempt would prove only one row's fate anyway.

How it stays read-only and fast with thousands of principals:

- one connection and ONE transaction, ``REPEATABLE READ READ ONLY``: every count comes from the
  same snapshot and the same ``now()`` (validity windows are judged at one instant for everyone),
  and PostgreSQL itself refuses any write, including one a policy function might attempt;
- a savepoint per principal, always rolled back: ``SET LOCAL ROLE`` is undone with it, so the
  next principal starts from the DBA's own role;
- one query per principal for all tables (``SELECT (SELECT count(*) FROM a), (SELECT ...)``) and
  one catalog query for every principal's privileges.

A table the principal may not SELECT counts as 0 and is reported as denied. The catalog decides
which tables go into the combined query; if PostgreSQL still refuses it (say USAGE on a schema or
EXECUTE on a policy function was revoked), the principal's tables are counted one by one so the
refusal is attributed to the right table.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from agency_rls.cli_support.terminal import key_column, stdout_console
from agency_rls.cluster.database import libpq_conninfo
from agency_rls.rls_policies.provision import stored_prefix
from agency_rls.schema import ALL_TABLES

#: Above this many principals a progress bar is shown on stderr.
PROGRESS_THRESHOLD = 20

#: Tables every principal reads regardless of scope: insurer (public), principal (its own row).
NON_DATA_TABLES: frozenset[str] = frozenset({"insurer", "principal"})


class MatrixError(RuntimeError):
    """The matrix cannot be taken; the message is the one-line reason shown to the user."""


class Privilege(StrEnum):
    """Whether a write privilege is held on a table (directly or through a group role)."""

    granted = "granted"  # on the whole table
    columns = "columns"  # on some columns only (column-level GRANT)
    denied = "denied"


@dataclass(frozen=True)
class TableAccess:
    """One principal's access to one table."""

    select: int  # rows visible to the principal; 0 when SELECT is refused
    select_denied: bool
    insert: Privilege
    update: Privilege
    delete: Privilege

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "select": self.select,
            "select_denied": self.select_denied,
            "insert": str(self.insert),
            "update": str(self.update),
            "delete": str(self.delete),
        }


@dataclass
class PrincipalAccess:
    """One row of the matrix: a principal, whom it acts for, and its access per table."""

    role: str
    kind: str
    agency: str | None  # agency code (agency principals)
    insurer: str | None  # insurer code (insurer principals; restriction of restricted agencies)
    restricted: bool
    provisioned: bool  # False when the principal row names a role that does not exist
    tables: dict[str, TableAccess] = field(default_factory=dict)

    def reads_data(self) -> bool:
        """True when it sees a row beyond the public ``insurer`` list and its own ``principal`` row.

        Every provisioned principal sees those two, so they say nothing about its scope; a
        principal that sees nothing else is misconfigured or idle (the HTML page can hide them).
        """
        return any(access.select for name, access in self.tables.items() if name not in NON_DATA_TABLES)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (the ``--format json`` element)."""
        return {
            "role": self.role,
            "kind": self.kind,
            "agency": self.agency,
            "insurer": self.insurer,
            "restricted": self.restricted,
            "provisioned": self.provisioned,
            "tables": {name: access.as_dict() for name, access in self.tables.items()},
        }


@dataclass
class Matrix:
    """The whole matrix, taken in one snapshot at ``taken_at`` (the transaction's ``now()``)."""

    database: str
    taken_at: dt.datetime
    tables: tuple[str, ...]
    principals: list[PrincipalAccess]


# ------------------------------------------------------------------------------------------------
# Taking the matrix
# ------------------------------------------------------------------------------------------------

_PRIVILEGE_QUERY = """
SELECT p.role_name,
       p.kind,
       a.code AS agency,
       i.code AS insurer,
       (p.kind = 'agency' AND p.insurer_id IS NOT NULL) AS restricted,
       r.oid IS NOT NULL AS provisioned,
       t.name AS table_name,
       {select} AS can_select,
       {insert} AS can_insert,
       {update} AS can_update,
       CASE WHEN r.oid IS NOT NULL AND pg_catalog.has_table_privilege(r.oid, c.oid, 'DELETE')
            THEN 'granted' ELSE 'denied' END AS can_delete
  FROM public.principal AS p
  LEFT JOIN public.agency AS a ON a.id = p.agency_id
  LEFT JOIN public.insurer AS i ON i.id = p.insurer_id
  LEFT JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
 CROSS JOIN unnest(%(tables)s::text[]) WITH ORDINALITY AS t(name, ord)
  JOIN pg_catalog.pg_class AS c
    ON c.relname = t.name AND c.relnamespace = 'public'::regnamespace
 WHERE p.role_name = ANY (%(roles)s::text[])
 ORDER BY p.kind, p.role_name, t.ord
"""


def _privilege_case(privilege: str) -> str:
    """SQL giving 'granted' (whole table), 'columns' (some columns) or 'denied' for ``privilege``."""
    return (
        "CASE WHEN r.oid IS NULL THEN 'denied'"
        f" WHEN pg_catalog.has_table_privilege(r.oid, c.oid, '{privilege}') THEN 'granted'"
        f" WHEN pg_catalog.has_any_column_privilege(r.oid, c.oid, '{privilege}') THEN 'columns'"
        " ELSE 'denied' END"
    )


def take_matrix(
    conn: psycopg.Connection,
    principals: Sequence[str] | None = None,
    *,
    tables: Sequence[str] = ALL_TABLES,
    on_principal: Callable[[int, int], None] | None = None,
) -> Matrix:
    """Measure every principal's access (or only ``principals``) on ``conn``, writing nothing.

    ``principals`` are role names as in ``public.principal``; a name without the database's role
    prefix is accepted too. ``on_principal(done, total)`` is called after each principal (progress).
    ``conn`` must be in autocommit mode (the command opens its own transaction) and connected as a
    role that reads every ``principal`` row and may ``SET ROLE`` to each principal (a superuser).
    """
    if not conn.autocommit:
        raise MatrixError("take_matrix needs an autocommit connection (it opens its own transaction)")
    saved = (conn.isolation_level, conn.read_only)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction(force_rollback=True):
            # A DBA's session may run with row_security = off; queries as a principal would then
            # fail with "insufficient privilege" and be misreported as denied.
            conn.execute("SET LOCAL row_security = on")
            _require_principal_reader(conn)
            prefix = _require_migrated(conn, tables)
            roles = _resolve_principals(conn, prefix, principals)
            rows = _principal_rows(conn, roles, tables)
            info = conn.execute("SELECT current_database(), now()").fetchone()
            assert info is not None
            total = len(rows)
            for done, principal in enumerate(rows, start=1):
                _count_rows(conn, principal, tables)
                if on_principal is not None:
                    on_principal(done, total)
    finally:
        conn.isolation_level, conn.read_only = saved
    return Matrix(database=str(info[0]), taken_at=info[1], tables=tuple(tables), principals=rows)


def _require_migrated(conn: psycopg.Connection, tables: Sequence[str]) -> str:
    """The stored role prefix; a clear error when the database is not (fully) migrated."""
    try:
        prefix = stored_prefix(conn)
    except RuntimeError as error:
        raise MatrixError(str(error)) from None
    missing = [
        name
        for name in tables
        if conn.execute("SELECT to_regclass(%s) IS NULL", (f"public.{name}",)).fetchone() == (True,)
    ]
    if missing:
        raise MatrixError(
            f"table public.{missing[0]} is missing: run 'agency-rls migrate' to bring the database to head"
        )
    return prefix


def _require_principal_reader(conn: psycopg.Connection) -> None:
    """Refuse a connection that would see only part of ``principal`` (RLS would hide the rest)."""
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not row or not row[0]:
        raise MatrixError(
            "the matrix needs a superuser connection (it reads every principal row and acts as each "
            "principal); give a DBA URL with --database-url"
        )


def _resolve_principals(conn: psycopg.Connection, prefix: str, wanted: Sequence[str] | None) -> list[str]:
    """Role names to measure: all principal rows, or the named ones (with or without the prefix)."""
    known = [row[0] for row in conn.execute("SELECT role_name FROM public.principal")]
    if not wanted:
        return known
    known_set = set(known)
    resolved: list[str] = []
    unknown: list[str] = []
    for name in wanted:
        if name in known_set:
            role = name
        elif prefix and prefix + name in known_set:
            role = prefix + name
        else:
            unknown.append(name)
            continue
        if role not in resolved:
            resolved.append(role)
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise MatrixError(f"no principal row for {listed} (see public.principal; role prefix {prefix!r})")
    return resolved


def _principal_rows(
    conn: psycopg.Connection, roles: Sequence[str], tables: Sequence[str]
) -> list[PrincipalAccess]:
    """Every principal's identity and privileges, in one catalog query; counts are filled later."""
    query = _PRIVILEGE_QUERY.format(
        select=_privilege_case("SELECT"), insert=_privilege_case("INSERT"), update=_privilege_case("UPDATE")
    )
    out: dict[str, PrincipalAccess] = {}
    with conn.cursor() as cur:
        cur.execute(query, {"tables": list(tables), "roles": list(roles)})  # type: ignore[arg-type]
        for (
            role,
            kind,
            agency,
            insurer,
            restricted,
            provisioned,
            table,
            can_select,
            can_insert,
            can_update,
            can_delete,
        ) in cur:
            principal = out.get(role)
            if principal is None:
                principal = out[role] = PrincipalAccess(
                    role=role,
                    kind=kind,
                    agency=agency,
                    insurer=insurer,
                    restricted=bool(restricted),
                    provisioned=bool(provisioned),
                )
            # The count is a placeholder until _count_rows runs as the principal.
            principal.tables[table] = TableAccess(
                select=0,
                select_denied=can_select == "denied",
                insert=Privilege(can_insert),
                update=Privilege(can_update),
                delete=Privilege(can_delete),
            )
    return list(out.values())


def _count_query(tables: Iterable[str]) -> sql.Composed:
    """``SELECT (SELECT count(*) FROM public.a), (SELECT count(*) FROM public.b), ...``."""
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier("public", name)) for name in tables
        )
    )


def _set_role(conn: psycopg.Connection, role: str) -> None:
    """``SET LOCAL ROLE``; a failure here is the connection's problem, never the principal's 'denied'."""
    try:
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        raise MatrixError(f"cannot act as principal {role!r}: {reason}") from None


def _count_rows(conn: psycopg.Connection, principal: PrincipalAccess, tables: Sequence[str]) -> None:
    """Fill ``principal``'s counts by querying as it, in savepoints that are always rolled back."""
    if not principal.provisioned:
        return  # no role to act as: it reads nothing (every cell is already denied)
    readable = [name for name in tables if not principal.tables[name].select_denied]
    if not readable:
        return
    counts: dict[str, int | None] = {}
    try:
        with conn.transaction(force_rollback=True):
            _set_role(conn, principal.role)
            row = conn.execute(_count_query(readable)).fetchone()
            assert row is not None
            counts = {name: int(n) for name, n in zip(readable, row, strict=True)}
    except psycopg.errors.InsufficientPrivilege:
        # Granted in the catalog yet refused: find out which tables, one by one.
        for name in readable:
            try:
                with conn.transaction(force_rollback=True):
                    _set_role(conn, principal.role)
                    one = conn.execute(_count_query([name])).fetchone()
                    counts[name] = int(one[0]) if one else 0
            except psycopg.errors.InsufficientPrivilege:
                counts[name] = None
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        raise MatrixError(f"counting rows as principal {principal.role!r} failed: {reason}") from None
    for name, count in counts.items():
        old = principal.tables[name]
        principal.tables[name] = TableAccess(
            select=count or 0,
            select_denied=count is None,
            insert=old.insert,
            update=old.update,
            delete=old.delete,
        )


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def run_matrix(
    url: str | None,
    principals: Sequence[str] | None = None,
    *,
    as_json: bool = False,
    html_path: str | Path | None = None,
) -> Matrix:
    """``agency-rls matrix``: take the matrix and print it (rich table or JSON), optionally as HTML."""
    err = Console(stderr=True)
    with psycopg.connect(libpq_conninfo(url), autocommit=True, prepare_threshold=None) as conn:
        matrix = _take_with_progress(conn, principals, err, enabled=not as_json)
    if as_json:
        sys.stdout.write(json.dumps([p.as_dict() for p in matrix.principals], indent=2) + "\n")
    else:
        print_table(stdout_console(), matrix)
    if html_path is not None:
        from agency_rls.checks.matrix_html import render_html  # only needed for --html

        html_path = Path(html_path)
        html_path.write_text(render_html(matrix), encoding="utf-8")
        err.print(f"Wrote {html_path} ({len(matrix.principals)} principals).", markup=False, highlight=False)
    return matrix


def _take_with_progress(
    conn: psycopg.Connection, principals: Sequence[str] | None, console: Console, *, enabled: bool = True
) -> Matrix:
    """Take the matrix with a progress bar on stderr once there are more than a few principals, when
    stderr is a terminal and the output is not JSON (``enabled``)."""
    progress = Progress(
        TextColumn("counting as each principal"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    state: dict[str, Any] = {}

    def advance(done: int, total: int) -> None:
        if total <= PROGRESS_THRESHOLD or not enabled or not console.is_terminal:
            return
        if "task" not in state:
            progress.start()
            state["task"] = progress.add_task("principals", total=total)
        progress.update(state["task"], completed=done)

    try:
        return take_matrix(conn, principals, on_principal=advance)
    finally:
        if "task" in state:
            progress.stop()


def write_marks(access: TableAccess) -> str:
    """Compact write privileges: I/U/D granted on the whole table, i/u on some columns only."""
    marks = ""
    for privilege, letter in ((access.insert, "i"), (access.update, "u"), (access.delete, "d")):
        if privilege is Privilege.granted:
            marks += letter.upper()
        elif privilege is Privilege.columns:
            marks += letter
    return marks


def _cell(access: TableAccess) -> Text:
    """Count plus write marks (see ``write_marks``); 'denied' when SELECT was refused."""
    if access.select_denied:
        text = Text("denied", style="red")
    else:
        text = Text(str(access.select), style="dim" if access.select == 0 else "")
    marks = write_marks(access)
    if marks:
        text.append(" " + marks, style="yellow")
    return text


def scope_label(principal: PrincipalAccess) -> str:
    """Whom the principal acts for, in one short label ('S1', 'M1 / NL only', 'insurer NL')."""
    if principal.kind == "insurer":
        return f"insurer {principal.insurer}"
    if principal.restricted:
        return f"{principal.agency} / {principal.insurer} only"
    return str(principal.agency)


def print_table(console: Console, matrix: Matrix) -> None:
    """The rich terminal table: one row per principal, one column per table."""
    if not matrix.principals:
        console.print("No principals: insert agencies or insurers and run 'agency-rls provision'.")
        return
    table = Table(
        title=f"Rows each principal can read in {matrix.database} at {matrix.taken_at.isoformat(timespec='seconds')}",
        caption=(
            "Counted by querying as each principal (read-only, rolled back). "
            "I/U/D: INSERT/UPDATE/DELETE granted on the table; i/u: on some columns only; "
            "denied: SELECT refused (counts as 0)."
        ),
    )
    key_column(table, "principal")
    table.add_column("acts for")
    for name in matrix.tables:
        table.add_column(name, justify="right")
    for principal in matrix.principals:
        role = Text(principal.role)
        if not principal.provisioned:
            role.append(" (no role)", style="red")
        table.add_row(
            role,
            Text(scope_label(principal)),
            *(_cell(principal.tables[name]) for name in matrix.tables),
        )
    console.print(table)

"""``assert_visible``: the rows a principal sees, compared with the rows it must see, as a readable diff.

Why a helper and not a bare ``assert rows == expected``: a security test fails when a principal
sees a row it must not (a leak) or misses one it must see (a broken scope), and the reader needs to
know which rows, for whom, at a glance. pytest's own set diff shows two anonymous sets; this names
the principal (``current_user``), the table or query and the key, and splits the difference into
``unexpected`` (the leak) and ``missing``, always in that order and always both, so the message is
stable enough to grep in CI logs.

The helper takes whatever the test holds: a psycopg connection or cursor (``agency_rls_connect_as``)
or a SQLAlchemy ``Session``/``Connection`` (``agency_rls_session_as``). Nothing here imports a
database driver at import time; the plugin is loaded into every pytest run of a project that has
the package installed, and must cost nothing there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_KEYS", "VisibilityMismatch", "assert_visible"]

#: The readable key of a table's rows when ``key`` is not given: the natural keys of the spec.
#: Tables without one (links, notices, receipts) are compared by ``id``. No default joins another
#: table: a join would run under the principal's own row-level security and drop rows whose
#: parent the principal cannot see, hiding exactly the rows a security test is about.
DEFAULT_KEYS: Mapping[str, str] = {
    "insurer": "code",
    "agency": "code",
    "customer": "full_name",
    "contract": "policy_number",
    "principal": "role_name",
}

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?")
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_QUERY_LABEL_LENGTH = 70
_BACKEND_SUFFIX = (
    "rls_backend"  # agency_rls.rls_policies.names.ManagementRoles().backend, not imported: keep this light
)


class VisibilityMismatch(AssertionError):
    """The principal sees other rows than expected; ``unexpected`` are the leaks, ``missing`` the gaps.

    An ``AssertionError`` so that pytest reports it as a test failure (not an error) and
    ``pytest.raises(AssertionError)`` catches it; the attributes let a test inspect the difference.
    """

    def __init__(
        self,
        message: str,
        *,
        who: str,
        what: str,
        visible: frozenset[Any],
        expected: frozenset[Any],
    ) -> None:
        super().__init__(message)
        self.who = who
        self.what = what
        self.visible = visible
        self.expected = expected
        self.unexpected = visible - expected
        self.missing = expected - visible


def assert_visible(
    conn_or_cursor: Any,
    table_or_query: str,
    expected_keys: Iterable[Any],
    *,
    key: str | None = None,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
) -> None:
    """Fail unless the rows visible on ``conn_or_cursor`` have exactly the keys ``expected_keys``.

    ``conn_or_cursor`` is acting as the principal under test: a psycopg ``Connection`` or
    ``Cursor``, or a SQLAlchemy ``Session`` or ``Connection``. ``table_or_query`` is either a
    table name (``contract``, ``public.notice``), read with ``SELECT <key> FROM <table>``, or a
    query. For a table, ``key`` is a column name or an SQL expression, by default the table's
    natural key (``DEFAULT_KEYS``: ``contract`` -> ``policy_number``, …; ``id`` otherwise). For a
    query, ``key`` names one of its result columns; without it a one-column query gives that
    column and a wider one gives each row as a tuple. ``params`` go to the driver with the query
    (psycopg ``%s``/``%(name)s``, SQLAlchemy ``:name``).

    Keys are compared as sets (duplicates do not count). On a difference it raises
    ``VisibilityMismatch`` with a message such as::

        contract as agency_w11 (key policy_number): unexpected: ['NL-1001']; missing: ['NL-1004']
          visible (2): ['NL-1001', 'NL-1003']
          expected (2): ['NL-1003', 'NL-1004']
    """
    __tracebackhide__ = True  # pytest: point the failure at the test's line, not at this helper
    if isinstance(expected_keys, str | bytes) or not isinstance(expected_keys, Iterable):
        raise TypeError(
            f"expected_keys must be a collection of keys (a set, list, …), not {type(expected_keys).__name__}"
        )
    expected = frozenset(expected_keys)
    query, what, column = _plan(table_or_query, key)
    names, rows = _run(conn_or_cursor, query, params)
    visible = frozenset(_keys(names, rows, column, what))
    if visible == expected:
        return
    who = _current_user(conn_or_cursor)
    raise VisibilityMismatch(
        _message(who, what, visible, expected), who=who, what=what, visible=visible, expected=expected
    )


def _plan(table_or_query: str, key: str | None) -> tuple[str, str, str | None]:
    """The query to run, how to name it in a message, and the result column holding the key."""
    if not isinstance(table_or_query, str):
        raise TypeError(
            f"table_or_query must be a table name or an SQL string, not {type(table_or_query).__name__}"
        )
    text = table_or_query.strip()
    if _TABLE_NAME.fullmatch(text):
        column = key or DEFAULT_KEYS.get(text.rsplit(".", 1)[-1], "id")
        expression = _quote_identifier(column) if _COLUMN_NAME.fullmatch(column) else column
        table = ".".join(_quote_identifier(part) for part in text.split("."))
        return f"SELECT {expression} FROM {table}", f"{text} (key {column})", None
    label = " ".join(text.split())
    if len(label) > _QUERY_LABEL_LENGTH:
        label = label[: _QUERY_LABEL_LENGTH - 1] + "…"
    return text, f"[{label}]" + (f" (key {key})" if key else ""), key


def _quote_identifier(name: str) -> str:
    """A double-quoted SQL identifier, as PostgreSQL quotes it (driver-independent on purpose)."""
    return '"' + name.replace('"', '""') + '"'


def _is_sqlalchemy(obj: Any) -> bool:
    """A SQLAlchemy Session or Connection, subclasses included (``PrincipalSession``), without importing it."""
    return any(cls.__module__.startswith("sqlalchemy.") for cls in type(obj).__mro__)


def _run(
    target: Any, query: str, params: Sequence[Any] | Mapping[str, Any] | None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``query`` on a psycopg connection/cursor or a SQLAlchemy session/connection."""
    if _is_sqlalchemy(target):
        from sqlalchemy import text

        result = target.execute(text(query), params) if params is not None else target.execute(text(query))
        return list(result.keys()), [tuple(row) for row in result.all()]
    if not hasattr(target, "execute"):
        raise TypeError(
            "assert_visible needs a psycopg connection or cursor, or a SQLAlchemy session or connection, "
            f"not {type(target).__name__}"
        )
    cursor = target.execute(query, params)  # psycopg: a Connection returns a new cursor, a Cursor itself
    if cursor.description is None:
        raise TypeError(f"{query!r} returns no rows (not a SELECT?)")
    return [column.name for column in cursor.description], [tuple(row) for row in cursor.fetchall()]


def _keys(names: list[str], rows: list[tuple[Any, ...]], column: str | None, what: str) -> Iterable[Any]:
    """The key of each row: the named column, the only column, or the whole row as a tuple."""
    if column is not None:
        if column not in names:
            raise ValueError(f"{what}: no result column {column!r} (columns: {', '.join(names)})")
        index = names.index(column)
        return (row[index] for row in rows)
    if len(names) == 1:
        return (row[0] for row in rows)
    return rows


def _current_user(target: Any) -> str:
    """Who the rows were read as, for the message; never masks the mismatch itself.

    Over a backend login (``<prefix>rls_backend``) the prefix is dropped from the name, so the
    message says ``agency_w11`` as the test did. Only a query that cannot fail is sent: the
    block may go on after a caught mismatch, and a failed statement would abort its transaction.
    """
    query = "SELECT current_user, session_user"
    try:
        if _is_sqlalchemy(target):
            from sqlalchemy import text

            row = target.execute(text(query)).one()
        else:
            row = target.execute(query).fetchone()
        current, session = str(row[0]), str(row[1])
    except Exception:  # the connection may be unusable now; the diff matters more than the name
        return "the principal"
    if session.endswith(_BACKEND_SUFFIX) and current != session:
        prefix = session[: -len(_BACKEND_SUFFIX)]
        return current.removeprefix(prefix)
    return current


def _sorted(values: Iterable[Any]) -> list[Any]:
    """Sorted for a stable message; mixed types (a test's mistake worth seeing) sort by repr."""
    items = list(values)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _message(who: str, what: str, visible: frozenset[Any], expected: frozenset[Any]) -> str:
    unexpected, missing = visible - expected, expected - visible
    lines = [
        f"{what} as {who}: unexpected: {_sorted(unexpected)!r}; missing: {_sorted(missing)!r}",
        f"  visible ({len(visible)}): {_sorted(visible)!r}",
        f"  expected ({len(expected)}): {_sorted(expected)!r}",
    ]
    if {str(value) for value in visible} == {str(value) for value in expected}:
        visible_types = sorted({type(value).__name__ for value in visible})
        expected_types = sorted({type(value).__name__ for value in expected})
        lines.append(
            f"  the keys differ only in type: the query gives {', '.join(visible_types)}, "
            f"the expected keys are {', '.join(expected_types)}"
        )
    return "\n".join(lines)

"""``agency-rls explain --as ROLE TABLE KEY``: why one principal can or cannot read one row.

Two answers, side by side, so that a DBA never has to trust either alone:

- the **reference model**'s (``agency_rls.reference_model``), run on every row of the live database
  (read by a superuser or a member of the loader role ``<prefix>rls_loader``, whose policies open
  every row): the rule of ``scope-rules.md`` that decides, and each of its conditions (entrusted,
  handles, supervises, each validity window with its dates) with the rows that satisfied or failed
  it (``explain_reasons``);
- the **database**'s: the row is looked up *acting as the principal* (``SET LOCAL ROLE``, in a
  transaction that is always rolled back), so that row level security, grants and the scope
  functions all take part as they do for the application. Over the connection of ``--database-url``
  when its role may switch to the principal (a superuser), in the same REPEATABLE READ READ ONLY
  snapshot (the same ``now()``) the model reads; otherwise over ``--backend-url``, a login as the
  backend role, with ``agency_rls.backend.set_local_principal`` as the application does. The model
  then judges at that transaction's ``now()``.

When the two disagree the report says so loudly (``DISAGREEMENT``) and the exit status is 1: either a
policy or the model is wrong, and either is worth a look before anything ships.

Exit status: 0 model and database agree (readable or not), 1 they disagree, 2 bad input (unknown
principal, table or key; one line), 3 cannot run (connection, privileges).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.markup import escape

from agency_rls.backend.principal import PrincipalError, set_local_principal
from agency_rls.checks.explain_reasons import Namer, Reasons, RuleVerdict, Viewer, when
from agency_rls.cluster.database import libpq_conninfo
from agency_rls.reference_model.coverage import Formula
from agency_rls.reference_model.database import world_from_connection
from agency_rls.reference_model.explain import ExplainedView, Explainer
from agency_rls.reference_model.model import visible_rows
from agency_rls.reference_model.world import TABLES, AnyRow, World, row_key
from agency_rls.rls_policies.provision import stored_prefix

__all__ = [
    "CannotExplain",
    "ExplainInputError",
    "Explanation",
    "explain_row",
    "print_explanation",
    "run_explain",
]

EXIT_AGREE, EXIT_DISAGREE, EXIT_INPUT, EXIT_CANNOT_RUN = 0, 1, 2, 3


class ExplainInputError(ValueError):
    """The principal, table or key names nothing in this database (exit 2)."""


class CannotExplain(RuntimeError):
    """The database cannot be read or acted on as needed (exit 3)."""


@dataclass(frozen=True)
class DatabaseAnswer:
    """What the database showed the principal: whether the row came back, and how it was asked."""

    visible: bool
    via: str
    at: dt.datetime
    note: str | None = None


@dataclass(frozen=True)
class Explanation:
    """The model's verdict with its rules and conditions, the database's answer, and whether they agree."""

    role: str
    principal: str
    kind: str
    table: str
    key: int | str
    row: str
    at: dt.datetime
    model_visible: bool
    why: str
    verdicts: tuple[RuleVerdict, ...]
    database: DatabaseAnswer

    @property
    def row_phrase(self) -> str:
        """``contract NL-1001 (NL, direct)``, ``customer 16``, ``notice 16 (...)``: the row in words."""
        named = ("customer", "notice ", "handler row", "supervision", "entrustment", "receipt", "principal")
        return self.row if self.row.startswith(named) else f"{self.table} {self.row}"

    @property
    def agree(self) -> bool:
        return self.model_visible == self.database.visible

    @property
    def exit_status(self) -> int:
        return EXIT_AGREE if self.agree else EXIT_DISAGREE

    def warning(self) -> str | None:
        if self.agree:
            return None
        model = "may read" if self.model_visible else "may not read"
        db = "returned" if self.database.visible else "hid"
        return (
            f"DISAGREEMENT: the reference model says {self.principal} {model} {self.row_phrase}, but the"
            f" database {db} it when acting as {self.role}. A policy or the model is wrong: compare the rule"
            " below with the policies (agency-rls drift, agency-rls lint) before trusting either."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "role": self.role,
            "kind": self.kind,
            "table": self.table,
            "key": self.key,
            "row": self.row,
            "at": self.at.isoformat(),
            "model": {
                "visible": self.model_visible,
                "why": self.why,
                "rules": [v.as_dict() for v in self.verdicts],
            },
            "database": {
                "visible": self.database.visible,
                "via": self.database.via,
                "at": self.database.at.isoformat(),
                "note": self.database.note,
            },
            "agree": self.agree,
            "warning": self.warning(),
        }


# ------------------------------------------------------------------------------------------------
# Input: principal, table, key
# ------------------------------------------------------------------------------------------------


def resolve_principal(world: World, prefix: str, name: str) -> str:
    """The principal's role name as stored, given with or without the database's role prefix."""
    for candidate in (name, prefix + name):
        if world.principal_named(candidate) is not None:
            return candidate
    raise ExplainInputError(f"no principal {name!r} (see public.principal; role prefix {prefix!r})")


def resolve_table(table: str) -> str:
    if table not in TABLES:
        raise ExplainInputError(f"unknown table {table!r}: one of {', '.join(TABLES)}")
    return table


def resolve_row(world: World, prefix: str, table: str, key: str) -> AnyRow:
    """The row of ``table`` named by ``key``: its id; a contract also by policy number (or
    ``INSURER/NUMBER`` when several insurers use it), a principal by role name (prefix optional)."""
    rows = world.rows(table)
    if table == "principal":
        for candidate in (key, prefix + key):
            found = [r for r in rows if row_key(r) == candidate]
            if found:
                return found[0]
        raise ExplainInputError(f"no principal row {key!r}")
    if key.strip().lstrip("-").isdigit():
        found = [r for r in rows if row_key(r) == int(key)]
        if found:
            return found[0]
        raise ExplainInputError(f"no {table} row with id {key}")
    if table == "contract":
        insurer_code, _, number = key.rpartition("/")
        codes = {i.id: i.code for i in world.insurer}
        found = [
            c
            for c in world.contract
            if c.policy_number == number and (not insurer_code or codes[c.insurer_id] == insurer_code)
        ]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            choices = ", ".join(f"{codes[c.insurer_id]}/{number}" for c in found)
            raise ExplainInputError(
                f"policy number {number!r} is used by several insurers: give one of {choices}"
            )
        raise ExplainInputError(f"no contract with policy number {key!r}")
    raise ExplainInputError(
        f"{table} rows are named by id (a number), not {key!r}"
        + ("" if table != "contract" else "; contracts also by policy number")
    )


# ------------------------------------------------------------------------------------------------
# The database's side
# ------------------------------------------------------------------------------------------------


def _require_full_reader(conn: psycopg.Connection[Any], prefix: str) -> None:
    """The model needs every row: a superuser, a BYPASSRLS role or a member of the loader role."""
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls OR coalesce(pg_has_role(current_user, to_regrole(%s), 'USAGE'), false)"
        "  FROM pg_catalog.pg_roles WHERE rolname = current_user",
        (f"{prefix}rls_loader",),
    ).fetchone()
    if not row or not row[0]:
        raise CannotExplain(
            "explain reads every row for the reference model: connect as a superuser or a member of"
            f" {prefix}rls_loader (the DBA who installed)"
        )


def _row_visible(conn: psycopg.Connection[Any], table: str, key: int | str) -> tuple[bool, str | None]:
    """Whether the current role (already switched to the principal) gets the row back."""
    column = "role_name" if table == "principal" else "id"
    query = sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} = %s)").format(
        sql.Identifier("public", table), sql.Identifier(column)
    )
    try:
        with conn.transaction():  # a savepoint: a refusal must not end the acting transaction
            row = conn.execute(query, (key,)).fetchone()
    except psycopg.errors.InsufficientPrivilege as error:
        return False, "permission denied: " + " ".join(str(error).split())
    return bool(row and row[0]), None


def _act(conn: psycopg.Connection[Any], role: str, *, backend: bool) -> None:
    try:
        set_local_principal(conn, role)
    except PrincipalError as error:
        if backend:
            raise CannotExplain(f"cannot act as {role!r} over the backend connection: {error}") from None
        raise CannotExplain(
            f"the --database-url role cannot act as {role!r} ({error}): connect as a superuser, or give"
            " --backend-url (a login as the backend role <prefix>rls_backend)"
        ) from None


@contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One REPEATABLE READ READ ONLY transaction, always rolled back: one snapshot, one now()."""
    saved = (conn.isolation_level, conn.read_only)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL row_security = on")
            yield
    finally:
        conn.isolation_level, conn.read_only = saved


def explain_row(
    conn: psycopg.Connection[Any],
    role: str,
    table: str,
    key: str,
    *,
    backend: psycopg.Connection[Any] | None = None,
) -> Explanation:
    """Explain ``table`` row ``key`` for principal ``role`` (prefix optional); see the module docstring.

    ``conn``: autocommit, reads every row (superuser or loader member). ``backend``: an autocommit
    login as the backend role; when given, the database's answer comes from it, otherwise from ``conn``
    (which must then be allowed to SET ROLE to the principal)."""
    table = resolve_table(table)
    with _snapshot(conn):
        try:
            prefix = stored_prefix(conn)
        except RuntimeError as error:
            raise CannotExplain(str(error)) from None
        _require_full_reader(conn, prefix)
        world = world_from_connection(conn)
        principal = resolve_principal(world, prefix, role)
        row = resolve_row(world, prefix, table, key)
        rkey = row_key(row)
        if backend is None:
            now_row = conn.execute("SELECT now()").fetchone()
            assert now_row is not None
            now: dt.datetime = now_row[0]
            with conn.transaction(force_rollback=True):
                _act(conn, principal, backend=False)
                visible, note = _row_visible(conn, table, rkey)
            answer = DatabaseAnswer(visible, "SET LOCAL ROLE on the --database-url connection", now, note)
    if backend is not None:
        with backend.transaction(force_rollback=True):
            _act(backend, principal, backend=True)
            now_row = backend.execute("SELECT now()").fetchone()
            assert now_row is not None
            now = now_row[0]
            visible, note = _row_visible(backend, table, rkey)
        answer = DatabaseAnswer(visible, "SET LOCAL ROLE on the backend connection", now, note)
    return _explanation(world, prefix, principal, table, row, now, answer)


class _RelevanceExplainer(Explainer):
    """An ``Explainer`` that also names, per rule and row, the clauses that matter to the outcome.

    ``Judgement.reason`` falls back to every clause with the outcome's value when no single clause
    decides, which names ``addressed_to_viewer`` for a notice its addressee's working agency reads
    through ``addressed_to_supervisor``. Here a clause matters when it belongs to some minimal set of
    clauses whose flipping would flip the outcome (the formulas have at most five clauses)."""

    def __init__(self) -> None:
        super().__init__()
        self.relevant: dict[tuple[str, int | str, str], tuple[str, ...]] = {}

    def judge(
        self, rule: str, formula: Formula, clauses: Mapping[str, bool], *, about: object = None
    ) -> bool:
        outcome = super().judge(rule, formula, clauses, about=about)
        if about is not None:
            row: AnyRow = about  # type: ignore[assignment]
            self.relevant[(row.table, row_key(row), rule)] = _relevant(formula, clauses, outcome)
        return outcome


def _relevant(formula: Formula, clauses: Mapping[str, bool], outcome: bool) -> tuple[str, ...]:
    """Clauses with the outcome's value that belong to a minimal flip changing the outcome."""
    candidates = [n for n, v in clauses.items() if v == outcome]
    fixes: list[set[str]] = []
    for size in range(1, len(candidates) + 1):
        for subset in combinations(candidates, size):
            if any(fix <= set(subset) for fix in fixes):
                continue
            flipped = {n: (not v if n in subset else v) for n, v in clauses.items()}
            if formula(flipped) != outcome:
                fixes.append(set(subset))
    return tuple(n for n in candidates if any(n in fix for fix in fixes))


def _explain_view(
    world: World, role_name: str, now: dt.datetime
) -> tuple[ExplainedView, _RelevanceExplainer]:
    """``reference_model.explain.explain_view``, keeping which clauses matter."""
    explainer = _RelevanceExplainer()
    visible = visible_rows(world, role_name, now, explainer)
    p = world.principal_named(role_name)
    kind = None if p is None else ("restricted" if p.restricted else p.kind)
    return ExplainedView(visible, kind, {k: tuple(v) for k, v in explainer.judged.items()}), explainer


def _why(verdicts: tuple[RuleVerdict, ...]) -> str:
    """``agency.contract/entrusted+handles``; through a wrapping rule into the agency rule it wraps."""
    parts = list(verdicts[:1])
    if parts and "agency_rule" in parts[0].decisive and len(verdicts) > 1:
        parts.append(verdicts[1])
    return " > ".join(f"{v.rule}/{'+'.join(v.decisive)}" for v in parts)


def _explanation(
    world: World,
    prefix: str,
    principal: str,
    table: str,
    row: AnyRow,
    now: dt.datetime,
    answer: DatabaseAnswer,
    model: tuple[ExplainedView, _RelevanceExplainer] | None = None,
) -> Explanation:
    """The explanation of one row; ``model``: the principal's ``_explain_view`` when already computed."""
    view, explainer = model if model is not None else _explain_view(world, principal, now)
    p = world.principal_named(principal)
    assert p is not None and view.kind is not None
    viewer = Viewer(principal, view.kind, p.agency_id, p.insurer_id)
    key = row_key(row)
    verdicts = Reasons(world, now, view, viewer, prefix, explainer.relevant).verdicts(table, key, row)
    namer = Namer(world, now, prefix)
    return Explanation(
        role=principal,
        principal=namer.role(principal),
        kind=view.kind,
        table=table,
        key=key,
        row=namer.label(row),
        at=now,
        model_visible=view.shows(table, key),
        why=_why(verdicts) or view.why(table, key),
        verdicts=verdicts,
        database=answer,
    )


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------

_KIND_WORDS = {
    "agency": "agency principal",
    "restricted": "agency principal restricted to one insurer",
    "insurer": "insurer principal",
}


def print_explanation(console: Console, e: Explanation) -> None:
    """The explanation as text: verdict, rule, each condition with its rows, the database's answer."""
    verdict = "CAN read" if e.model_visible else "CANNOT read"
    warning = e.warning()
    if warning:
        console.print(f"[bold red]{escape(warning)}[/bold red]")
        console.print()
    console.print(
        f"[bold]{escape(e.principal)}[/bold] ({_KIND_WORDS[e.kind]}) {verdict} {escape(e.row_phrase)}"
        f" [dim](at {when(e.at)})[/dim]"
    )
    console.print(f"deciding rule: {escape(e.why)}")
    for v in e.verdicts:
        console.print()
        console.print(f"rule {v.rule}: {'allows' if v.allows else 'denies'}")
        console.print(f"  spec: {escape(v.spec)}")
        for c in v.conditions:
            mark = "[green]yes[/green]" if c.holds else "[red]no [/red]"
            decisive = " [bold](deciding)[/bold]" if c.name in v.decisive else ""
            console.print(f"  {mark} {c.name}{decisive}: {escape(c.text)}")
    db = "returned the row" if e.database.visible else "did not return the row"
    console.print()
    console.print(
        f"database, acting as {escape(e.role)} ({e.database.via}): {db}"
        + (f" ({escape(e.database.note)})" if e.database.note else "")
    )
    console.print(
        "[green]model and database agree[/green]"
        if e.agree
        else "[bold red]model and database DISAGREE[/bold red]"
    )


def run_explain(
    database_url: str | None,
    role: str,
    table: str,
    key: str,
    *,
    backend_url: str | None = None,
    as_json: bool = False,
    console: Console | None = None,
) -> int:
    """The command: connect, explain, print; returns the exit status (input errors raise)."""
    try:
        with psycopg.connect(libpq_conninfo(database_url), autocommit=True) as conn:
            if backend_url is None:
                e = explain_row(conn, role, table, key)
            else:
                with psycopg.connect(libpq_conninfo(backend_url), autocommit=True) as backend:
                    e = explain_row(conn, role, table, key, backend=backend)
    except psycopg.OperationalError as error:
        raise CannotExplain(" ".join(str(error).split())) from None
    if as_json:
        print(json.dumps(e.as_dict(), indent=2))
    else:
        print_explanation(console or Console(soft_wrap=True), e)
    return e.exit_status

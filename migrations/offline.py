"""Offline SQL (``migrate --sql``, ``downgrade … --sql``) that is right for the database it is for.

Why: a DBA reviews the printed script and runs it later (``psql -1 -v ON_ERROR_STOP=1 -f``). It
must name the roles the database really has: with a database URL the stored role prefix
(``agency_rls.role_prefix()``) decides, and asking for another one is an error, as online;
without one, ``--role-prefix`` (or ``AGENCY_RLS_ROLE_PREFIX``). With a database URL the script
also starts where the database is (Alembic's ``FROM:TO`` range, which offline downgrades need).

And it must do what the online command does: a new database upgraded to head gets the tables
revision, the current definition and the stamp of head; a database at head downgraded to base
gets the current definition's teardown, then the tables revision's downgrade (online: runner.py).
Both in ONE transaction, so that a DBA without SUPERUSER can run them: walking the recorded
revisions 0002 and 0004 would create or alter a BYPASSRLS role.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import psycopg
from agency_rls.rls_policies.definition import TEARDOWN_FILE, read_template, render, security_template
from agency_rls.rls_policies.names import ManagementRoles, check_prefix
from alembic.config import Config

from agency_rls.cluster.database import libpq_conninfo


def database_prefix(url: str, requested: str | None) -> str | None:
    """The prefix the database at ``url`` was migrated with, else ``requested``; a different one is refused."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        row = conn.execute("SELECT to_regprocedure('agency_rls.role_prefix()') IS NOT NULL").fetchone()
        stored = conn.execute("SELECT agency_rls.role_prefix()").fetchone()[0] if row and row[0] else None  # type: ignore[index]
    if stored is not None and requested is not None and check_prefix(requested) != stored:
        raise SystemExit(
            f"agency-rls: this database was migrated with role prefix {stored!r}, not {requested!r}"
        )
    return stored if stored is not None else requested


def split_range(revision: str) -> tuple[str | None, str]:
    """``FROM:TO`` -> (FROM, TO); a plain revision has no FROM."""
    if ":" in revision:
        start, end = revision.split(":", 1)
        return start or None, end
    return None, revision


def _without_transaction(script: str) -> str:
    """Alembic's offline output without its own BEGIN/COMMIT lines (the caller wraps one transaction)."""
    return "".join(
        line for line in script.splitlines(keepends=True) if line.strip() not in ("BEGIN;", "COMMIT;")
    )


def _captured(config: Config, run: Callable[[], None]) -> str:
    """What an Alembic offline command writes, as text."""
    saved = config.output_buffer
    buffer = io.StringIO()
    config.output_buffer = buffer
    try:
        run()
    finally:
        config.output_buffer = saved
    return _without_transaction(buffer.getvalue())


def install_script(config: Config, prefix: str, tables_revision: str, head: str) -> str:
    """A new database to head: the tables revision, the current definition, stamp head; one transaction."""
    from alembic import command

    tables = _captured(config, lambda: command.upgrade(config, tables_revision, sql=True))
    stamp = _captured(config, lambda: command.stamp(config, f"{tables_revision}:{head}", sql=True))
    definition = render(security_template(), ManagementRoles(prefix))
    return (
        f"-- agency-rls: install at revision {head} (role prefix {prefix!r}): the tables (revision "
        f"{tables_revision}), then the current definition, stamped {head}; one transaction.\n"
        "BEGIN;\n\n"
        f"{tables.strip()}\n\n-- The current definition (rls_policies/sql)\n\n{definition.strip()}\n\n"
        f"{stamp.strip()}\n\nCOMMIT;\n"
    )


def removal_script(config: Config, prefix: str, tables_revision: str, head: str) -> str:
    """A database at head to base: the definition's teardown, the tables revision's downgrade; one transaction."""
    from alembic import command

    stamp = _captured(config, lambda: command.stamp(config, f"{head}:{tables_revision}", sql=True))
    tables = _captured(config, lambda: command.downgrade(config, f"{tables_revision}:base", sql=True))
    teardown = render(read_template(TEARDOWN_FILE), ManagementRoles(prefix))
    return (
        f"-- agency-rls: remove everything from revision {head} (role prefix {prefix!r}): the current "
        f"definition's teardown, then revision {tables_revision}'s downgrade (data included); one transaction.\n"
        "BEGIN;\n\n"
        f"-- The current definition's teardown (rls_policies/sql)\n\n{teardown.strip()}\n\n"
        f"{stamp.strip()}\n\n{tables.strip()}\n\nCOMMIT;\n"
    )

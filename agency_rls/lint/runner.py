"""Run every lint rule against a live database, read-only, and collect one list of findings.

Why one read-only transaction: the rules read the catalogs only; a REPEATABLE READ READ ONLY
transaction gives them one consistent picture and guarantees that linting changes nothing. Each
rule runs in its own savepoint, so a rule that fails (a privilege the linting role lacks, a table
an old revision does not have) is reported as an error finding and the others still run.

Who may lint: any role that can read the catalogs: a superuser, the database owner, a NOSUPERUSER
DBA (managed PostgreSQL). Only ``principal_row_not_principal`` needs more (it reads every principal
row: a superuser or a member of the loader role) and says so, as a warning, when it cannot; a
rule refused for lack of privilege is a warning, any other failure of a rule an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import IsolationLevel

from agency_rls.cluster.database import libpq_conninfo
from agency_rls.lint.catalog import PERSONAL_COLUMN_PATTERN
from agency_rls.lint.finding import Finding, Level
from agency_rls.lint.registry import all_rules
from agency_rls.lint.rule import Rule
from agency_rls.lint.waivers import Waiver, apply_waivers, load_waivers
from agency_rls.rls_policies.definition import BACKEND_ROLE_SETTINGS
from agency_rls.rls_policies.names import (
    ManagementRoles,
    check_prefix,
    management_marker,
    principal_marker,
)


class LintError(RuntimeError):
    """The database cannot be linted (not migrated, prefix mismatch); one line for the user."""


@dataclass
class LintReport:
    """What one lint run found."""

    database: str
    role_prefix: str
    server_version_num: int
    rules: list[Rule]
    findings: list[Finding]
    unused_waivers: list[Waiver] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Any error-level finding that no valid waiver covers (exit status 1)."""
        return any(f.level is Level.error and not f.waived for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Findings per level (waived ones apart)."""
        counts = {str(level): 0 for level in Level} | {"waived": 0}
        for finding in self.findings:
            counts["waived" if finding.waived else str(finding.level)] += 1
        return counts


def stored_role_prefix(conn: psycopg.Connection) -> str | None:
    """The prefix the first migration stored (``agency_rls.role_prefix()``), or None if there is none."""
    row = conn.execute("SELECT pg_catalog.to_regprocedure('agency_rls.role_prefix()') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    value = conn.execute("SELECT agency_rls.role_prefix()").fetchone()
    return None if value is None else str(value[0])


def resolve_prefix(conn: psycopg.Connection, option: str | None) -> str:
    """The stored prefix; ``--role-prefix`` only for a database without one, and must agree otherwise."""
    stored = stored_role_prefix(conn)
    if stored is None:
        if option is None:
            raise LintError(
                "the database has no agency_rls.role_prefix() (not migrated by agency-rls?): give --role-prefix"
            )
        return check_prefix(option)
    if option is not None and option != stored:
        raise LintError(
            f"--role-prefix {option!r} differs from the prefix stored in the database ({stored!r})"
        )
    return stored


def rule_parameters(
    conn: psycopg.Connection, prefix: str, server_version_num: int | None
) -> dict[str, object]:
    """The parameters every rule may use (see ``agency_rls.lint.rule``)."""
    database, version, linter = conn.execute(
        "SELECT pg_catalog.current_database(), pg_catalog.current_setting('server_version_num')::int,"
        " pg_catalog.quote_ident(current_user)"
    ).fetchone()  # type: ignore[misc]
    roles = ManagementRoles(prefix)
    return {
        "prefix": prefix,
        "database": database,
        "owner": roles.owner,
        "helper": roles.helper,
        "backend": roles.backend,
        "backend_settings": list(BACKEND_ROLE_SETTINGS),
        "agency_group": roles.agency_group,
        "agency_writer_group": roles.agency_writer_group,
        "insurer_group": roles.insurer_group,
        "loader": roles.loader,
        "principal_marker": principal_marker(database),
        "management_marker": management_marker(database),
        "personal_column_pattern": PERSONAL_COLUMN_PATTERN,
        "server_version_num": server_version_num if server_version_num is not None else version,
        "linter": linter,
    }


def run_rule(conn: psycopg.Connection, rule: Rule, params: dict[str, object]) -> list[Finding]:
    """One rule's findings; a rule that fails becomes one error finding (the others still run)."""
    try:
        with conn.transaction():
            rows = conn.execute(rule.sql, {**params, **rule.params}).fetchall()  # type: ignore[arg-type]
    except psycopg.errors.InsufficientPrivilege as error:
        reason = " ".join(str(error).split())
        return [
            Finding(
                rule=rule.id,
                level=Level.warning,
                object="lint",
                message=f"rule {rule.id} could not run as {params['linter']}: {reason}",
                remedy="lint as a superuser or as the DBA who migrated the database (a member of the loader role)",
            )
        ]
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        return [
            Finding(
                rule=rule.id,
                level=Level.error,
                object="lint",
                message=f"rule {rule.id} could not run: {reason}",
                remedy="lint a database migrated by agency-rls, as its owner or a superuser; report it otherwise",
            )
        ]
    return [
        Finding(
            rule=rule.id,
            level=Level(level) if level else rule.level,
            object=str(obj),
            message=str(message),
            remedy=str(remedy),
        )
        for level, obj, message, remedy in rows
    ]


def lint_connection(
    conn: psycopg.Connection,
    *,
    role_prefix: str | None = None,
    server_version_num: int | None = None,
    rules: Sequence[Rule] | None = None,
) -> LintReport:
    """Run ``rules`` (default: all) on ``conn``; nothing is changed.

    Inside a transaction the caller opened (tests plant a defect and lint before rolling back),
    the rules run in a savepoint that is rolled back; otherwise in a transaction of their own.
    Either way the transaction is made read-only first.
    """
    chosen = list(rules) if rules is not None else all_rules()
    findings: list[Finding] = []
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL transaction_read_only = on")
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        prefix = resolve_prefix(conn, role_prefix)
        params = rule_parameters(conn, prefix, server_version_num)
        for rule in chosen:
            findings.extend(run_rule(conn, rule, params))
    findings.sort(key=lambda f: (list(Level).index(f.level), f.rule, f.object, f.message))
    return LintReport(
        database=str(params["database"]),
        role_prefix=prefix,
        server_version_num=int(params["server_version_num"]),  # type: ignore[call-overload]
        rules=chosen,
        findings=findings,
    )


def run_lint(
    database_url: str | None,
    *,
    role_prefix: str | None = None,
    waivers_path: str | None = None,
    today: dt.date | None = None,
    server_version_num: int | None = None,
) -> LintReport:
    """Connect (URL, DATABASE_URL or the libpq environment), lint read-only, apply the waiver file."""
    rules = all_rules()
    waivers = load_waivers(waivers_path, [r.id for r in rules]) if waivers_path else []
    with psycopg.connect(libpq_conninfo(database_url), autocommit=False) as conn:
        conn.read_only = True
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        report = lint_connection(
            conn, role_prefix=role_prefix, server_version_num=server_version_num, rules=rules
        )
    report.findings, report.unused_waivers = apply_waivers(report.findings, waivers, today or dt.date.today())
    return report

"""``agency-rls demo``: the incident, replayed against the real policies.

Migrates a database, installs the sample world (the shipped scenario ``scenarios/sample_world.yaml``,
with ``install_scenario`` as ``agency-rls check`` does: load, then provision), and then, for each
principal, counts what it can read by querying *as that principal* (``SET LOCAL ROLE`` inside a
transaction that is rolled back). The incident checks replay the file's named cases: the rows the
original incident leaked must count 0 here, the rows a principal may read their number.

Only an explicit URL (``--database-url`` / ``DATABASE_URL``) points the demo at an existing
server; stray ``PG*`` variables are ignored so a sample world is never written into a real
database by accident. Without one, a throwaway cluster is started and stopped.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from agency_rls.checks import sample_world
from agency_rls.cli_support.terminal import key_column, stdout_console
from agency_rls.cluster.database import libpq_conninfo
from agency_rls.cluster.throwaway import ThrowawayCluster
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.privileges import require_superuser_to_act_as_principals
from agency_rls.rls_policies.provision import stored_prefix
from agency_rls.schema import ALL_TABLES

DEMO_DATABASE = "agency_rls_demo"


@dataclass
class CheckResult:
    """One incident check: what a principal counted, and what it must count."""

    label: str
    role: str
    expected: int
    actual: int

    @property
    def ok(self) -> bool:
        """The count is the one the spec requires."""
        return self.actual == self.expected


def run_demo(
    url: str | None, *, keep: bool = False, as_json: bool = False, role_prefix: str | None = None
) -> bool:
    """Run the demo; True when every incident check holds.

    ``role_prefix``: the prefix of the database migrated now (``--role-prefix``, as ``migrate``).
    With ``keep`` the JSON report has ``kept``: the cluster's URL, a psql command and the command
    that stops the server and removes its directory."""
    console = stdout_console()
    kept: dict[str, str] | None = None
    with ExitStack() as stack:
        if url is None:
            cluster = ThrowawayCluster(keep=keep).start()
            if not keep:
                stack.callback(cluster.stop)
            _create_database(cluster.conninfo(), DEMO_DATABASE)
            url = cluster.url(DEMO_DATABASE)
        else:
            cluster = None
        conninfo = libpq_conninfo(url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            require_superuser_to_act_as_principals(conn, "demo --database-url")
            _require_empty(conn)
        migrations_runner.upgrade(url, "head", role_prefix=role_prefix)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            prefix = stored_prefix(conn)
            sample_world.install_sample_world(conn, prefix=prefix)
            counts = _visible_counts(conn)
            checks = _incident_checks(conn, prefix)
        ok = all(check.ok for check in checks)
        if cluster is not None and keep:
            kept = {
                "url": url,
                "psql": cluster.psql_command(DEMO_DATABASE),
                "stop_and_remove": cluster.stop_and_remove_command(),
            }
        if as_json:
            report: dict[str, object] = {
                "ok": ok,
                "role_prefix": prefix,
                "visible_rows": counts,
                "incident_checks": [c.__dict__ for c in checks],
            }
            if kept is not None:
                report["kept"] = kept
            print(json.dumps(report, indent=2))
        else:
            _print_report(console, counts, checks, ok)
            if kept is not None:
                console.print(
                    f"\nThe cluster keeps running at {kept['url']}\nExplore it with:\n  {kept['psql']}",
                    markup=False,
                    highlight=False,
                )
                console.print(
                    f"Stop it and remove its directory with:\n  {kept['stop_and_remove']}",
                    markup=False,
                    highlight=False,
                )
    return ok


def _create_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _require_empty(conn: psycopg.Connection) -> None:
    """Refuse to load a sample world next to real data."""
    row = conn.execute("SELECT to_regclass('public.agency') IS NOT NULL").fetchone()
    if row and row[0]:
        has_rows = conn.execute("SELECT EXISTS (SELECT FROM public.agency)").fetchone()
        if has_rows and has_rows[0]:
            raise RuntimeError("the demo needs an empty database; this one already holds agencies")


def _acting_as(conn: psycopg.Connection, role: str, query: str) -> int:
    """Run a count query as ``role`` in a transaction that is always rolled back."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            row = conn.execute(query).fetchone()  # type: ignore[call-overload]
            return int(row[0]) if row else 0
    except psycopg.errors.InsufficientPrivilege:
        return 0


def _visible_counts(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    roles = [r[0] for r in conn.execute("SELECT role_name FROM public.principal ORDER BY kind, role_name")]
    return {
        role: {table: _acting_as(conn, role, f"SELECT count(*) FROM public.{table}") for table in ALL_TABLES}
        for role in roles
    }


def _incident_checks(conn: psycopg.Connection, prefix: str) -> list[CheckResult]:
    return [
        CheckResult(
            label=label, role=prefix + role, expected=expected, actual=_acting_as(conn, prefix + role, query)
        )
        for label, role, query, expected in sample_world.INCIDENT_CHECKS
    ]


def _print_report(
    console: Console, counts: dict[str, dict[str, int]], checks: list[CheckResult], ok: bool
) -> None:
    table = Table(title="Rows each principal can read (counted as that principal)")
    key_column(table, "principal")
    for name in ALL_TABLES:
        table.add_column(name, justify="right")
    for role, per_table in counts.items():
        table.add_row(role, *(str(per_table[name]) for name in ALL_TABLES))
    console.print(table)
    checks_table = Table(title="The incident, replayed")
    checks_table.add_column("check")
    key_column(checks_table, "as")
    for column in ("expected", "actual", ""):
        checks_table.add_column(column)
    for check in checks:
        checks_table.add_row(
            check.label,
            check.role,
            str(check.expected),
            str(check.actual),
            "[green]ok[/green]" if check.ok else "[red]LEAK[/red]",
        )
    console.print(checks_table)
    console.print(
        "[green]Every incident check holds.[/green]" if ok else "[red]Some incident checks fail.[/red]"
    )

"""The ``agency-rls`` command: migrate, provision and demonstrate the agency scope.

Every command takes ``--database-url`` (or ``DATABASE_URL``, or the libpq environment) and
exits non-zero with a one-line reason on failure. ``demo`` is the exception on purpose: it
only ever writes its sample world into a database named explicitly (``--database-url`` or
``DATABASE_URL``); otherwise it starts a throwaway local cluster.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import psycopg
import typer
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision as run_provision
from agency_rls.scenarios import builtin_scenarios
from rich.console import Console

from agency_rls.cli_support import migration_report
from agency_rls.cli_support.terminal import (
    confirm,
    exit_quietly_on_broken_pipe,
    progress_bar,
    stdout_console,
)
from agency_rls.cluster.database import explicit_url, libpq_conninfo

app = typer.Typer(
    help="PostgreSQL row level security that keeps insurance agencies inside their scope.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")


class OutputFormat(StrEnum):
    """Human (rich) or machine (JSON) output."""

    text = "text"
    json = "json"


class BenchFormat(StrEnum):
    """``bench`` output: human (rich), machine (JSON), or the Markdown table of BENCHMARKS.md."""

    text = "text"
    json = "json"
    markdown = "markdown"


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        help="postgresql:// or postgres:// URL, or libpq keywords 'host=… dbname=…' (default: DATABASE_URL,"
        " then the libpq environment PGHOST, PGUSER, ...).",
        show_envvar=True,
    ),
]
RolePrefix = Annotated[
    str | None,
    typer.Option(
        envvar="AGENCY_RLS_ROLE_PREFIX",
        help="Role name prefix of a new database (stored in it; later runs and --sql with a database use the"
        " stored one).",
        show_envvar=True,
    ),
]


def fail(line: str) -> None:
    """Write one unwrapped line to stderr (rich would wrap it at the terminal width)."""
    sys.stderr.write(" ".join(line.split()) + "\n")


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn any failure into 'agency-rls: <reason>' on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, BrokenPipeError):
            raise
        except SystemExit as error:
            if isinstance(error.code, str):
                fail(error.code if error.code.startswith("agency-rls") else f"agency-rls: {error.code}")
                raise typer.Exit(1) from None
            raise
        except Exception as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            if hasattr(error, "orig") and error.orig is not None:  # SQLAlchemy wraps driver errors
                reason = " ".join(str(error.orig).split())
            fail(f"agency-rls: {reason}")
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@one_line_errors
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseUrl = None,
    role_prefix: RolePrefix = None,
    sql: Annotated[
        bool,
        typer.Option(
            "--sql",
            help="Print the SQL for review instead of running it (with a database: its prefix, from its revision).",
        ),
    ] = False,
) -> None:
    """Upgrade the database to REVISION (default: head); print each revision applied ('0005 -> 0006').

    Example: agency-rls migrate --database-url postgresql://dba@db/crm --role-prefix crm_
    """
    moved = migrations_runner.upgrade(database_url, revision, role_prefix=role_prefix, sql=sql)
    if moved is not None:
        print("\n".join(migration_report.upgrade_lines(moved, revision)))


@app.command()
@one_line_errors
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. 'base' to remove everything.")],
    database_url: DatabaseUrl = None,
    role_prefix: RolePrefix = None,
    sql: Annotated[
        bool,
        typer.Option(
            "--sql",
            help="Print the SQL for review instead of running it (with a database: its prefix, from its"
            " revision; without one give FROM:TO, e.g. 0007:base, and --role-prefix).",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Confirm 'downgrade base' (drops every table and its data).")
    ] = False,
) -> None:
    """Downgrade the database to REVISION; print each revision reverted ('0006 -> 0005').

    'base' removes every table (data included), object and role the project made: it asks on a
    terminal, and needs --yes otherwise.
    Example: agency-rls downgrade base --yes
    """
    if not sql and revision == "base":
        confirm(
            "downgrade base drops every agency-rls table with its data, and every role agency-rls made. Go on?",
            yes=yes,
            refusal="downgrade base drops every table and its data: give --yes to confirm (nobody to ask: stdin"
            " is not a terminal); nothing changed",
        )
    moved = migrations_runner.downgrade(database_url, revision, sql=sql, role_prefix=role_prefix)
    if moved is not None:
        print("\n".join(migration_report.downgrade_lines(moved)))


@app.command()
@one_line_errors
def current(
    database_url: DatabaseUrl = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Show the revision the database is at ('0007 (head)'), or 'not migrated'.

    Example: agency-rls current --format json
    """
    state = migration_report.current_state(database_url)
    print(
        json.dumps(state, indent=2) if output is OutputFormat.json else migration_report.current_line(state)
    )


@app.command()
@one_line_errors
def history(
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """List the migrations, newest first; needs no database.

    Example: agency-rls history --format json
    """
    revisions = migrations_runner.history()
    print(
        json.dumps(revisions, indent=2)
        if output is OutputFormat.json
        else "\n".join(migration_report.history_lines(revisions))
    )


@app.command()
@one_line_errors
def revision(
    message: Annotated[
        str, typer.Option("-m", "--message", help="What the revision changes (its file name and docstring).")
    ],
    empty: Annotated[
        bool, typer.Option("--empty", help="Write empty SQL files to fill in by hand instead of comparing.")
    ] = False,
    definition: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="A copy of rls_policies/sql to compare with head instead of the package's."
        ),
    ] = None,
    scratch_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="A superuser URL where two scratch databases (and roles) may be made and dropped "
            "(default: a throwaway cluster).",
        ),
    ] = None,
) -> None:
    """Write a new revision whose SQL moves the definition recorded at head to rls_policies/sql.

    Writes <rev>.py, <rev>_upgrade.sql and <rev>_downgrade.sql in migrations/versions/, checked on
    scratch databases first; with no change it says so and writes nothing. Needs no database of yours.

    Example: agency-rls revision -m "notices: addressees see receipts only once read"
    """
    written = migrations_runner.revision(
        message,
        autogenerate=not empty,
        definition_dir=definition,
        scratch_server=libpq_conninfo(scratch_url) if scratch_url else None,
    )
    if written is None:
        raise typer.Exit(0)
    rev = written.name.split("_", 1)[0]
    for path in (written, written.with_name(f"{rev}_upgrade.sql"), written.with_name(f"{rev}_downgrade.sql")):
        print(path)


@app.command()
@one_line_errors
def provision(
    database_url: DatabaseUrl = None,
    login: Annotated[
        bool,
        typer.Option(
            "--login",
            help="Principal roles get LOGIN (for direct-login tests); without it every principal is NOLOGIN again.",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Drop principal roles whose principal row is gone, and what principals own in this database.",
        ),
    ] = False,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Create principal rows and roles for every agency, insurer and principal row, in one transaction.

    Also moves identity sequences past loaded ids, repairs contract_handler.insurer_id after loads
    with triggers off, resets role settings principals gave themselves, and warns (on stderr) of
    objects principals own.

    Example: agency-rls provision --prune --format json
    """
    as_json = output is OutputFormat.json
    with (
        psycopg.connect(libpq_conninfo(database_url), autocommit=True) as conn,
        progress_bar("provisioning principals", None, enabled=not as_json),
    ):
        report = run_provision(conn, login=login, prune=prune)
    if login:
        fail(LOGIN_WARNING)
    for item in report.owned_objects:
        fail(f"agency-rls: warning: {item}")
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    console = stdout_console()
    console.print(
        f"{report.principals} principals; "
        f"{len(report.principal_rows_added)} principal rows added, {len(report.roles_created)} roles created, "
        f"{len(report.roles_updated)} updated, {len(report.roles_dropped)} dropped; "
        f"{len(report.sequences_advanced)} identity sequences advanced, "
        f"{report.derived_rows_repaired} derived handler rows repaired."
    )
    for label, names in (
        ("added rows", report.principal_rows_added),
        ("created", report.roles_created),
        ("updated", report.roles_updated),
        ("dropped", report.roles_dropped),
        ("sequences advanced", [f"{t} (past id {top})" for t, top in report.sequences_advanced.items()]),
        ("role settings reset", sorted(set(report.settings_reset))),
    ):
        if names:
            console.print(f"  {label}: " + ", ".join(names), markup=False, highlight=False)


#: Printed by ``provision --login``: what direct login gives a principal that the backend does not.
LOGIN_WARNING = (
    "agency-rls: warning: LOGIN principals run SQL of their own, and row level security cannot hide "
    "everything from them: EXPLAIN ANALYZE row counts reveal hidden rows, planner estimates and "
    "pg_stat_* counters reveal table sizes (README: 'What row level security cannot hide'). Reserve "
    "direct login for trusted tools; applications act through the backend role."
)


@app.command()
@one_line_errors
def demo(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="DATABASE_URL",
            help="Use this (empty) database instead of a throwaway cluster. PG* variables are ignored here.",
            show_envvar=True,
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Leave the throwaway cluster running; print its URL, a psql command and the command that stops"
            " and removes it (JSON: 'kept').",
        ),
    ] = False,
    role_prefix: RolePrefix = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Replay the incident: migrate, load a sample world, provision, and show what each principal reads.

    Example: agency-rls demo --keep --format json
    """
    from agency_rls.checks.demo import run_demo  # imported late: keeps --help fast

    ok = run_demo(
        explicit_url(database_url), keep=keep, as_json=output is OutputFormat.json, role_prefix=role_prefix
    )
    if not ok:
        raise typer.Exit(1)


@app.command()
@one_line_errors
def matrix(
    database_url: DatabaseUrl = None,
    principal: Annotated[
        list[str] | None,
        typer.Option(
            "--principal",
            metavar="ROLE",
            help="Only this principal (role name, with or without the role prefix); repeatable.",
        ),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
    html: Annotated[
        str | None,
        typer.Option("--html", metavar="FILE", help="Also write a standalone, sortable HTML page to FILE."),
    ] = None,
) -> None:
    """Count the rows each principal can read, table by table, acting as it; show its write grants.

    Read-only: one REPEATABLE READ READ ONLY transaction, a rolled-back savepoint per principal.
    Needs a superuser connection. Example: agency-rls matrix --html matrix.html
    """
    from agency_rls.checks.matrix import run_matrix  # imported late: keeps --help fast

    run_matrix(database_url, principal, as_json=output is OutputFormat.json, html_path=html)


@app.command()
@one_line_errors
def check(
    files: Annotated[
        list[str] | None,
        typer.Argument(metavar="[FILE]...", help="Scenario files (YAML).", show_default=False),
    ] = None,
    builtin: Annotated[
        bool,
        typer.Option(
            "--builtin",
            help="Also check the scenario files shipped with agency-rls (the demo's world, the incident, its edges).",
        ),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="DATABASE_URL",
            help="Superuser URL of a server to create a new database on per file, instead of a throwaway"
            " cluster. PG* variables are ignored here.",
            show_envvar=True,
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep each file's database, roles (and throwaway cluster).")
    ] = False,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
    junit: Annotated[
        str | None, typer.Option("--junit", metavar="FILE", help="Also write JUnit XML to FILE (for CI).")
    ] = None,
) -> None:
    """Load each scenario FILE into a new database and compare, as every principal, the rows read with
    the file's expectations and the reference model; run the file's writes.

    Exit status: 0 all pass, 1 a mismatch, 2 an invalid file, 3 cannot run (connection, server start).
    Examples: agency-rls check scenarios/*.yaml --junit check.xml; agency-rls check --builtin
    """
    from agency_rls.checks.check import run_check  # imported late: keeps --help fast

    paths = [*(files or []), *(str(path) for path in builtin_scenarios() if builtin)]
    if not paths:
        fail("agency-rls: check: give scenario FILEs, or --builtin for the shipped ones")
        raise typer.Exit(2)
    status = run_check(
        paths, explicit_url(database_url), keep=keep, as_json=output is OutputFormat.json, junit=junit
    )
    if status:
        raise typer.Exit(status)


@app.command()
@one_line_errors
def bench(
    database_url: DatabaseUrl = None,
    backend_url: Annotated[
        str | None,
        typer.Option(
            "--backend-url",
            envvar="AGENCY_RLS_BACKEND_URL",
            help="A login of the backend role <prefix>rls_backend (default: a superuser's sessions switch to it"
            " with SET SESSION AUTHORIZATION; otherwise a login as it without a password).",
            show_envvar=True,
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Timed samples per principal and query.")] = 30,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed rounds after the two priming passes.")] = 3,
    output: Annotated[
        BenchFormat, typer.Option("--format", help="Output format (markdown: the table of BENCHMARKS.md).")
    ] = BenchFormat.text,
    principal: Annotated[
        list[str] | None,
        typer.Option(
            "--principal",
            metavar="ROLE",
            help="Only this principal (role name, with or without the role prefix) instead of the automatic"
            " choice; repeatable.",
        ),
    ] = None,
    query: Annotated[
        list[str] | None,
        typer.Option("--query", metavar="NAME", help="Only this query of the mix; repeatable."),
    ] = None,
) -> None:
    """Time the query mix acting as principals (RLS) against hand-written queries over the base tables.

    For the smallest, median and largest agency, a working agency, a supervising agency, a seconded
    principal and an insurer: p50/p95 of each side, the ratio, buffers, and each RLS plan's shape
    with what does not scale (seq scan on a large table, a scan whose filter drops 10,000 rows,
    hashed SubPlan, scope materialised per statement). Every pair must return the same rows: exit status 1 on a mismatch. Needs a
    superuser or a member of <prefix>rls_loader. Example:
    agency-rls bench --database-url postgresql://dba@db/crm --rounds 50 --format json > bench.json
    """
    from agency_rls.workload.bench import format_json, render_text, run_bench  # late: keeps --help fast
    from agency_rls.workload.bench_markdown import markdown_from_json

    as_json = output is not BenchFormat.text
    progress = Console(stderr=True)
    report = run_bench(
        libpq_conninfo(database_url),
        backend_conninfo=backend_url,
        rounds=rounds,
        warmup=warmup,
        principals=principal,
        queries=query,
        progress=None if as_json else lambda message: progress.print(f"bench: {message}", highlight=False),
    )
    if output is BenchFormat.json:
        print(format_json(report))
    elif output is BenchFormat.markdown:
        print(markdown_from_json(json.loads(format_json(report))), end="")
    else:
        render_text(report, stdout_console())
    if not report.ok:
        raise typer.Exit(1)


@app.command("bench-writes")
def bench_writes(
    database_url: DatabaseUrl = None,
    rounds: Annotated[int, typer.Option(min=1, help="Timed samples per side of each single-row write.")] = 20,
    batch_rounds: Annotated[int, typer.Option(min=1, help="Timed samples per side of each batch write.")] = 5,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed rounds before each size's timed rounds.")] = 2,
    batch_rows: Annotated[
        int, typer.Option(min=2, help="Rows of a batch write (fewer if the agency has fewer).")
    ] = 10_000,
    seed_number: Annotated[int, typer.Option("--seed", help="Random seed of the rows picked.")] = 1,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind", metavar="NAME", help="Only this write kind (e.g. handler_insert); repeatable."
        ),
    ] = None,
    output: Annotated[
        BenchFormat, typer.Option("--format", help="Output format (markdown: the table of BENCHMARKS.md).")
    ] = BenchFormat.text,
) -> None:
    """Time writes that keep the scope copies exact (WITH the triggers) against the PLAIN write (the
    scope-copy triggers disabled), single-row and batch; check the copies after every write.

    Every sample is a transaction that is rolled back: the rows do not change.
    Needs the owner of the tables (a superuser, or the DBA who installed agency-rls) on a seeded database.
    Exit status: 0 copies exact, 1 a write left a copy inexact, 2 usage or connection error.
    Example: agency-rls bench-writes --database-url postgresql://dba@db/crm_bench --format markdown
    """
    from agency_rls.workload import write_cost  # imported late: keeps --help fast

    progress = Console(stderr=True)
    try:
        with psycopg.connect(libpq_conninfo(database_url), autocommit=True) as conn:
            report = write_cost.measure_write_cost(
                conn,
                rounds=rounds,
                batch_rounds=batch_rounds,
                warmup=warmup,
                batch_rows=batch_rows,
                seed=seed_number,
                kinds=kind,
                progress=None
                if output is not BenchFormat.text
                else lambda message: progress.print(f"bench-writes: {message}", highlight=False),
            )
    except (write_cost.WriteCostError, psycopg.Error, SystemExit) as error:
        reason = error.code if isinstance(error, SystemExit) else error
        fail(f"agency-rls: bench-writes: {' '.join(str(reason).split()) or type(error).__name__}")
        raise typer.Exit(2) from None
    if output is BenchFormat.json:
        print(write_cost.format_json(report))
    elif output is BenchFormat.markdown:
        print(write_cost.markdown_from_json(report.as_dict()), end="")
    else:
        write_cost.render_text(report, stdout_console())
    if not report.ok:
        raise typer.Exit(1)


class SeedScale(StrEnum):
    """The presets of ``agency-rls seed`` (``agency_rls.workload.synthetic.SCALES``)."""

    tiny = "tiny"
    small = "small"
    medium = "medium"
    bench = "bench"


@app.command()
@one_line_errors
def seed(
    database_url: DatabaseUrl = None,
    scale: Annotated[
        SeedScale,
        typer.Option(
            help="World size: tiny (2,000 contracts, for tests), small (100,000 contracts, 500 agencies),"
            " medium (1,000,000, 2,000 agencies), bench (10,000,000 contracts, 3,000,000 customers, 5,000"
            " agencies, 2,000,000 notices).",
        ),
    ] = SeedScale.small,
    seed_number: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed and --as-of give the same rows.")
    ] = 1,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="YYYY-MM-DD",
            help="The world's today, around which validity and dates are laid out (default: the server's"
            " current UTC date).",
        ),
    ] = None,
    migrate_first: Annotated[
        bool,
        typer.Option("--migrate", help="Migrate the database to head first (an empty one gets everything)."),
    ] = False,
    role_prefix: Annotated[
        str | None,
        typer.Option(
            envvar="AGENCY_RLS_ROLE_PREFIX",
            help="With --migrate: the role prefix of a database migrated now.",
        ),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Load a reproducible synthetic world into an empty migrated database: COPY, provision, vacuum.

    One transaction: every table in dependency order with explicit ids, then provisioning (a role
    per agency and insurer, seconded principals). Refuses a database that holds rows or is not at
    head. A progress bar on stderr; prints row counts, seconds, sizes and principals worth acting
    as. Example: agency-rls seed --database-url postgresql://dba@db/crm_bench --migrate --scale medium --seed 7
    """
    import datetime as dt

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from agency_rls.workload.seed import seed_world  # imported late: keeps --help fast

    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise SystemExit(f"--as-of {as_of!r}: give a day as YYYY-MM-DD") from None
    if migrate_first:
        migrations_runner.upgrade(database_url, "head", role_prefix=role_prefix)
    columns = (TextColumn("{task.description:<17}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns, console=Console(stderr=True))
    tasks: dict[str, TaskID] = {}

    def progress(step: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()  # on the first row: a refusal prints its one line only
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total)
        bar.update(tasks[step], completed=done, total=total)

    try:
        with psycopg.connect(libpq_conninfo(database_url), autocommit=True) as conn:
            report = seed_world(conn, scale=scale.value, seed=seed_number, as_of=day, progress=progress)
    finally:
        if tasks:
            bar.stop()
    if output is OutputFormat.json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    console = Console(soft_wrap=True)
    console.print(
        f"Seeded scale {report.scale} (seed {report.seed}, as of {report.as_of}, role prefix "
        f"{report.prefix!r}, {report.loaded_by}) in {report.total_seconds:.1f} s; database "
        f"{report.database_bytes / 2**20:,.0f} MiB; {report.principals:,} principals "
        f"({report.roles_created:,} roles created).",
        highlight=False,
    )
    for table, rows in report.rows.items():
        console.print(
            f"  {table:<17}{rows:>12,} rows {report.seconds.get(table, 0):>9.1f} s"
            f" {report.table_bytes.get(table, 0) / 2**20:>9,.1f} MiB",
            highlight=False,
        )
    for step in ("provision", "vacuum", "analyze"):
        if step in report.seconds:
            console.print(f"  {step:<17}{'':>17} {report.seconds[step]:>9.1f} s", highlight=False)
    if report.rows_repaired:
        repaired = ", ".join(f"{table} {rows:,}" for table, rows in report.rows_repaired.items())
        console.print(f"  rows provision's repair rewrote after the load: {repaired}", highlight=False)
    console.print("Principals worth acting as (contracts handled now / with a link ever):", highlight=False)
    for label, principal in report.notable.items():
        counts = (
            f"{principal['contracts_now']:,} / {principal['contracts_ever']:,}"
            if "contracts_now" in principal
            else f"{principal['contracts']:,} contracts"
            if "contracts" in principal
            else ""
        )
        console.print(f"  {label:<24}{principal['role']:<40}{counts}", highlight=False, markup=False)


class LintFormat(StrEnum):
    """``lint`` output: human (rich), machine (JSON), or SARIF 2.1.0 for code-scanning UIs."""

    text = "text"
    json = "json"
    sarif = "sarif"


@app.command()
@one_line_errors
def diff(
    rev_a: Annotated[
        str, typer.Argument(metavar="REV_A", help="The older revision (an id such as 0006, or 'head').")
    ],
    rev_b: Annotated[str, typer.Argument(metavar="REV_B", help="The newer revision.")],
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            metavar="FILE",
            help="A scenario file's world (repeatable; default: the shipped ones).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Also a small generated world, the same for the same seed (needs Hypothesis)."
        ),
    ] = None,
    scratch_url: Annotated[
        str | None,
        typer.Option(
            "--scratch-url",
            envvar="AGENCY_RLS_SCRATCH_URL",
            help="Superuser URL of a server to build the scratch databases on, instead of a throwaway cluster.",
            show_envvar=True,
        ),
    ] = None,
    versions_dir: Annotated[
        Path | None,
        typer.Option(
            "--versions-dir", metavar="DIR", help="Revisions from DIR instead of the installed ones."
        ),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the scratch databases (and cluster).")] = False,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Build REV_A and REV_B in scratch databases, load the same worlds, and report the rows each principal
    gains and loses, with the scope rule that explains each.

    Exit status: 0 no principal gains a row (or a revision after REV_A declares it: widens_access),
    1 an undeclared gain, 2 bad input, 3 cannot run. Example: agency-rls diff 0006 head --format json
    """
    from agency_rls.checks.behaviour_diff import run_diff  # imported late: keeps --help fast

    status = run_diff(
        rev_a,
        rev_b,
        scenarios=scenario or (),
        seed=seed,
        scratch_url=scratch_url,
        versions_dir=versions_dir,
        keep=keep,
        as_json=output is OutputFormat.json,
    )
    if status:
        raise typer.Exit(status)


@app.command()
@one_line_errors
def lint(
    database_url: DatabaseUrl = None,
    output: Annotated[LintFormat, typer.Option("--format", help="Output format.")] = LintFormat.text,
    waivers: Annotated[
        str | None,
        typer.Option(
            "--waivers", metavar="FILE", help="TOML or YAML file of waivers (rule, object, reason, expires)."
        ),
    ] = None,
    role_prefix: Annotated[
        str | None,
        typer.Option(help="Role prefix, only for a database that does not store one (the stored one wins)."),
    ] = None,
    list_rules: Annotated[bool, typer.Option("--list-rules", help="Print each rule's doc and exit.")] = False,
) -> None:
    """Check the live database's catalogs for what would let rows leak: RLS flags, policies, definer
    functions, role powers, grants, versions. Read-only.

    Exit status: 0 clean (or only warnings, info and waived findings), 1 an error-level finding (or a
    failure), 2 an invalid waiver file.
    Examples: agency-rls lint; agency-rls lint --format sarif --waivers lint-waivers.toml > lint.sarif
    """
    from agency_rls.lint import WaiverError, all_rules, run_lint  # imported late: keeps --help fast
    from agency_rls.lint.output import render_text, to_json, to_sarif

    if list_rules:
        for rule in all_rules():
            print(f"{rule.id} ({rule.level})\n\n{rule.doc}\n")
        return
    try:
        report = run_lint(database_url, role_prefix=role_prefix, waivers_path=waivers)
    except WaiverError as error:
        fail(f"agency-rls: lint: {error}")
        raise typer.Exit(2) from None
    if output is LintFormat.json:
        print(to_json(report))
    elif output is LintFormat.sarif:
        print(json.dumps(to_sarif(report), indent=2))
    else:
        render_text(report, Console())
    if report.failed:
        raise typer.Exit(1)


@app.command()
def drift(
    database_url: DatabaseUrl = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
    scratch_url: Annotated[
        str | None,
        typer.Option(
            "--scratch-url",
            metavar="URL",
            help="Server where a scratch database may be created and dropped (managed PostgreSQL: the same"
            " server); default: a throwaway local cluster.",
        ),
    ] = None,
) -> None:
    """Compare the live database (policies, functions, grants, roles, memberships, RLS flags) with what
    the migrations define at its current revision; print one diff per object that differs. Read-only.

    Exit status: 0 no drift, 1 drift, 2 usage error, 3 the comparison could not run.
    Examples: agency-rls drift; agency-rls drift --scratch-url postgresql://dba@db/postgres --format json
    """
    from agency_rls.migrations.drift import detect_drift  # late: keeps --help fast

    try:
        report = detect_drift(explicit_url(database_url), scratch_url=scratch_url)
    except (Exception, SystemExit) as error:  # any failure is "could not compare" (3), never drift (1)
        reason = error.code if isinstance(error, SystemExit) else getattr(error, "orig", None) or error
        fail(f"agency-rls: drift: {' '.join(str(reason).split()) or type(error).__name__}")
        raise typer.Exit(3) from None
    if output is OutputFormat.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        sys.stdout.write(report.text())
    if report.drifted:
        raise typer.Exit(1)


@app.command()
@one_line_errors
def explain(
    table: Annotated[str, typer.Argument(help="contract, customer, notice, contract_handler, agency, ...")],
    key: Annotated[str, typer.Argument(help="The row's id; a contract also by policy number (NL-1001).")],
    as_role: Annotated[
        str,
        typer.Option("--as", metavar="ROLE", help="The principal (role name, with or without the prefix)."),
    ],
    database_url: DatabaseUrl = None,
    backend_url: Annotated[
        str | None,
        typer.Option(
            "--backend-url",
            envvar="AGENCY_RLS_BACKEND_URL",
            help="Login as the backend role, to act as the principal when the --database-url role cannot"
            " SET ROLE to it (a non-superuser DBA).",
            show_envvar=True,
        ),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Why principal ROLE can or cannot read row KEY of TABLE: the rule, each condition with its rows and
    validity dates (reference model), confirmed by reading the row as the principal. Read-only.

    Exit status: 0 model and database agree, 1 they DISAGREE (a loud warning), 2 unknown principal,
    table or key, 3 cannot run. Example: agency-rls explain --as agency_w11 contract GW1-2001
    """
    from agency_rls.checks.explain_row import CannotExplain, ExplainInputError, run_explain

    try:
        status = run_explain(
            database_url, as_role, table, key, backend_url=backend_url, as_json=output is OutputFormat.json
        )
    except ExplainInputError as error:
        fail(f"agency-rls: explain: {error}")
        raise typer.Exit(2) from None
    except CannotExplain as error:
        fail(f"agency-rls: explain: {error}")
        raise typer.Exit(3) from None
    if status:
        raise typer.Exit(status)


@app.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
def alembic(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ALEMBIC_ARGS",
            help="An Alembic command line: its command and options, e.g. '-x role_prefix=crm_ upgrade head'.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run any Alembic command on this package's migrations, wherever it is installed; no alembic.ini.

    Everything after this command's own options goes to Alembic unchanged.
    The URL: --database-url, DATABASE_URL, the libpq environment, or '-x database_url=…'.
    A new database's role prefix: '-x role_prefix=crm_'.
    Alembic's own help: 'agency-rls alembic -h', 'agency-rls alembic upgrade -h'.
    Failures print one line; '--raiseerr' shows the traceback.

    Example: agency-rls alembic --database-url postgresql://dba@db/crm -x role_prefix=crm_ upgrade head
    """
    from alembic.config import CommandLine  # imported late: keeps --help fast

    command_line = CommandLine(prog="agency-rls alembic")
    options = command_line.parser.parse_args(arguments or [])  # Alembic's own usage errors, exit status 2
    if not hasattr(options, "cmd"):
        command_line.parser.error("too few arguments")
    if options.config or options.name != "alembic":
        command_line.parser.error("-c/--config and -n/--name do not apply: the configuration is built in")
    config = migrations_runner.alembic_config(database_url)
    config.cmd_opts = options  # -x, --raiseerr, ... reach env.py as from Alembic's own command line
    with alembic_progress_on_stderr():
        if options.raiseerr:
            command_line.run_cmd(config, options)
        else:
            options.raiseerr = True  # raise, so that the reason is one line as in every other command
            one_line_errors(command_line.run_cmd)(config, options)


@contextmanager
def alembic_progress_on_stderr() -> Iterator[None]:
    """Alembic's INFO lines ('Running upgrade 0001 -> 0002') on stderr, as its own alembic.ini sets up."""
    logger = logging.getLogger("alembic")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-5.5s [%(name)s] %(message)s"))
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def show_version(value: bool) -> None:
    """``--version``: print the installed version and exit."""
    if value:
        from agency_rls import __version__

        print(f"agency-rls {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass


def main() -> None:
    """Console-script entry point; a reader that went away (``| head``) ends it quietly."""
    try:
        app(prog_name="agency-rls")
        sys.stdout.flush()
    except BrokenPipeError:
        exit_quietly_on_broken_pipe()


if __name__ == "__main__":
    main()

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
from typing import Annotated, ParamSpec, TypeVar

import psycopg
import typer
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision as run_provision
from agency_rls.scenarios import builtin_scenarios
from rich.console import Console

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


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        help="PostgreSQL URL (default: DATABASE_URL, then the libpq environment PGHOST, PGUSER, ...).",
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
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
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
    role_prefix: Annotated[
        str | None,
        typer.Option(
            envvar="AGENCY_RLS_ROLE_PREFIX",
            help="Role name prefix for a new database (stored in it; later runs reuse the stored one).",
        ),
    ] = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL for review instead of running it.")
    ] = False,
) -> None:
    """Upgrade the database to REVISION (default: head).

    Example: agency-rls migrate --database-url postgresql://dba@db/crm --role-prefix crm_
    """
    migrations_runner.upgrade(database_url, revision, role_prefix=role_prefix, sql=sql)


@app.command()
@one_line_errors
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. 'base' to remove everything.")],
    database_url: DatabaseUrl = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL for review instead of running it.")
    ] = False,
) -> None:
    """Downgrade the database to REVISION; 'base' removes every object and role the project made.

    Example: agency-rls downgrade base
    """
    migrations_runner.downgrade(database_url, revision, sql=sql)


@app.command()
@one_line_errors
def current(database_url: DatabaseUrl = None) -> None:
    """Show the revision the database is at.

    Example: agency-rls current
    """
    migrations_runner.current(database_url)


@app.command()
@one_line_errors
def history() -> None:
    """List the migrations, newest first.

    Example: agency-rls history
    """
    migrations_runner.history(None)


@app.command()
@one_line_errors
def provision(
    database_url: DatabaseUrl = None,
    login: Annotated[
        bool, typer.Option("--login", help="Create principal roles with LOGIN (for direct-login tests).")
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
    with psycopg.connect(libpq_conninfo(database_url), autocommit=True) as conn:
        report = run_provision(conn, login=login, prune=prune)
    if login:
        fail(LOGIN_WARNING)
    for item in report.owned_objects:
        fail(f"agency-rls: warning: {item}")
    if output is OutputFormat.json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    console = Console()
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
        bool, typer.Option("--keep", help="Leave the throwaway cluster running and print a psql command.")
    ] = False,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.text,
) -> None:
    """Replay the incident: migrate, load a sample world, provision, and show what each principal reads.

    Example: agency-rls demo --keep
    """
    from agency_rls.checks.demo import run_demo  # imported late: keeps --help fast

    ok = run_demo(explicit_url(database_url), keep=keep, as_json=output is OutputFormat.json)
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

    Exit status: 0 all pass, 1 a mismatch (or error), 2 an invalid file.
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
    """Console-script entry point."""
    app(prog_name="agency-rls")


if __name__ == "__main__":
    main()

"""``agency-rls check``: load scenario files into real databases and compare, as every principal, the
rows the database shows with what the file expects and what the reference model computes.

Why three parties: the file is a reading of the spec made by hand for one case, the reference model
a reading of the whole spec made as code, the database the thing under test. Any two disagreeing
is worth a look; a file that agrees with the database but not with the model (or the other way
round) is a mistake in the file or in the model, and the diff names the rule that decided.

Public API (also used by the pytest plugin):

- ``load_scenario(path) -> Scenario``: parse and validate (``ScenarioError``: ``file:line: ...``);
- ``install_scenario(conn, scenario, *, prefix) -> LoadedScenario``: load the world by plain SQL
  into a migrated database as superuser, and provision its principals;
- ``compare(conn, loaded) -> list[Mismatch]``: act as every principal (``SET LOCAL ROLE`` on
  ``conn``, the backend login or a superuser) and diff every table, then run the writes; every read
  and write happens in a transaction (or savepoint) that is rolled back.

The command gives each file a database of its own (``agency_rls_check_<hex>``) with a role prefix of
its own (``c<hex>_``) on a throwaway cluster (reads through the backend login role) or on the server
of ``--database-url`` (reads through the superuser with ``SET LOCAL ROLE``), and afterwards
downgrades to base and drops the database, so that no role is left (unless ``--keep``).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agency_rls.cli_support.terminal import progress_bar
from agency_rls.cluster.database import (
    conninfo_url,
    create_empty_database,
    drop_database_and_prefix_roles,
    libpq_conninfo,
)
from agency_rls.migrations import runner as migrations_runner
from agency_rls.reference_model.database import load_world, world_from_connection
from agency_rls.reference_model.differential import TRUNCATE
from agency_rls.reference_model.explain import ExplainedView, explain_view
from agency_rls.reference_model.scenario_file import Scenario, ScenarioError, Write, load_scenario_file
from agency_rls.reference_model.world import TABLES, World
from agency_rls.rls_policies.names import (
    MAX_IDENTIFIER_BYTES,
    ManagementRoles,
    RoleNameError,
    check_role_name,
)
from agency_rls.rls_policies.privileges import require_superuser_to_act_as_principals
from agency_rls.rls_policies.provision import provision, stored_prefix

__all__ = [
    "Case",
    "FileResult",
    "LoadedScenario",
    "Mismatch",
    "RowMismatch",
    "Scenario",
    "ScenarioError",
    "WriteMismatch",
    "compare",
    "install_scenario",
    "load_scenario",
    "run_cases",
    "run_check",
]

_VISIBLE_SQL = sql.SQL("SELECT now(), {}").format(
    sql.SQL(", ").join(
        sql.SQL("ARRAY(SELECT {} FROM {})").format(
            sql.Identifier("role_name" if t == "principal" else "id"), sql.Identifier("public", t)
        )
        for t in TABLES
    )
)

# ------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------


#: The longest role prefix the command uses (``c<8 hex>_``), for checking role names before loading.
CHECK_PREFIX_LENGTH = 10


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file; ``ScenarioError`` (``file:line: ...``) if it is not valid.

    Beyond the file's own rules, a principal's role name must be one ``provision`` would create
    behind a prefix of the command's length (``agency_rls.rls_policies.names``, which the reference model does
    not import): otherwise loading would fail later with a less precise message.
    """
    scenario = load_scenario_file(path)
    problems = []
    for row in sorted(scenario.spec.rows["principal"], key=lambda r: r.line):
        name = str(row.key)
        try:
            check_role_name(name)
            size = len(name.encode("utf-8")) + CHECK_PREFIX_LENGTH
            if size > MAX_IDENTIFIER_BYTES:
                raise RoleNameError(
                    f"role name {name!r} is {size} bytes behind the role prefix (c<hex>_);"
                    f" PostgreSQL would truncate it to {MAX_IDENTIFIER_BYTES}"
                )
        except RoleNameError as error:
            problems.append(f"{scenario.path}:{row.line}: principal: {error}")
    if problems:
        raise ScenarioError(problems)
    return scenario


@dataclass(frozen=True)
class LoadedScenario:
    """A scenario as loaded into one database: its world at load time and the names of its rows."""

    scenario: Scenario
    prefix: str
    #: the world as loaded (role names without prefix), times placed around ``loaded_at``
    world: World
    loaded_at: dt.datetime

    @property
    def principals(self) -> tuple[str, ...]:
        """Every principal's role name without prefix (declared and default)."""
        return self.scenario.principals

    def role(self, principal: str) -> str:
        """The database role of ``principal`` (``agency_w11`` -> ``<prefix>agency_w11``)."""
        return self.prefix + principal

    def id(self, table: str, reference: str) -> int | str:
        """The id of the row a key or label names (``id('contract', 'NL/NL-1001')``)."""
        return self.scenario.id(table, reference)

    def name(self, table: str, key: int | str) -> str:
        """The readable name of a row id (label, natural key or ``#id``)."""
        return self.scenario.name(table, key)


def install_scenario(
    conn: psycopg.Connection[Any], scenario: Scenario, *, prefix: str, replace: bool = False
) -> LoadedScenario:
    """Load ``scenario``'s world into the migrated database of ``conn`` (a superuser) and provision.

    Relative times are placed around the server's ``now()`` (its clock, not this machine's; the
    transaction's time, so ``valid_from: now`` is valid and ``valid_to: now`` ended even for reads in
    the same transaction). The database must hold no rows of the spec's tables, unless ``replace``,
    which truncates them first and drops every principal role of the old world. Commits nothing itself
    when ``conn`` is not in autocommit mode.
    """
    found = stored_prefix(conn)
    if found != prefix:
        raise ValueError(f"the database was migrated with role prefix {found!r}, not {prefix!r}")
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now: dt.datetime = row[0]
    world = scenario.world(now)
    with conn.transaction():
        if replace:
            conn.execute(TRUNCATE)
            # Principal rows may only name roles that do not exist (a row naming a live role would
            # remap it): drop every principal role of the old world before loading the new one.
            provision(conn, prune=True)
        elif _holds_rows(conn):
            raise RuntimeError("the database already holds rows of the spec's tables (use replace=True)")
        load_world(conn, world, prefix=prefix)
    provision(conn, prune=replace)
    stored = world_from_connection(conn)
    if stored != world.with_role_prefix(prefix).sorted():
        raise RuntimeError(f"{scenario.path}: the database does not hold the world that was loaded")
    return LoadedScenario(scenario, prefix, world, now)


def _holds_rows(conn: psycopg.Connection[Any]) -> bool:
    query = sql.SQL(" OR ").join(
        sql.SQL("EXISTS (SELECT FROM {})").format(sql.Identifier("public", t)) for t in TABLES
    )
    row = conn.execute(sql.SQL("SELECT ") + query).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Mismatch:
    """A disagreement found by ``compare``; ``str()`` is the diff line."""

    file: str
    principal: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "kind": "read" if isinstance(self, RowMismatch) else "write",
            **self.__dict__,
            "message": str(self),
        }


@dataclass(frozen=True)
class RowMismatch(Mismatch):
    """One row of one table on which database, file and reference model do not all agree."""

    table: str
    key: str  # the row's readable name
    database: bool  # visible in the database
    expected: bool | None  # what the file says (None: nothing)
    listed_in: str | None  # sees, must_see or must_not_see
    model: bool  # visible in the reference model
    rule: str  # the model's deciding rule and clauses
    clauses: dict[str, dict[str, bool]] = field(default_factory=dict)

    def __str__(self) -> str:
        subject = f"{self.principal} {'sees' if self.database else 'does not see'} {self.table} {self.key}"
        if self.expected is None:
            verdict = "the file expects nothing"
        elif self.expected == self.database:
            verdict = f"as expected ({self.listed_in})"
        elif self.database:
            verdict = "not expected" if self.listed_in == "sees" else f"not expected ({self.listed_in})"
        else:
            verdict = f"expected ({self.listed_in})"
        model = "visible" if self.model else "hidden"
        return f"{self.file}: {subject}: {verdict}; rule: {self.rule} (reference model: {model})"


@dataclass(frozen=True)
class WriteMismatch(Mismatch):
    """A write that succeeded where it had to fail, failed where it had to succeed, or touched other rows."""

    write: str  # its name
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.file}: write {self.write!r} as {self.principal}: expected {self.expected}, got {self.actual}"


@dataclass(frozen=True)
class Case:
    """One comparison: a principal x table, or a write; passed when it has no mismatch."""

    name: str
    mismatches: tuple[Mismatch, ...]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No mismatch."""
        return not self.mismatches


def compare(
    conn: psycopg.Connection[Any], loaded: LoadedScenario, *, principals: Iterable[str] | None = None
) -> list[Mismatch]:
    """Every mismatch of every principal (default: all) x table, then of every write."""
    return [m for case in run_cases(conn, loaded, principals=principals) for m in case.mismatches]


def run_cases(
    conn: psycopg.Connection[Any], loaded: LoadedScenario, *, principals: Iterable[str] | None = None
) -> list[Case]:
    """``compare``, kept per case (principal x table, then each write) for reports such as JUnit."""
    cases = []
    for principal in loaded.principals if principals is None else principals:
        started = time.perf_counter()
        now, actual = _database_view(conn, loaded, principal)
        view = explain_view(loaded.world, principal, now)
        share = (time.perf_counter() - started) / len(TABLES)
        for table in TABLES:
            found = _row_mismatches(loaded, principal, table, actual[table], view)
            cases.append(Case(f"{principal} / {table}", tuple(found), share))
    for write in loaded.scenario.writes:
        started = time.perf_counter()
        refused = _write_mismatch(conn, loaded, write)
        cases.append(Case(f"write: {write.name}", tuple(refused), time.perf_counter() - started))
    return cases


@contextmanager
def _acting_as(conn: psycopg.Connection[Any], role: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor acting as ``role`` in a transaction (or savepoint) that is always rolled back."""
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        yield cur


def _database_view(
    conn: psycopg.Connection[Any], loaded: LoadedScenario, principal: str
) -> tuple[dt.datetime, dict[str, frozenset[int | str]]]:
    """``now()`` and the keys of every table as the principal reads them (role names without prefix)."""
    with _acting_as(conn, loaded.role(principal)) as cur:
        row = cur.execute(_VISIBLE_SQL).fetchone()
    assert row is not None
    view = {t: frozenset(keys) for t, keys in zip(TABLES, row[1:], strict=True)}
    view["principal"] = frozenset(str(r).removeprefix(loaded.prefix) for r in view["principal"])
    return row[0], view


def _row_mismatches(
    loaded: LoadedScenario, principal: str, table: str, actual: frozenset[int | str], view: ExplainedView
) -> list[RowMismatch]:
    expectation = loaded.scenario.expectation(principal, table)
    model = view.visible[table]
    mentioned = expectation.mentioned if expectation is not None else frozenset()
    found = []
    for key in sorted(actual | model | mentioned, key=lambda k: (str(type(k)), k)):
        database, modelled = key in actual, key in model
        said = expectation.expects(key) if expectation is not None else None
        if database == modelled and (said is None or said[0] == database):
            continue
        found.append(
            RowMismatch(
                file=loaded.scenario.path,
                principal=principal,
                table=table,
                key=loaded.name(table, key),
                database=database,
                expected=None if said is None else said[0],
                listed_in=None if said is None else said[1],
                model=modelled,
                rule=view.why(table, key),
                clauses=view.clauses(table, key),
            )
        )
    return found


def _write_mismatch(
    conn: psycopg.Connection[Any], loaded: LoadedScenario, write: Write
) -> list[WriteMismatch]:
    """Run the write as its principal (rolled back) and compare the outcome with the file's."""
    try:
        with _acting_as(conn, loaded.role(write.principal)) as cur:
            cur.execute(write.sql.encode())  # the file's statement as written (bytes: no placeholders)
            rows = cur.rowcount
    except psycopg.Error as error:
        state = error.sqlstate or "?"
        actual = f"error {state}: {error.diag.message_primary or str(error).splitlines()[0]}"
        passed = not write.expect_ok and write.sqlstate in (None, state)
    else:
        actual = f"ok ({_rows(rows)})"
        passed = write.expect_ok and write.rows in (None, rows)
    if passed:
        return []
    if write.expect_ok:
        expected = "ok" if write.rows is None else f"ok ({_rows(write.rows)})"
    else:
        expected = "error" if write.sqlstate is None else f"error {write.sqlstate}"
    return [WriteMismatch(loaded.scenario.path, write.principal, write.name, expected, actual)]


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


@dataclass
class FileResult:
    """What happened to one file."""

    file: str
    status: str = "pass"  # pass | fail | invalid | error
    errors: list[str] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    principals: int = 0
    writes: int = 0
    database: str | None = None
    prefix: str | None = None
    kept: bool = False
    seconds: float = 0.0

    @property
    def mismatches(self) -> list[Mismatch]:
        """Every mismatch of every case."""
        return [m for case in self.cases for m in case.mismatches]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``--format json`` prints a list of these)."""
        return {
            "file": self.file,
            "status": self.status,
            "ok": self.status == "pass",
            "errors": self.errors,
            "principals": self.principals,
            "tables": len(TABLES),
            "writes": self.writes,
            "cases": len(self.cases),
            "failed_cases": sum(not c.ok for c in self.cases),
            "mismatches": [m.as_dict() for m in self.mismatches],
            "database": self.database,
            "prefix": self.prefix,
            "kept": self.kept,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Server:
    """Where the databases are created, and how principals are reached."""

    conninfo: str  # superuser, maintenance database
    via_backend: bool  # read through the backend login role (needs no password: throwaway cluster)


def run_check(
    files: Sequence[str],
    url: str | None,
    *,
    keep: bool = False,
    as_json: bool = False,
    junit: str | None = None,
) -> int:
    """Check every file; print a report; return the exit status (see ``exit_status``).

    Invalid files are reported and skipped; the valid ones still run. When the server cannot be
    reached or started, every valid file is an error ("cannot run") and the reason one line on
    stderr. On a terminal (and not ``as_json``) a progress bar over the files shows on stderr.
    """
    results: list[FileResult] = []
    scenarios: list[tuple[FileResult, Scenario]] = []
    for path in files:
        try:
            scenarios.append((FileResult(path), load_scenario(path)))
        except ScenarioError as error:
            results.append(FileResult(path, status="invalid", errors=error.messages))
            for message in error.messages:
                sys.stderr.write(message + "\n")
    if scenarios:
        with ExitStack() as stack:
            try:
                server = _server(stack, url, keep=keep)
            except Exception as error:  # an outage, not a finding: exit status 3
                reason = " ".join(str(error).split()) or type(error).__name__
                sys.stderr.write(f"agency-rls: {reason}\n")
                for result, _ in scenarios:
                    result.status = "error"
                    result.errors.append(f"cannot run: {reason}")
                    results.append(result)
                scenarios = []
            with progress_bar("checking scenario files", len(scenarios), enabled=not as_json) as advance:
                for done, (result, scenario) in enumerate(scenarios, start=1):
                    _check_file(server, scenario, result, keep=keep)
                    results.append(result)
                    if not as_json:
                        _print_file(result)
                    advance(done)
    results.sort(key=lambda r: list(files).index(r.file))
    if junit is not None:
        Path(junit).write_text(junit_xml(results), encoding="utf-8")
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        _print_summary(results)
    return exit_status(results)


#: ``agency-rls check``'s exit statuses: CI tells a security finding from a broken file and an outage.
EXIT_MISMATCH, EXIT_INVALID_FILE, EXIT_CANNOT_RUN = 1, 2, 3


def exit_status(results: Sequence[FileResult]) -> int:
    """0 all pass; 1 a mismatch (wins: it is the finding); else 2 an invalid file; else 3 a file that could
    not run (server start, connection, an error while loading)."""
    statuses = {r.status for r in results}
    if "fail" in statuses:
        return EXIT_MISMATCH
    if "invalid" in statuses:
        return EXIT_INVALID_FILE
    if "error" in statuses:
        return EXIT_CANNOT_RUN
    return 0


def _server(stack: ExitStack, url: str | None, *, keep: bool) -> _Server:
    if url is not None:
        with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
            require_superuser_to_act_as_principals(conn, "check --database-url")
        return _Server(libpq_conninfo(url), via_backend=False)
    from agency_rls.cluster.throwaway import ThrowawayCluster

    cluster = ThrowawayCluster(keep=keep).start()
    stack.callback(cluster.stop)
    if keep:
        sys.stderr.write(f"agency-rls check: the throwaway cluster keeps running: {cluster.psql_command()}\n")
    return _Server(cluster.conninfo(), via_backend=True)


def _check_file(server: _Server, scenario: Scenario, result: FileResult, *, keep: bool) -> None:
    """A new database with a new prefix: migrate, install, compare; then remove it (unless ``keep``)."""
    started = time.perf_counter()
    token = secrets.token_hex(4)
    result.database, result.prefix = f"agency_rls_check_{token}", f"c{token}_"
    database = make_conninfo(server.conninfo, dbname=result.database)
    create_empty_database(server.conninfo, result.database)
    try:
        migrations_runner.upgrade(conninfo_url(database), "head", role_prefix=result.prefix)
        with psycopg.connect(database, autocommit=True) as admin:
            loaded = install_scenario(admin, scenario, prefix=result.prefix)
            if server.via_backend:
                backend = ManagementRoles(result.prefix).backend
                with psycopg.connect(make_conninfo(database, user=backend), autocommit=True) as conn:
                    result.cases = run_cases(conn, loaded)
            else:
                result.cases = run_cases(admin, loaded)
        result.principals, result.writes = len(loaded.principals), len(scenario.writes)
        result.status = "pass" if not result.mismatches else "fail"
    except Exception as error:  # one file's failure must not hide the others' results
        result.status = "error"
        result.errors.append(f"{scenario.path}: {' '.join(str(error).split()) or type(error).__name__}")
    finally:
        if keep:
            result.kept = True
            sys.stderr.write(
                f"agency-rls check: kept database {result.database} (role prefix {result.prefix})"
                f" for {scenario.path}\n"
            )
        else:
            _remove(server.conninfo, database, result.prefix)
        result.seconds = time.perf_counter() - started


def _remove(server: str, database: str, prefix: str) -> None:
    """Downgrade to base (drops the prefix's roles), drop the database, drop any role of the prefix left."""
    try:
        migrations_runner.downgrade(conninfo_url(database), "base")
    except Exception as error:  # the sweep below still removes everything
        sys.stderr.write(f"agency-rls check: downgrade failed ({' '.join(str(error).split())}); dropping\n")
    drop_database_and_prefix_roles(server, str(conninfo_to_dict(database)["dbname"]), prefix)


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------


def _print_file(result: FileResult) -> None:
    for mismatch in result.mismatches:
        print(mismatch)
    for error in result.errors:
        print(f"ERROR {error}")
    if result.status == "pass":
        print(
            f"PASS {result.file}: {result.principals} principals x {len(TABLES)} tables,"
            f" {result.writes} writes ({result.seconds:.1f} s)"
        )
    elif result.status == "fail":
        print(f"FAIL {result.file}: {len(result.mismatches)} mismatches")


def _print_summary(results: list[FileResult]) -> None:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "invalid", "error")}
    parts = [
        f"{n} {'passed' if s == 'pass' else s if s != 'fail' else 'failed'}" for s, n in counts.items() if n
    ]
    print(f"{len(results)} scenario files: " + ", ".join(parts))


def junit_xml(results: list[FileResult]) -> str:
    """JUnit XML: a testsuite per file, a testcase per principal x table and per write."""
    suites = ET.Element("testsuites", name="agency-rls check")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for result in results:
        suite = ET.SubElement(suites, "testsuite", name=result.file)
        classname = Path(result.file).with_suffix("").as_posix().replace("/", ".").lstrip(".")
        cases = result.cases
        if result.status in ("invalid", "error"):
            load = ET.SubElement(suite, "testcase", classname=classname, name="load", time="0")
            kind = "invalid scenario file" if result.status == "invalid" else "error"
            error = ET.SubElement(
                load, "error", message=result.errors[0] if result.errors else kind, type=kind
            )
            error.text = "\n".join(result.errors)
        for case in cases:
            element = ET.SubElement(
                suite, "testcase", classname=classname, name=case.name, time=f"{case.seconds:.3f}"
            )
            if case.mismatches:
                failure = ET.SubElement(element, "failure", message=str(case.mismatches[0]), type="mismatch")
                failure.text = "\n".join(str(m) for m in case.mismatches)
        counts = {
            "tests": len(cases) + (result.status in ("invalid", "error")),
            "failures": sum(not c.ok for c in cases),
            "errors": int(result.status in ("invalid", "error")),
        }
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{result.seconds:.3f}")
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

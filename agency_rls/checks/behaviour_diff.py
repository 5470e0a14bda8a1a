"""``agency-rls diff REV_A REV_B``: what a revision changes in who reads which row, measured.

A security definition can be rewritten for speed (revisions 0006 and 0007) or by mistake; reading the
SQL tells a reviewer what changed, not whom it exposes. This command answers the second question the
only trustworthy way: it builds each revision in a scratch database of its own (walking the recorded
revisions up to it, as an upgraded installation got there), loads the same worlds into both
(scenario files, or a world generated from ``--seed``), provisions their principals, and reads every
table as every principal (``SET LOCAL ROLE`` in one read-only snapshot per world, as ``agency-rls
matrix`` does). Rows a principal reads at REV_B and not at REV_A are *gained*, the reverse *lost*.

Each change is explained by the reference model (``agency_rls.reference_model.explain``): the rule
and clauses that decide the row, and whether the spec shows or hides it. A gained row the spec hides
is a leak; a gained row the spec shows is a fix, still a widening a reviewer must accept.

The gate: exit status 1 when any principal gains a row, unless a revision after REV_A up to REV_B
declares the widening of that table. The declaration is a module-level dict in the revision file::

    widens_access = {"reason": "insurers read the handler rows of their contracts", "tables": ["contract_handler"]}

(``reason`` a non-empty string, ``tables`` the spec's table names the widening may touch). A gain
in a table no such revision names still fails. Declared gains are still reported.

Exit statuses: 0 no undeclared gain; 1 an undeclared gain; 2 bad input (an unknown revision, an
invalid scenario file, a malformed declaration); 3 cannot run (server, migration, loading).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agency_rls.checks.matrix import MatrixError, _require_principal_reader, _set_role
from agency_rls.cluster.database import (
    conninfo_url,
    create_empty_database,
    drop_database_and_prefix_roles,
    libpq_conninfo,
)
from agency_rls.reference_model.database import load_world, world_from_connection
from agency_rls.reference_model.explain import explain_view
from agency_rls.reference_model.world import TABLES, World

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CANNOT_RUN",
    "EXIT_GAINS",
    "Change",
    "DiffError",
    "DiffReport",
    "Widening",
    "WorldSource",
    "diff_revisions",
    "generated_world",
    "render_text",
    "revision_range",
    "scenario_worlds",
]

EXIT_GAINS, EXIT_BAD_INPUT, EXIT_CANNOT_RUN = 1, 2, 3

#: The module-level name a revision declares a widening of access with.
MARKER = "widens_access"


class DiffError(RuntimeError):
    """Bad input (exit status 2); the message is the one-line reason."""


class CannotRun(RuntimeError):
    """The diff could not be taken: server, migration or loading failed (exit status 3)."""


# ------------------------------------------------------------------------------------------------
# Revisions and their declarations
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Widening:
    """A revision's declaration that it widens access to ``tables``, and why."""

    revision: str
    reason: str
    tables: frozenset[str]

    def as_dict(self) -> dict[str, object]:
        return {"revision": self.revision, "reason": self.reason, "tables": sorted(self.tables)}


def _script(versions_dir: Path | None) -> Any:
    from alembic.script import ScriptDirectory

    from agency_rls.migrations.runner import alembic_config

    return ScriptDirectory.from_config(alembic_config(None, versions_dir=versions_dir))


def _resolve(script: Any, name: str) -> Any:
    try:
        found = script.get_revision(name)
    except Exception as error:  # alembic raises several kinds for unknown/ambiguous names
        raise DiffError(f"unknown revision {name!r}: {' '.join(str(error).split())}") from None
    if found is None:
        raise DiffError(f"unknown revision {name!r} (base has no security definition to compare)")
    return found


def revision_range(
    rev_a: str, rev_b: str, *, versions_dir: Path | None = None
) -> tuple[str, str, list[Widening]]:
    """REV_A and REV_B as revision ids, and the widenings declared after REV_A up to REV_B.

    When REV_A is not an ancestor of REV_B only REV_B's own declaration counts.
    """
    script = _script(versions_dir)
    a, b = _resolve(script, rev_a), _resolve(script, rev_b)
    walked = []
    current = b
    while current is not None and current.revision != a.revision:
        walked.append(current)
        down = current.down_revision
        down = down if isinstance(down, str) or down is None else down[0]
        current = script.get_revision(down) if down is not None else None
    if current is None:  # REV_A is not below REV_B
        walked = [b]
    widenings = [w for w in (_widening(r) for r in walked) if w is not None]
    return a.revision, b.revision, widenings


def _widening(revision: Any) -> Widening | None:
    """The revision module's ``widens_access`` declaration, validated."""
    declared = getattr(revision.module, MARKER, None)
    if declared is None:
        return None
    where = f"revision {revision.revision} ({Path(revision.path).name}): {MARKER}"
    if not isinstance(declared, dict) or set(declared) != {"reason", "tables"}:
        raise DiffError(f'{where} must be a dict with exactly the keys "reason" and "tables"')
    reason, tables = declared["reason"], declared["tables"]
    if not isinstance(reason, str) or not reason.strip():
        raise DiffError(f"{where}: reason must be a non-empty string saying why the widening is right")
    if not isinstance(tables, list | tuple) or not tables or not all(isinstance(t, str) for t in tables):
        raise DiffError(f"{where}: tables must be a non-empty list of table names")
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise DiffError(f"{where}: unknown tables {unknown} (the spec's tables: {', '.join(TABLES)})")
    return Widening(revision.revision, " ".join(reason.split()), frozenset(tables))


# ------------------------------------------------------------------------------------------------
# Worlds
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSource:
    """A world to load into every revision's database: its name, its rows placed around a ``now``,
    and readable names for its rows (labels and natural keys of a scenario file; ``#id`` otherwise)."""

    name: str
    build: Callable[[dt.datetime], World]
    row_name: Callable[[str, int | str], str] = lambda table, key: f"#{key}"


def scenario_worlds(paths: Sequence[str | Path]) -> list[WorldSource]:
    """One world per scenario file (validated as ``agency-rls check`` does: ``DiffError`` if invalid)."""
    from agency_rls.checks.check import ScenarioError, load_scenario

    out = []
    for path in paths:
        try:
            scenario = load_scenario(path)
        except ScenarioError as error:
            raise DiffError("; ".join(error.messages)) from None
        except OSError as error:
            raise DiffError(f"{path}: {error.strerror or error}") from None
        out.append(WorldSource(Path(path).name, scenario.world, scenario.name))
    return out


#: How many worlds Hypothesis draws for ``--seed``; the one with the most rows is used.
SEED_DRAWS = 25


def generated_world(seed: int) -> WorldSource:
    """A small random world from the reference model's Hypothesis strategy, the same for the same seed
    (and Hypothesis version): the richest of the first ``SEED_DRAWS`` worlds drawn with ``seed``.

    Needs Hypothesis (the test extra: ``pip install 'agency-rls[test]'``).
    """
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed

        from agency_rls.reference_model.scenario import world_from_scenario, world_to_scenario
        from agency_rls.reference_model.strategies import ANCHOR, worlds
    except ImportError:
        raise DiffError("--seed needs Hypothesis: pip install 'agency-rls[test]'") from None

    drawn: list[World] = []

    @settings(
        max_examples=SEED_DRAWS,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(worlds())
    def draw(world: World) -> None:
        drawn.append(world)

    draw()
    richest = max(drawn, key=lambda w: sum(len(w.rows(t)) for t in TABLES))
    data = world_to_scenario(richest, ANCHOR)
    return WorldSource(f"generated world (seed {seed})", lambda now: world_from_scenario(data, now))


# ------------------------------------------------------------------------------------------------
# Taking the diff
# ------------------------------------------------------------------------------------------------

#: Keys of every table, one array per table; role names for ``principal``.
_VISIBLE_SQL = sql.SQL("SELECT {}").format(
    sql.SQL(", ").join(
        sql.SQL("ARRAY(SELECT {} FROM {})").format(
            sql.Identifier("role_name" if t == "principal" else "id"), sql.Identifier("public", t)
        )
        for t in TABLES
    )
)

View = dict[str, frozenset[int | str]]


@dataclass(frozen=True)
class Change:
    """Rows of one table that one principal gains (or loses) at REV_B, decided by one rule."""

    world: str
    principal: str
    table: str
    gained: bool
    insurer: str | None  # the rows' insurer (contract, notice, handler, entrustment rows)
    rows: tuple[str, ...]  # readable names
    rule: str  # the reference model's deciding rule and clauses
    spec_shows: bool  # whether the reference model shows these rows
    declared_by: str | None = None  # the revision whose widens_access covers this gain

    def sentence(self, rev_b: str) -> str:
        """'at 0008 agency_w11 gains 1 contract row of insurer GW1 (GW1/GW1-2001): agency.contract/...'."""
        count = len(self.rows)
        what = f"{count} {self.table} row{'s' if count != 1 else ''}"
        if self.insurer is not None:
            what += f" of insurer {self.insurer}"
        verb = "gains" if self.gained else "loses"
        spec = "the spec shows " if self.spec_shows else "the spec hides "
        spec += "it" if count == 1 else "them"
        return (
            f"at {rev_b} {self.principal} {verb} {what} ({', '.join(self.rows)}) in {self.world}:"
            f" {self.rule} ({spec})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "world": self.world,
            "principal": self.principal,
            "table": self.table,
            "change": "gains" if self.gained else "loses",
            "insurer": self.insurer,
            "count": len(self.rows),
            "rows": list(self.rows),
            "rule": self.rule,
            "spec": "shows" if self.spec_shows else "hides",
            "declared_by": self.declared_by,
        }


@dataclass
class DiffReport:
    """The behavioural diff of REV_A -> REV_B over some worlds."""

    rev_a: str
    rev_b: str
    worlds: list[str]
    principals: int = 0  # principals compared, summed over the worlds
    changes: list[Change] = field(default_factory=list)
    widenings: list[Widening] = field(default_factory=list)

    @property
    def undeclared_gains(self) -> list[Change]:
        return [c for c in self.changes if c.gained and c.declared_by is None]

    @property
    def exit_status(self) -> int:
        return EXIT_GAINS if self.undeclared_gains else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.rev_a,
            "to": self.rev_b,
            "worlds": self.worlds,
            "principals": self.principals,
            "status": "fail" if self.undeclared_gains else "pass",
            "changes": [c.as_dict() for c in self.changes],
            "widens_access": [w.as_dict() for w in self.widenings],
            "undeclared_gains": len(self.undeclared_gains),
        }


@dataclass(frozen=True)
class _Stored:
    """A world as a revision's database stores it (prefixed role names) and when its views were read."""

    world: World
    now: dt.datetime


@dataclass
class _RevisionDatabase:
    """A scratch database migrated to one revision, with a role prefix of its own."""

    revision: str
    conninfo: str
    prefix: str


def diff_revisions(
    rev_a: str,
    rev_b: str,
    worlds: Sequence[WorldSource],
    *,
    scratch_url: str | None = None,
    versions_dir: Path | None = None,
    keep: bool = False,
) -> DiffReport:
    """Build REV_A and REV_B, load each world into both, and report what every principal gains and loses.

    ``scratch_url``: a superuser URL of a server to create the scratch databases on (removed
    afterwards unless ``keep``); without it a throwaway cluster is started and stopped.
    """
    a, b, widenings = revision_range(rev_a, rev_b, versions_dir=versions_dir)
    if not worlds:
        raise DiffError("no world to compare on: give scenario files or --seed")
    report = DiffReport(a, b, [w.name for w in worlds], widenings=widenings)
    with ExitStack() as stack:
        server = _server(stack, scratch_url, keep=keep)
        token = secrets.token_hex(3)
        for number, source in enumerate(worlds):
            views: list[dict[str, View]] = []
            for side, revision in (("a", a), ("b", b)):
                prefix = f"d{token}{number}{side}_"
                with _revision_database(server, revision, prefix, versions_dir, keep) as database:
                    found, stored = _views(database, source, versions_dir)
                views.append(found)
            report.principals += len(views[0].keys() | views[1].keys())
            report.changes += _changes(source, views[0], views[1], stored, prefix, widenings)
    return report


def _server(stack: ExitStack, url: str | None, *, keep: bool) -> str:
    """Superuser conninfo of the server to build on: ``url``'s, or a throwaway cluster's."""
    if url is not None:
        conninfo = libpq_conninfo(url)
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                _require_principal_reader(conn)
        except MatrixError:
            raise DiffError(
                "diff needs a superuser --scratch-url: it walks the recorded revisions (0002 and 0004"
                " create or alter a BYPASSRLS role) and reads as every principal"
            ) from None
        except psycopg.Error as error:
            raise CannotRun(f"cannot connect to --scratch-url: {' '.join(str(error).split())}") from None
        return conninfo
    from agency_rls.cluster.throwaway import ThrowawayCluster

    try:
        cluster = ThrowawayCluster(keep=keep).start()
    except Exception as error:
        raise CannotRun(f"cannot start a throwaway cluster: {' '.join(str(error).split())}") from None
    stack.callback(cluster.stop)
    if keep:
        sys.stderr.write(f"agency-rls diff: the throwaway cluster keeps running: {cluster.psql_command()}\n")
    return cluster.conninfo()


@contextmanager
def _revision_database(
    server: str, revision: str, prefix: str, versions_dir: Path | None, keep: bool
) -> Iterator[_RevisionDatabase]:
    """A new database walked up to ``revision`` (not installed from the current definition: the
    revision as an upgraded installation has it); dropped with its roles afterwards unless ``keep``."""
    from agency_rls.migrations import runner

    name = f"agency_rls_diff_{prefix.rstrip('_')}"
    conninfo = make_conninfo(server, dbname=name)
    create_empty_database(server, name)
    try:
        try:
            runner.upgrade(conninfo_url(conninfo), revision, role_prefix=prefix, versions_dir=versions_dir)
        except (Exception, SystemExit) as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise CannotRun(f"building revision {revision} failed: {reason}") from None
        yield _RevisionDatabase(revision, conninfo, prefix)
    finally:
        if keep:
            sys.stderr.write(
                f"agency-rls diff: kept database {name} (revision {revision}, prefix {prefix})\n"
            )
        else:
            drop_database_and_prefix_roles(server, name, prefix)


def _views(
    database: _RevisionDatabase, source: WorldSource, versions_dir: Path | None
) -> tuple[dict[str, View], _Stored]:
    """Load ``source`` into the new database, provision, and read every table as every principal.

    Returns the views by role name without prefix, and the world as stored (prefixed role names) with
    the moment the views were read at, for the reference model's explanations.
    """
    try:
        with psycopg.connect(database.conninfo, autocommit=True) as conn:
            now_row = conn.execute("SELECT now()").fetchone()
            assert now_row is not None
            with conn.transaction():
                load_world(conn, source.build(now_row[0]), prefix=database.prefix)
            _provision(conn, database, versions_dir)
            stored = world_from_connection(conn)
            views, now = _read_as_every_principal(conn, database.prefix)
    except CannotRun:
        raise
    except (Exception, SystemExit) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CannotRun(f"loading {source.name} at revision {database.revision} failed: {reason}") from None
    return views, _Stored(stored, now)


def _provision(conn: psycopg.Connection[Any], database: _RevisionDatabase, versions_dir: Path | None) -> None:
    """Provision the loaded world's principals at the database's revision.

    Today's ``provision`` refuses some old revisions (0006: it cannot refresh that revision's copied
    handler links): there the world is provisioned one revision below and the database walked back
    up, as an installation that held these rows and roles before upgrading got there. When that
    fails too, the first refusal is the reason.
    """
    from agency_rls.migrations import runner
    from agency_rls.rls_policies.provision import ProvisionError, provision

    try:
        provision(conn)
        return
    except ProvisionError as error:
        refusal = error
    below = _script(versions_dir).get_revision(database.revision).down_revision
    if not isinstance(below, str) or below == runner.TABLES_REVISION:
        raise refusal
    url = conninfo_url(database.conninfo)
    try:
        runner.downgrade(url, below, role_prefix=database.prefix, versions_dir=versions_dir)
        provision(conn)
        runner.upgrade(url, database.revision, role_prefix=database.prefix, versions_dir=versions_dir)
    except (Exception, SystemExit):
        raise refusal from None


def _read_as_every_principal(
    conn: psycopg.Connection[Any], prefix: str
) -> tuple[dict[str, View], dt.datetime]:
    """Every principal's keys of every table, in one read-only snapshot (the matrix's way: a savepoint
    per principal, ``SET LOCAL ROLE``, always rolled back)."""
    saved = (conn.isolation_level, conn.read_only)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    views: dict[str, View] = {}
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL row_security = on")
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            now: dt.datetime = row[0]
            roles = [r[0] for r in conn.execute("SELECT role_name FROM public.principal ORDER BY 1")]
            for role in roles:
                with conn.transaction(force_rollback=True):
                    _set_role(conn, role)
                    keys = conn.execute(_VISIBLE_SQL).fetchone()
                assert keys is not None
                view = {t: frozenset(k) for t, k in zip(TABLES, keys, strict=True)}
                view["principal"] = frozenset(str(r).removeprefix(prefix) for r in view["principal"])
                views[role.removeprefix(prefix)] = view
    finally:
        conn.isolation_level, conn.read_only = saved
    return views, now


def _changes(
    source: WorldSource,
    before: dict[str, View],
    after: dict[str, View],
    stored: _Stored,
    prefix: str,
    widenings: Sequence[Widening],
) -> list[Change]:
    """Gained and lost rows per principal and table, grouped by insurer and explaining rule."""
    world = stored.world
    insurer_of = _insurer_codes(world)
    out: list[Change] = []
    empty: View = {t: frozenset() for t in TABLES}
    for principal in sorted(before.keys() | after.keys()):
        old, new = before.get(principal, empty), after.get(principal, empty)
        if old == new:
            continue
        explained = explain_view(world, prefix + principal, stored.now)
        for table in TABLES:
            for gained, keys in ((True, new[table] - old[table]), (False, old[table] - new[table])):
                groups: dict[tuple[str | None, str, bool], list[int | str]] = {}
                for key in keys:
                    model_key = prefix + str(key) if table == "principal" else key
                    group = (
                        insurer_of.get((table, key)),
                        explained.why(table, model_key),
                        explained.shows(table, model_key),
                    )
                    groups.setdefault(group, []).append(key)
                declared = (
                    next((w.revision for w in widenings if table in w.tables), None) if gained else None
                )
                for (insurer, rule, shows), members in sorted(
                    groups.items(), key=lambda g: (str(g[0][0]), g[0][1])
                ):
                    names = tuple(sorted(source.row_name(table, k) for k in members))
                    out.append(
                        Change(source.name, principal, table, gained, insurer, names, rule, shows, declared)
                    )
    return out


def _insurer_codes(world: World) -> dict[tuple[str, int | str], str]:
    """The insurer code of every row that belongs to one insurer."""
    code = {i.id: i.code for i in world.insurer}
    contract_insurer = {c.id: c.insurer_id for c in world.contract}
    out: dict[tuple[str, int | str], str] = {}
    out.update({("contract", c.id): code[c.insurer_id] for c in world.contract})
    out.update({("notice", n.id): code[n.insurer_id] for n in world.notice})
    out.update({("entrustment", e.id): code[e.insurer_id] for e in world.entrustment})
    out.update(
        {("contract_handler", h.id): code[contract_insurer[h.contract_id]] for h in world.contract_handler}
    )
    return out


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------


def render_text(report: DiffReport) -> str:
    """The report a reviewer reads: one sentence per change, then the verdict."""
    lines = [
        f"Behavioural diff {report.rev_a} -> {report.rev_b}: {report.principals} principals in"
        f" {len(report.worlds)} world{'s' if len(report.worlds) != 1 else ''} ({', '.join(report.worlds)})"
    ]
    for widening in report.widenings:
        lines.append(
            f"revision {widening.revision} declares widens_access to {', '.join(sorted(widening.tables))}:"
            f" {widening.reason}"
        )
    if not report.changes:
        lines.append("No principal gains or loses a row.")
    for change in report.changes:
        mark = "+" if change.gained else "-"
        note = f" [declared by revision {change.declared_by}]" if change.declared_by else ""
        lines.append(f"  {mark} {change.sentence(report.rev_b)}{note}")
    undeclared = report.undeclared_gains
    if undeclared:
        who = sorted({f"{c.principal} ({c.table})" for c in undeclared})
        lines.append(
            f"FAIL: at {report.rev_b} {len(who)} principal/table pair(s) gain rows no revision declares"
            f" (widens_access): {', '.join(who)}"
        )
    else:
        gained = sum(1 for c in report.changes if c.gained)
        lines.append(
            "PASS: no principal gains a row."
            if not gained
            else "PASS: every gain is declared by a revision (widens_access)."
        )
    return "\n".join(lines)


def render_json(report: DiffReport) -> str:
    return json.dumps(report.as_dict(), indent=2)


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def run_diff(
    rev_a: str,
    rev_b: str,
    *,
    scenarios: Sequence[str | Path] = (),
    seed: int | None = None,
    scratch_url: str | None = None,
    versions_dir: Path | None = None,
    keep: bool = False,
    as_json: bool = False,
) -> int:
    """``agency-rls diff``: print the report (text or JSON) and return the exit status.

    Worlds: the scenario files, plus a generated world for ``seed``; with neither, the shipped
    scenario files (the incident and its edges).
    """
    try:
        if not scenarios and seed is None:
            from agency_rls.scenarios import builtin_scenarios

            scenarios = builtin_scenarios()
        worlds = scenario_worlds(scenarios)
        if seed is not None:
            worlds.append(generated_world(seed))
        report = diff_revisions(
            rev_a, rev_b, worlds, scratch_url=scratch_url, versions_dir=versions_dir, keep=keep
        )
    except DiffError as error:
        sys.stderr.write(f"agency-rls: diff: {error}\n")
        return EXIT_BAD_INPUT
    except CannotRun as error:
        sys.stderr.write(f"agency-rls: diff: {error}\n")
        return EXIT_CANNOT_RUN
    sys.stdout.write((render_json(report) if as_json else render_text(report)) + "\n")
    return report.exit_status

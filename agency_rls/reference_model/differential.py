"""Compare the database with the reference model on one world, principal by principal.

Why a class holding connections: the fuzzer loads hundreds of worlds into ONE migrated database
(creating a database per world would cost seconds each). Between worlds it truncates the spec's
tables as superuser, loads the next world by plain SQL, lets provisioning create and prune
principal roles, then asks the database, as every principal (``SET LOCAL ROLE`` on the backend
login, as applications do), for the ids of every table, in one statement per principal.

``check_writes`` then goes on writing: it applies steps of loader writes
(``agency_rls.reference_model.writes``) to the database and to the world, and compares again after
every step, also as the roles whose principal row a step deleted (until provisioning drops them):
what a definition precomputes from the rows must follow every write, not only bulk loads.

Provisioning is passed in (``provision``) rather than imported: this package reads the spec, never
``rls_policies``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from agency_rls.reference_model.coverage import Tally
from agency_rls.reference_model.database import load_world, world_from_connection
from agency_rls.reference_model.model import Visible, visible_rows
from agency_rls.reference_model.scenario import world_to_yaml
from agency_rls.reference_model.world import TABLES, World, row_key
from agency_rls.reference_model.writes import Step, apply_step, is_provision, step_sql, steps_to_sql

#: Looks at the database after a step of writes, given the world the model holds; returns findings
#: (empty when all is well). E.g. a test's check that precomputed columns are exact.
Inspect = Callable[[psycopg.Connection[Any], World], list[str]]

TRUNCATE = (
    "TRUNCATE public.notice_receipt, public.notice, public.contract_handler, public.contract,"
    " public.customer, public.entrustment, public.supervision, public.principal, public.agency,"
    " public.insurer"
)

_VISIBLE_SQL = sql.SQL("SELECT now(), {}").format(
    sql.SQL(", ").join(
        sql.SQL("ARRAY(SELECT {} FROM {})").format(
            sql.Identifier("role_name" if t == "principal" else "id"), sql.Identifier("public", t)
        )
        for t in TABLES
    )
)


@dataclass(frozen=True)
class Mismatch:
    """One principal and table where the database and the model disagree."""

    role_name: str
    table: str
    database_only: frozenset[int | str]
    model_only: frozenset[int | str]

    def __str__(self) -> str:
        parts = []
        if self.database_only:
            parts.append(f"database shows {sorted(self.database_only, key=str)} (model: hidden)")
        if self.model_only:
            parts.append(f"database hides {sorted(self.model_only, key=str)} (model: visible)")
        return f"{self.role_name} / {self.table}: " + "; ".join(parts)


class Disagreement(AssertionError):
    """The database and the reference model disagree on a world; the message replays it."""

    def __init__(self, mismatches: list[Mismatch], world: World, now: dt.datetime) -> None:
        self.mismatches = mismatches
        self.world = world
        lines = [f"database and reference model disagree ({len(mismatches)} principal/table pairs):"]
        lines += [f"  {m}" for m in mismatches]
        lines += [
            "",
            "Reproduce: save SCENARIO below as a file and run 'agency-rls check FILE'",
            "(it loads the world, provisions, and compares the database with the reference model). SCENARIO:",
            "",
            world_to_yaml(world, now),
        ]
        super().__init__("\n".join(lines))


class WriteDisagreement(AssertionError):
    """After a step of writes the database and the model disagree; the message replays the case."""

    def __init__(
        self,
        problems: list[str],
        world: World,
        steps: Sequence[Step],
        failed_step: int,
        now: dt.datetime,
        prefix: str,
    ) -> None:
        self.problems = problems
        self.world = world
        self.steps = tuple(steps)
        self.failed_step = failed_step
        lines = [f"database and reference model disagree after step {failed_step} of {len(steps)}:"]
        lines += [f"  {p}" for p in problems]
        lines += [
            "",
            "Reproduce: load WORLD (save it as a file; 'agency-rls check FILE' loads and provisions it,",
            "and the database and the model must agree on it), then run STEPS as the loader, in order;",
            "role names are written without the database's role prefix"
            + (f" (here {prefix!r})" if prefix else "")
            + ".",
            "WORLD:",
            "",
            world_to_yaml(world, now),
            f"STEPS (the {len(steps) - failed_step} after step {failed_step} did not run):"
            if failed_step < len(steps)
            else "STEPS:",
            "",
            steps_to_sql(steps[:failed_step]),
        ]
        super().__init__("\n".join(lines))


def _row_differences(stored: World, expected: World) -> list[str]:
    """Per table: keys only in the database, only in the model, and rows that differ."""
    out = []
    for table in TABLES:
        have = {row_key(r): r for r in stored.rows(table)}
        want = {row_key(r): r for r in expected.rows(table)}
        extra = sorted(have.keys() - want.keys(), key=str)
        missing = sorted(want.keys() - have.keys(), key=str)
        changed = sorted((k for k in have.keys() & want.keys() if have[k] != want[k]), key=str)
        if extra:
            out.append(f"{table}: the database holds rows the model has not: {extra}")
        if missing:
            out.append(f"{table}: the model holds rows the database has not: {missing}")
        out += [f"{table} {k}: database {have[k]} != model {want[k]}" for k in changed]
    return out


@dataclass
class Differential:
    """A migrated scratch database that worlds are loaded into, one after the other."""

    admin: psycopg.Connection[Any]  # superuser, autocommit
    backend: psycopg.Connection[Any]  # the backend login role
    prefix: str
    provision: Callable[[psycopg.Connection[Any]], object]  # e.g. lambda c: provision(c, prune=True)
    tally: Tally = field(default_factory=Tally)
    worlds_checked: int = 0
    #: the moment a failing world's times are written relative to (generated worlds: their anchor);
    #: None writes them relative to the database's now().
    dump_now: dt.datetime | None = None
    #: ``check_writes``: steps run per kind of write (``Write.label``), and those after which some
    #: principal's rows changed in the model (a fuzzer whose writes never change a view tests little).
    writes_run: Counter[str] = field(default_factory=Counter)
    writes_effective: Counter[str] = field(default_factory=Counter)

    def load(self, world: World) -> None:
        """Replace the database's rows with ``world``'s and provision its principals."""
        with self.admin.transaction():
            self.admin.execute(TRUNCATE)
            # The next world may map a role name differently, and a principal is never remapped in
            # place: provisioning the empty world drops the previous world's principal roles.
            self.provision(self.admin)
            load_world(self.admin, world, prefix=self.prefix)
        self.provision(self.admin)
        stored = world_from_connection(self.admin)
        expected = world.with_role_prefix(self.prefix).sorted()
        if stored != expected:  # the loader or provisioning changed the world: not a policy finding
            raise RuntimeError(
                f"the database does not hold the world that was loaded:\n{stored}\n!=\n{expected}"
            )

    def database_view(self, role_name: str) -> tuple[dt.datetime, Visible]:
        """``now()`` and the keys of every table, read as ``role_name`` in one transaction."""
        with self.backend.transaction(force_rollback=True), self.backend.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role_name)))
            row = cur.execute(_VISIBLE_SQL).fetchone()
        assert row is not None
        return row[0], {t: frozenset(ids) for t, ids in zip(TABLES, row[1:], strict=True)}

    def compare(self, world: World) -> tuple[list[Mismatch], dt.datetime]:
        """Load ``world``, then diff database and model for every principal and table."""
        self.load(world)
        mismatches, now, _ = self._diff(world, [p.role_name for p in world.principal])
        self.worlds_checked += 1
        return mismatches, now

    def _diff(
        self, world: World, role_names: Sequence[str]
    ) -> tuple[list[Mismatch], dt.datetime, dict[str, Visible]]:
        """Database vs model for each of ``role_names`` (without prefix; a name the world has no
        principal row for must see nothing); also returns what the model shows each of them."""
        stored = world.with_role_prefix(self.prefix)
        mismatches = []
        views: dict[str, Visible] = {}
        now = dt.datetime.now(dt.UTC)
        for name in role_names:
            role_name = self.prefix + name
            now, actual = self.database_view(role_name)
            expected = visible_rows(stored, role_name, now, self.tally)
            views[name] = expected
            for table in TABLES:
                if actual[table] != expected[table]:
                    mismatches.append(
                        Mismatch(
                            name, table, actual[table] - expected[table], expected[table] - actual[table]
                        )
                    )
        return mismatches, now, views

    def check(self, world: World) -> None:
        """Raise ``Disagreement`` (an AssertionError) when database and model differ on ``world``."""
        mismatches, now = self.compare(world)
        if mismatches:
            raise Disagreement(mismatches, world, self.dump_now or now)

    def check_writes(self, world: World, steps: Sequence[Step], inspect: Inspect | None = None) -> None:
        """Load ``world`` and compare; then, step by step, write to the database and to the world and
        compare again, as every principal and as every role whose principal row is gone but that
        still exists. Raises ``Disagreement`` for the loaded world, ``WriteDisagreement`` after a step.

        After each step the database must hold the model's rows (else the writes and the model
        diverged, or a trigger changed rows it should not), and ``inspect`` must find nothing.
        """
        self.load(world)
        names = {p.role_name for p in world.principal}
        mismatches, now, before = self._diff(world, sorted(names))
        self.worlds_checked += 1
        if mismatches:
            raise Disagreement(mismatches, world, self.dump_now or now)
        current = world
        for number, step in enumerate(steps, 1):
            write_now = self._run(step)
            current = apply_step(current, step, write_now)
            current.check()
            names |= {p.role_name for p in current.principal}
            problems = _row_differences(
                world_from_connection(self.admin), current.with_role_prefix(self.prefix).sorted()
            )
            mismatches, now, views = self._diff(current, self._existing_roles(names))
            problems += [str(m) for m in mismatches]
            if inspect is not None:
                problems += inspect(self.admin, current)
            changed = any(views.get(n) != before.get(n) for n in views.keys() | before.keys())
            for write in step:
                self.writes_run[write.label] += 1
                self.writes_effective[write.label] += changed
            before = views
            if problems:
                raise WriteDisagreement(problems, world, steps, number, self.dump_now or now, self.prefix)

    def _run(self, step: Step) -> dt.datetime:
        """Run one step on the database; returns its transaction's ``now()``."""
        if is_provision(step):
            self.provision(self.admin)
            row = self.admin.execute("SELECT now()").fetchone()
        else:
            with self.admin.transaction():
                row = self.admin.execute("SELECT now()").fetchone()
                for statement in step_sql(step, self.prefix):
                    self.admin.execute(statement)
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    def _existing_roles(self, names: set[str]) -> list[str]:
        """Those of ``names`` (without prefix) whose role exists, sorted: the roles one can act as."""
        rows = self.admin.execute(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY (%s) ORDER BY rolname",
            ([self.prefix + n for n in names],),
        ).fetchall()
        return [str(r[0]).removeprefix(self.prefix) for r in rows]

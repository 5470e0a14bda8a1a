"""Compare the database with the reference model on one world, principal by principal.

Why a class holding connections: the fuzzer loads hundreds of worlds into ONE migrated database
(creating a database per world would cost seconds each). Between worlds it truncates the spec's
tables as superuser, loads the next world by plain SQL, lets provisioning create and prune
principal roles, then asks the database, as every principal (``SET LOCAL ROLE`` on the backend
login, as applications do), for the ids of every table, in one statement per principal.

Provisioning is passed in (``provision``) rather than imported: this package reads the spec, never
``rls_policies``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from agency_rls.reference_model.coverage import Tally
from agency_rls.reference_model.database import load_world, world_from_connection
from agency_rls.reference_model.model import Visible, visible_rows
from agency_rls.reference_model.scenario import world_to_yaml
from agency_rls.reference_model.world import TABLES, World

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
        stored = world.with_role_prefix(self.prefix)
        mismatches = []
        now = dt.datetime.now(dt.UTC)
        for principal in stored.principal:
            now, actual = self.database_view(principal.role_name)
            expected = visible_rows(stored, principal.role_name, now, self.tally)
            for table in TABLES:
                if actual[table] != expected[table]:
                    mismatches.append(
                        Mismatch(
                            principal.role_name.removeprefix(self.prefix),
                            table,
                            actual[table] - expected[table],
                            expected[table] - actual[table],
                        )
                    )
        self.worlds_checked += 1
        return mismatches, now

    def check(self, world: World) -> None:
        """Raise ``Disagreement`` (an AssertionError) when database and model differ on ``world``."""
        mismatches, now = self.compare(world)
        if mismatches:
            raise Disagreement(mismatches, world, self.dump_now or now)

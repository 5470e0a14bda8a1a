"""``agency-rls drift``: the live database against what the migrations define at ITS revision.

Why a scratch database: "what the migrations define" is whatever the recorded SQL of every revision
up to the database's current one (not head: a database one release behind is not drifted) builds.
So that is built, on a throwaway cluster (or a server the user names, ``scratch_server``: on managed
PostgreSQL a second database on the same server), and both catalogs are read with the drift test's
queries (``definition_catalog.DEFINITION_QUERIES``), in a read-only transaction with the same
``search_path`` so that the server renders policies and types the same way on both.

What is compared, grouped as the report prints it:

- policies: every policy as ``pg_policies`` renders it (command, roles, USING, WITH CHECK);
- functions: owner, result, SECURITY DEFINER, volatility, parallel safety, settings (``proconfig``:
  the pinned search_path), comment and body;
- grants: the ACL of the two schemas, every relation, column and function (grantee and privileges;
  the grantor is left out: whether the owner or a DBA acting through it granted is not a difference);
- roles: the attributes and marker of the prefix's management roles; principals (``agency-rls
  provision`` makes them from data, so their number and names are not definition) only for the
  attributes no principal may have (SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB, REPLICATION);
- memberships: between management roles exactly; a principal may only be in its groups and have the
  backend as member; any other role may only join the owner and the loader (the DBA and ETL logins,
  by design); anything else involving a role of the prefix is reported;
- rls flags: owner, row level security enabled and forced, per relation;
- triggers: ``pg_get_triggerdef`` of every trigger on the definition's tables.

Objects only the live database has are reported when they are the project's: in schema
``agency_rls``, on a table of the definition, or naming a role of the prefix (a host application's
own tables and functions in ``public`` are not the definition's). Roles of the prefix that are
neither management roles nor principals (a DBA login named with the prefix) are left to ``lint``.

Reading the live database needs only the catalogs: a NOSUPERUSER DBA can run it. Replaying revisions
0002 and 0004 (a BYPASSRLS role) needs SUPERUSER on the scratch server; a scratch server where the
user is no superuser can still build head, from the current definition, which the drift test proves
equal to replaying every revision.
"""

from __future__ import annotations

import difflib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from agency_rls.migrations import runner
from agency_rls.migrations.autogen import TABLES_REVISION, recorded_upgrades
from agency_rls.migrations.definition_catalog import DEFINITION_QUERIES
from agency_rls.rls_policies.definition import render, security_template
from agency_rls.rls_policies.names import ManagementRoles, principal_marker
from alembic.script import ScriptDirectory
from psycopg import IsolationLevel
from psycopg.conninfo import make_conninfo

from agency_rls.cluster.database import create_empty_database, drop_database_and_prefix_roles, libpq_conninfo

#: The groups of the report, in the order it prints them.
GROUPS: tuple[str, ...] = ("policies", "functions", "grants", "roles", "memberships", "rls flags", "triggers")

#: Role attributes no principal may have (``agency-rls provision`` refuses to adopt such a role).
DANGEROUS_ATTRIBUTES: tuple[str, ...] = ("superuser", "createrole", "createdb", "replication", "bypassrls")

#: The catalog parts drift reads (DEFINITION_QUERIES also has columns, constraints and indexes: the
#: tables' shape, which Alembic's own comparison covers).
PARTS: tuple[str, ...] = (
    "schemas",
    "relations",
    "column_acl",
    "functions",
    "policies",
    "triggers",
    "roles",
    "memberships",
)


class DriftCannotRun(RuntimeError):
    """The comparison cannot be made (not migrated, scratch database refused …); one line for the user."""


@dataclass(frozen=True)
class Difference:
    """One object that differs: ``expected`` None when only the live database has it, ``actual`` None
    when only the migrations define it."""

    group: str
    object: str
    expected: tuple[str, ...] | None
    actual: tuple[str, ...] | None

    @property
    def status(self) -> str:
        """``missing`` (defined, not in the live database), ``unexpected`` (only live) or ``changed``."""
        if self.actual is None:
            return "missing"
        if self.expected is None:
            return "unexpected"
        return "changed"

    def unified(self, revision: str) -> list[str]:
        """The difference as a unified diff, expected (the migrations) to actual (the live database)."""
        return list(
            difflib.unified_diff(
                list(self.expected or ()),
                list(self.actual or ()),
                fromfile=f"{self.object} (migrations at {revision})",
                tofile=f"{self.object} (live database)",
                lineterm="",
            )
        )


@dataclass
class DriftReport:
    """The live database against the definition at its revision."""

    database: str
    role_prefix: str
    revision: str
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.differences)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (``--format json``)."""
        return {
            "database": self.database,
            "role_prefix": self.role_prefix,
            "revision": self.revision,
            "drift": self.drifted,
            "notes": self.notes,
            "differences": [
                {
                    "group": d.group,
                    "object": d.object,
                    "status": d.status,
                    "expected": list(d.expected) if d.expected is not None else None,
                    "actual": list(d.actual) if d.actual is not None else None,
                    "diff": d.unified(self.revision),
                }
                for d in self.differences
            ],
        }

    def text(self) -> str:
        """The readable report: one unified diff per object, grouped."""
        lines = [
            f"agency-rls drift: database {self.database} (role prefix {self.role_prefix!r}) at revision "
            f"{self.revision}, compared with what the migrations define at {self.revision}"
        ]
        lines += [f"note: {note}" for note in self.notes]
        if not self.differences:
            lines.append("no drift")
            return "\n".join(lines) + "\n"
        lines.append(f"{len(self.differences)} object(s) differ")
        for group in GROUPS:
            found = [d for d in self.differences if d.group == group]
            if not found:
                continue
            lines += ["", f"== {group} ({len(found)}) =="]
            for difference in found:
                lines += ["", f"{difference.status}: {difference.object}", *difference.unified(self.revision)]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Reading one catalog


Rows = dict[str, list[tuple[Any, ...]]]


def read_parts(conn: psycopg.Connection[Any], prefix: str) -> Rows:
    """DEFINITION_QUERIES' drift parts, in one read-only snapshot with ``search_path`` pg_catalog (every
    name the server renders is schema-qualified, the same way on both databases)."""
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog")
        return {
            part: conn.execute(DEFINITION_QUERIES[part], {"prefix": prefix}).fetchall()  # type: ignore[call-overload]
            for part in PARTS
        }


def renamed(rows: Rows, replacements: dict[str, str]) -> Rows:
    """Every string of ``rows`` with the scratch database's prefix and name written as the live one's.

    Only the scratch side is rewritten: its prefix and name are random tokens that occur nowhere else.
    """
    pattern = re.compile("|".join(re.escape(old) for old in replacements if old))

    def fix(value: object) -> object:
        return pattern.sub(lambda m: replacements[m.group(0)], value) if isinstance(value, str) else value

    return {part: [tuple(fix(v) for v in row) for row in found] for part, found in rows.items()}


#: aclitem privilege letters (PostgreSQL's "Privilege abbreviations"), spelt out for the report.
PRIVILEGES = {
    "r": "SELECT", "w": "UPDATE", "a": "INSERT", "d": "DELETE", "D": "TRUNCATE", "x": "REFERENCES",
    "t": "TRIGGER", "X": "EXECUTE", "U": "USAGE", "C": "CREATE", "c": "CONNECT", "T": "TEMPORARY",
    "s": "SET", "A": "ALTER SYSTEM", "m": "MAINTAIN",
}  # fmt: skip


def acl_items(text: str) -> list[str]:
    """``grantee: PRIVILEGE, …`` for each grantee of an ACL as ``definition_catalog.acl`` writes it.

    The grantor is left out (the owner, or a DBA acting through the owner, is not a difference); a
    grantee's items from several grantors are merged; ``*`` marks WITH GRANT OPTION; PUBLIC is PUBLIC.
    """
    granted: dict[str, set[str]] = {}
    for item in filter(None, text.split(",")):
        grantee, _, rest = item.partition("=")
        letters = re.findall(r"[A-Za-z]\*?", rest.split("/")[0])
        granted.setdefault(grantee or "PUBLIC", set()).update(letters)
    order = list(PRIVILEGES)
    return [
        f"{grantee}: "
        + ", ".join(
            PRIVILEGES.get(letter[0], letter[0]) + (" WITH GRANT OPTION" if letter.endswith("*") else "")
            for letter in sorted(letters, key=lambda x: (order.index(x[0]) if x[0] in order else 99, x))
        )
        for grantee, letters in sorted(granted.items())
    ]


def labelled(label: str, value: str) -> list[str]:
    """``label: value``, a value the server renders over several lines continued, indented, one per line
    (so that the diff marks exactly the lines that changed)."""
    first, *rest = (value or "").splitlines() or [""]
    return [f"{label}: {first}".rstrip(), *(f"    {line}".rstrip() for line in rest)]


def yes(flag: object) -> str:
    return "yes" if flag else "no"


@dataclass
class Objects:
    """One database's objects per group: name -> lines, and what each object's table is (for deciding
    whether an object only the live database has is the project's)."""

    groups: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=lambda: {g: {} for g in GROUPS})
    tables: dict[tuple[str, str], str | None] = field(default_factory=dict)
    schemas: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, group: str, name: str, lines: list[str], *, schema: str, table: str | None = None) -> None:
        self.groups[group][name] = tuple(lines)
        self.tables[group, name] = table
        self.schemas[group, name] = schema


VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
PARALLEL = {"s": "safe", "r": "restricted", "u": "unsafe"}
RELKIND = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "S": "sequence",
           "f": "foreign table", "i": "index", "I": "partitioned index", "c": "type"}  # fmt: skip


def schema_of(qualified: str) -> str:
    """The schema of a name rendered with search_path pg_catalog (always qualified)."""
    return qualified.split(".", 1)[0].strip('"') if "." in qualified else "pg_catalog"


def objects_of(rows: Rows, roles: ManagementRoles, principals: set[str]) -> Objects:
    """The groups of one database, from its catalog rows (names as the live database spells them)."""
    found = Objects()
    for name, owner, acl, _comment in rows["schemas"]:
        # Who owns public is the server's business (pg_database_owner since 15, or whoever restored it).
        ownership = [f"owner: {owner}"] if name != "public" else []
        found.add("grants", f"schema {name}", [*ownership, *acl_items(acl)], schema=name)
    for name, kind, owner, acl, rls, forced, _comment in rows["relations"]:
        what = RELKIND.get(kind, kind)
        schema = schema_of(name)
        if kind in ("r", "p", "v", "m", "f"):
            found.add(
                "rls flags",
                f"{what} {name}",
                [f"owner: {owner}", f"row level security: {yes(rls)}", f"forced: {yes(forced)}"],
                schema=schema,
                table=name,
            )
        if kind != "i":
            found.add("grants", f"{what} {name}", acl_items(acl), schema=schema, table=name)
    for table, column, acl in rows["column_acl"]:
        found.add("grants", f"column {table}.{column}", acl_items(acl), schema=schema_of(table), table=table)
    for signature, owner, acl, result, secdef, volatile, parallel, prorows, config, body, comment in rows[
        "functions"
    ]:
        schema = schema_of(signature)
        found.add("grants", f"function {signature}", acl_items(acl), schema=schema)  # owner: functions
        found.add(
            "functions",
            f"function {signature}",
            [
                f"owner: {owner}",
                f"returns: {result}",
                f"security definer: {yes(secdef)}",
                f"volatility: {VOLATILITY.get(volatile, volatile)}",
                f"parallel: {PARALLEL.get(parallel, parallel)}",
                f"rows: {prorows:g}",
                f"settings: {config or '(none)'}",
                *labelled("comment", comment),
                "body:",
                *(f"    {line}".rstrip() for line in body.strip("\n").splitlines()),
            ],
            schema=schema,
        )
    for schema, table, name, permissive, policy_roles, cmd, qual, with_check in rows["policies"]:
        qualified = f"{schema}.{table}"
        found.add(
            "policies",
            f"policy {name} on {qualified}",
            [
                f"as: {permissive}",
                f"for: {cmd}",
                f"to: {policy_roles}",
                *labelled("using", qual),
                *labelled("with check", with_check),
            ],
            schema=schema,
            table=qualified,
        )
    for table, name, definition in rows["triggers"]:
        found.add(
            "triggers", f"trigger {name} on {table}", [definition], schema=schema_of(table), table=table
        )
    management = set(roles.all())
    for name, superuser, inherit, createrole, createdb, login, replication, bypassrls, comment in rows[
        "roles"
    ]:
        attributes = {
            "superuser": superuser,
            "createrole": createrole,
            "createdb": createdb,
            "replication": replication,
            "bypassrls": bypassrls,
        }
        if name in management:
            lines = [f"{attribute}: {yes(value)}" for attribute, value in attributes.items()]
            lines += [f"inherit: {yes(inherit)}", f"login: {yes(login)}", f"comment: {comment}"]
            found.add("roles", f"role {name}", lines, schema="")
        elif name in principals:
            lines = [f"{attribute}: {yes(attributes[attribute])}" for attribute in DANGEROUS_ATTRIBUTES]
            found.add("roles", f"principal {name}", lines, schema="")
    members: dict[str, list[str]] = {}
    for group, member, admin in rows["memberships"]:
        if allowed_membership(group, member, roles, principals) or (
            admin and group in principals and member not in set(roles.all()) and member not in principals
        ):  # PostgreSQL 16+: the DBA that created a principal holds ADMIN OPTION on it (CREATEROLE)
            continue
        members.setdefault(group, []).append(f"{member}{' WITH ADMIN OPTION' if admin else ''}")
    for group, names in members.items():
        found.add("memberships", f"members of {group}", sorted(names), schema="")
    return found


def allowed_membership(group: str, member: str, roles: ManagementRoles, principals: set[str]) -> bool:
    """Whether a membership is data rather than definition, and allowed (see the module docstring).

    Memberships between management roles are never "allowed" here: they are compared exactly."""
    management = set(roles.all())
    if group in management and member in management:
        return False
    if member in principals:
        return group in roles.groups()
    if group in principals:
        return member == roles.backend
    if member in management:
        return False  # a management role in some other role (pg_read_all_data …): compared
    if group in management:
        return group in (roles.owner, roles.loader)  # the DBA and ETL logins join these by design
    return True  # neither side is the project's (an empty prefix lists every role of the cluster)


def principals_of(rows: Rows, database: str) -> set[str]:
    """Roles carrying this database's principal marker (``agency-rls provision`` made them)."""
    marker = principal_marker(database)
    return {row[0] for row in rows["roles"] if row[-1] == marker}


# ---------------------------------------------------------------------------------------------------
# Comparing


def compare(expected: Objects, actual: Objects, project_roles: set[str]) -> list[Difference]:
    """Every object whose lines differ, that only one side has (live-only ones when they are ours)."""
    definition_tables = {t for t in expected.tables.values() if t}
    differences = []
    for group in GROUPS:
        want, have = expected.groups[group], actual.groups[group]
        for name in sorted(want.keys() | have.keys()):
            if want.get(name) == have.get(name):
                continue
            if name not in want and not ours(group, name, actual, definition_tables, project_roles):
                continue
            differences.append(Difference(group, name, want.get(name), have.get(name)))
    return differences


_WORD = re.compile(r"[A-Za-z0-9_$]+")


def ours(group: str, name: str, actual: Objects, tables: set[str], project_roles: set[str]) -> bool:
    """Whether an object only the live database has belongs to the project: in schema agency_rls, on a
    table of the definition, or naming a management role or a principal (see the module docstring)."""
    if group in ("roles", "memberships"):
        return True  # built only from the project's roles
    if actual.schemas[group, name] == "agency_rls" or actual.tables[group, name] in tables:
        return True
    words = {word for line in (name, *actual.groups[group][name]) for word in _WORD.findall(line)}
    return not words.isdisjoint(project_roles)


# ---------------------------------------------------------------------------------------------------
# The scratch database at a revision


@dataclass(frozen=True)
class Scratch:
    """The scratch database built at a revision: its conninfo, prefix and name."""

    conninfo: str
    prefix: str
    database: str


def upgrades_to(revision: str) -> list[tuple[str, Any]]:
    """(revision, recorded upgrade SQL path) from base to ``revision``."""
    script = ScriptDirectory.from_config(runner.alembic_config(None))
    upgrades = recorded_upgrades(script)
    ids = [found for found, _ in upgrades]
    if revision not in ids:
        raise DriftCannotRun(f"revision {revision} is not one of this version's revisions")
    return upgrades[: ids.index(revision) + 1]


@contextmanager
def scratch_at(server: str, revision: str) -> Iterator[Scratch]:
    """A database on ``server`` holding what the migrations define at ``revision``; dropped afterwards
    with its roles.

    A superuser replays the recorded SQL of each revision; anyone else gets revision 0001 and the current
    definition at head (tests/test_definition_drift.py proves the two equal) and an error before head.
    """
    token = secrets.token_hex(4)
    name = f"agency_rls_drift_scratch_{token}"
    scratch = Scratch(conninfo=make_conninfo(server, dbname=name), prefix=f"zd{token}_", database=name)
    upgrades = upgrades_to(revision)
    roles = ManagementRoles(scratch.prefix)
    created = False
    try:
        try:
            create_empty_database(server, scratch.database)
        except psycopg.Error as error:
            raise DriftCannotRun(f"cannot create the scratch database: {one_line(error)}") from None
        created = True
        with psycopg.connect(scratch.conninfo, autocommit=True) as conn:
            superuser = conn.execute(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
            ).fetchone() == (True,)
            if superuser or len(upgrades) == 1:
                steps = [(found, path.read_text(encoding="utf-8")) for found, path in upgrades]
            elif revision == runner.head_revision():
                tables = dict(upgrades)[TABLES_REVISION].read_text(encoding="utf-8")
                steps = [(TABLES_REVISION, tables), ("the current definition", security_template())]
            else:
                raise DriftCannotRun(
                    f"building revision {revision} replays revisions 0002 and 0004 (a BYPASSRLS role): the "
                    "scratch server needs a superuser (leave out --scratch-url for a throwaway cluster)"
                )
            for found, template in steps:
                try:
                    conn.execute(render(template, roles))  # type: ignore[arg-type]
                except psycopg.Error as error:
                    raise DriftCannotRun(
                        f"building the scratch database: revision {found} failed: {one_line(error)}"
                    ) from None
        yield scratch
    finally:
        if created:
            # The database first: its objects go with it, so a DBA can then drop the roles it made.
            drop_database_and_prefix_roles(server, scratch.database, scratch.prefix)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def scratch_server(server: str | None) -> Iterator[str]:
    """``server`` as given, or a throwaway cluster's superuser conninfo for the time of the block."""
    if server:
        yield libpq_conninfo(server)
        return
    from agency_rls.cluster.throwaway import ThrowawayCluster

    cluster = None
    try:
        cluster = ThrowawayCluster()
        cluster.start()
    except Exception as error:
        if cluster is not None:
            cluster.stop()
        reason = one_line(error).split(" --- ")[0]
        raise DriftCannotRun(
            f"cannot start a throwaway cluster for the scratch database ({reason}): give --scratch-url"
        ) from None
    try:
        yield cluster.conninfo()
    finally:
        cluster.stop()


# ---------------------------------------------------------------------------------------------------
# The command's work


def live_state(conn: psycopg.Connection[Any]) -> tuple[str, str, int]:
    """(database, stored role prefix, server major) of the live database; DriftCannotRun if not ours."""
    row = conn.execute(
        "SELECT current_database(), current_setting('server_version_num')::int / 10000,"
        " to_regprocedure('agency_rls.role_prefix()') IS NOT NULL"
    ).fetchone()
    assert row is not None
    database, major, migrated = row
    if not migrated:
        raise DriftCannotRun(
            "this database has no agency_rls.role_prefix(): it is not migrated by agency-rls"
        )
    try:
        prefix = conn.execute("SELECT agency_rls.role_prefix()").fetchone()[0]  # type: ignore[index]
    except psycopg.errors.InsufficientPrivilege:
        raise DriftCannotRun(
            "cannot call agency_rls.role_prefix(): run drift as the DBA who migrated the database"
        ) from None
    conn.rollback()
    return str(database), str(prefix), int(major)


def detect_drift(
    database_url: str | None,
    *,
    scratch_url: str | None = None,
) -> DriftReport:
    """Compare the live database at ``database_url`` with the migrations at its current revision."""
    try:
        revision = runner.migrated_revision(database_url)
    except Exception as error:
        raise DriftCannotRun(
            f"cannot read the database's revision: {one_line(getattr(error, 'orig', None) or error)}"
        ) from None
    if revision is None:
        raise DriftCannotRun("the database is not migrated (no agency-rls revision): nothing to compare")
    with psycopg.connect(libpq_conninfo(database_url)) as conn:
        database, prefix, live_major = live_state(conn)
        live_rows = read_parts(conn, prefix)
    report = DriftReport(database=database, role_prefix=prefix, revision=revision)
    with scratch_server(scratch_url) as server, scratch_at(server, revision) as scratch:
        with psycopg.connect(scratch.conninfo) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
            scratch_major = int(row[0])  # type: ignore[index]
            conn.rollback()
            scratch_rows = read_parts(conn, scratch.prefix)
    if scratch_major != live_major:
        report.notes.append(
            f"the scratch server is PostgreSQL {scratch_major}, the live one {live_major}: the server's "
            "rendering of policies may differ between majors (give --scratch-url on a server of the same major)"
        )
    expected_rows = renamed(scratch_rows, {scratch.prefix: prefix, scratch.database: database})
    roles = ManagementRoles(prefix)
    principals = principals_of(live_rows, database)
    expected = objects_of(expected_rows, roles, set())
    for principal in principals:  # data, not definition: only what no principal may be
        expected.add("roles", f"principal {principal}", [f"{a}: no" for a in DANGEROUS_ATTRIBUTES], schema="")
    actual = objects_of(live_rows, roles, principals)
    report.differences = compare(expected, actual, set(roles.all()) | principals)
    return report

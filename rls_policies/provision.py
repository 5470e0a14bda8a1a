"""Make principal roles match the ``principal`` table, idempotently, in one transaction.

Why a command and not triggers: creating roles needs CREATEROLE (or superuser), which no
loader should hold, and roles are cluster-wide state that deserves one reviewed code path.
Rows that loaders insert by plain SQL are picked up on the next run.

What it does (all or nothing):
1. every agency and insurer gets its default principal row (``<prefix>agency_<code>``,
   ``<prefix>insurer_<code>``) unless it exists;
2. every principal row gets a role: created NOLOGIN (LOGIN on request), INHERIT, marked
   with the comment ``agency-rls:principal``, made a member of its kind's group role, and
   granted to the backend role;
3. with ``prune``: roles marked as this project's principals, in its group roles, whose row
   is gone are dropped.

It refuses, before changing anything, any name it would not create (see ``names``) and any
existing role it did not create: a role without the marker, a superuser, BYPASSRLS,
CREATEROLE, CREATEDB or REPLICATION role, a predefined role, or a management role.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from rls_policies.names import (
    PRINCIPAL_MARKER,
    ManagementRoles,
    RoleNameError,
    check_role_name,
    default_principal_role,
)

#: Roles below this oid are built in (predefined roles, the bootstrap superuser).
FIRST_NORMAL_OID = 16384


class ProvisionError(RuntimeError):
    """Provisioning refused; the transaction is rolled back and nothing changed."""


@dataclass
class ProvisionReport:
    """What one provisioning run changed (names of roles / principal rows)."""

    prefix: str
    principal_rows_added: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)
    roles_updated: list[str] = field(default_factory=list)
    roles_dropped: list[str] = field(default_factory=list)
    principals: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "prefix": self.prefix,
            "principals": self.principals,
            "principal_rows_added": self.principal_rows_added,
            "roles_created": self.roles_created,
            "roles_updated": self.roles_updated,
            "roles_dropped": self.roles_dropped,
        }


def stored_prefix(conn: psycopg.Connection) -> str:
    """The role prefix the database was migrated with; error when it is not migrated."""
    found = conn.execute("SELECT to_regprocedure('agency_rls.role_prefix()') IS NOT NULL").fetchone()
    if not found or not found[0]:
        raise ProvisionError("this database is not migrated: run 'agency-rls migrate' first")
    row = conn.execute("SELECT agency_rls.role_prefix()").fetchone()
    assert row is not None
    return str(row[0])


def provision(conn: psycopg.Connection, *, login: bool = False, prune: bool = False) -> ProvisionReport:
    """Provision principal roles on ``conn`` in one transaction; see the module docstring.

    Set-based: the catalog is read in a few queries, every refusal is decided before any
    statement runs, and the changes go to the server as one batch (10,000 principals provision
    in seconds, not minutes).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('agency-rls provision'))")
        prefix = stored_prefix(conn)
        roles = ManagementRoles(prefix)
        report = ProvisionReport(prefix=prefix)
        _add_default_principal_rows(conn, prefix, report)
        principals = conn.execute(
            "SELECT role_name, kind, (kind = 'agency' AND insurer_id IS NOT NULL) AS restricted"
            "  FROM public.principal ORDER BY role_name"
        ).fetchall()
        report.principals = len(principals)
        existing = _existing_roles(conn, roles, [row[0] for row in principals])
        statements: list[sql.Composable] = []
        for role_name, kind, restricted in principals:
            wanted_groups = roles.groups_for(kind, restricted=restricted)
            statements += _plan_principal_role(
                roles, role_name, wanted_groups, existing.get(role_name), login=login, report=report
            )
        if prune:
            statements += _plan_prune(conn, roles, {row[0] for row in principals}, report)
        if statements:
            conn.execute(sql.SQL(";\n").join(statements))
    return report


def _add_default_principal_rows(conn: psycopg.Connection, prefix: str, report: ProvisionReport) -> None:
    """Insert the default principal row of every agency and insurer that lacks one."""
    entities = conn.execute(
        "SELECT 'agency', id, code FROM public.agency UNION ALL SELECT 'insurer', id, code FROM public.insurer"
        " ORDER BY 1, 2"
    ).fetchall()
    mapped = {
        name: (kind, agency_id, insurer_id)
        for name, kind, agency_id, insurer_id in conn.execute(
            "SELECT role_name, kind, agency_id, insurer_id FROM public.principal"
        )
    }
    missing: list[tuple[str, str, int | None, int | None]] = []
    for kind, entity_id, code in entities:
        try:
            name = default_principal_role(prefix, kind, code)
        except RoleNameError as error:
            raise ProvisionError(f"{kind} {code!r}: {error}") from None
        wanted = (kind, entity_id, None) if kind == "agency" else (kind, None, entity_id)
        if name not in mapped:
            missing.append((name, *wanted))
            mapped[name] = wanted
        elif mapped[name] != wanted:
            raise ProvisionError(
                f"principal {name!r} exists but does not map to {kind} {code!r} (mappings never change "
                "in place: delete that row first)"
            )
    if missing:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id) VALUES (%s, %s, %s, %s)",
                missing,
            )
        report.principal_rows_added.extend(row[0] for row in missing)


@dataclass(frozen=True)
class _ExistingRole:
    """What the catalog says about a role a principal row names."""

    oid: int
    powerful: bool  # superuser, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION
    can_login: bool
    marker: str | None
    member_of: frozenset[str]
    granted_to_backend: bool


def _existing_roles(
    conn: psycopg.Connection, roles: ManagementRoles, names: list[str]
) -> dict[str, _ExistingRole]:
    """One catalog query for every role named by a principal row."""
    rows = conn.execute(
        """
        SELECT r.rolname, r.oid,
               r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication,
               r.rolcanlogin,
               shobj_description(r.oid, 'pg_authid'),
               ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members AS m
                       JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
                      WHERE m.member = r.oid),
               EXISTS (SELECT FROM pg_catalog.pg_auth_members AS m
                        JOIN pg_catalog.pg_roles AS b ON b.oid = m.member
                       WHERE m.roleid = r.oid AND b.rolname = %s)
          FROM pg_catalog.pg_roles AS r
         WHERE r.rolname = ANY (%s)
        """,
        (roles.backend, names),
    ).fetchall()
    return {
        name: _ExistingRole(oid, powerful, can_login, marker, frozenset(member_of), to_backend)
        for name, oid, powerful, can_login, marker, member_of, to_backend in rows
    }


def _plan_principal_role(
    roles: ManagementRoles,
    name: str,
    wanted_groups: tuple[str, ...],
    existing: _ExistingRole | None,
    *,
    login: bool,
    report: ProvisionReport,
) -> list[sql.Composable]:
    """The statements that make one principal role right, or a ProvisionError if it must be refused."""
    try:
        check_role_name(name)
    except RoleNameError as error:
        raise ProvisionError(f"principal row {name!r}: {error}") from None
    if name in roles.all():
        raise ProvisionError(f"principal row {name!r} names a management role; refused")
    ident = sql.Identifier(name)
    statements: list[sql.Composable] = []
    member_of: frozenset[str] = frozenset()
    granted_to_backend = False
    if existing is None:
        statements.append(
            sql.SQL("CREATE ROLE {} {} INHERIT").format(ident, sql.SQL("LOGIN" if login else "NOLOGIN"))
        )
        statements.append(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(PRINCIPAL_MARKER)))
        report.roles_created.append(name)
    else:
        if existing.oid < FIRST_NORMAL_OID or existing.powerful:
            raise ProvisionError(
                f"principal row {name!r} names a privileged or predefined role; refused (nothing changed)"
            )
        if existing.marker != PRINCIPAL_MARKER:
            raise ProvisionError(
                f"principal row {name!r} names an existing role that agency-rls did not create; refused "
                "(nothing changed)"
            )
        foreign = existing.member_of - set(roles.groups())
        if foreign:
            raise ProvisionError(
                f"principal role {name!r} is also a member of {', '.join(sorted(foreign))}; a principal may "
                "only be a member of the group roles (revoke that membership, then provision again)"
            )
        member_of, granted_to_backend = existing.member_of, existing.granted_to_backend
        if login and not existing.can_login:
            statements.append(sql.SQL("ALTER ROLE {} LOGIN").format(ident))
    for group in roles.groups():
        if group in wanted_groups and group not in member_of:
            statements.append(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), ident))
        elif group not in wanted_groups and group in member_of:
            statements.append(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
    if not granted_to_backend:
        statements.append(sql.SQL("GRANT {} TO {}").format(ident, sql.Identifier(roles.backend)))
    if statements and existing is not None:
        report.roles_updated.append(name)
    return statements


def _plan_prune(
    conn: psycopg.Connection, roles: ManagementRoles, keep: set[str], report: ProvisionReport
) -> list[sql.Composable]:
    """DROP ROLE for this project's principal roles whose principal row is gone."""
    stale = conn.execute(
        """
        SELECT DISTINCT r.rolname
          FROM pg_catalog.pg_auth_members AS m
          JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
          JOIN pg_catalog.pg_roles AS r ON r.oid = m.member
         WHERE g.rolname = ANY (%s)
           AND shobj_description(r.oid, 'pg_authid') = %s
         ORDER BY r.rolname
        """,
        (list(roles.groups()), PRINCIPAL_MARKER),
    ).fetchall()
    dropped = [name for (name,) in stale if name not in keep]
    report.roles_dropped.extend(dropped)
    return [sql.SQL("DROP ROLE {}").format(sql.Identifier(name)) for name in dropped]

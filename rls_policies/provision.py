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
    """Provision principal roles on ``conn`` in one transaction; see the module docstring."""
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
        for role_name, kind, restricted in principals:
            wanted_groups = roles.groups_for(kind, restricted=restricted)
            _ensure_principal_role(conn, roles, role_name, wanted_groups, login=login, report=report)
        if prune:
            _prune(conn, roles, {row[0] for row in principals}, report)
    return report


def _add_default_principal_rows(conn: psycopg.Connection, prefix: str, report: ProvisionReport) -> None:
    """Insert the default principal row of every agency and insurer that lacks one."""
    for kind, table in (("agency", "agency"), ("insurer", "insurer")):
        rows = conn.execute(
            sql.SQL("SELECT id, code FROM public.{} ORDER BY id").format(sql.Identifier(table))
        )
        for entity_id, code in rows.fetchall():
            try:
                name = default_principal_role(prefix, kind, code)
            except RoleNameError as error:
                raise ProvisionError(f"{kind} {code!r}: {error}") from None
            existing = conn.execute(
                "SELECT kind, agency_id, insurer_id FROM public.principal WHERE role_name = %s", (name,)
            ).fetchone()
            wanted = (kind, entity_id, None) if kind == "agency" else (kind, None, entity_id)
            if existing is None:
                conn.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id)"
                    " VALUES (%s, %s, %s, %s)",
                    (name, *wanted),
                )
                report.principal_rows_added.append(name)
            elif tuple(existing) != wanted:
                raise ProvisionError(
                    f"principal {name!r} exists but does not map to {kind} {code!r} (mappings never change "
                    "in place: delete that row first)"
                )


def _ensure_principal_role(
    conn: psycopg.Connection,
    roles: ManagementRoles,
    name: str,
    wanted_groups: tuple[str, ...],
    *,
    login: bool,
    report: ProvisionReport,
) -> None:
    """Create or check one principal role and its memberships."""
    try:
        check_role_name(name)
    except RoleNameError as error:
        raise ProvisionError(f"principal row {name!r}: {error}") from None
    if name in roles.all():
        raise ProvisionError(f"principal row {name!r} names a management role; refused")
    existing = conn.execute(
        """
        SELECT r.oid, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
               r.rolcanlogin, shobj_description(r.oid, 'pg_authid') AS marker
          FROM pg_catalog.pg_roles AS r
         WHERE r.rolname = %s
        """,
        (name,),
    ).fetchone()
    ident = sql.Identifier(name)
    if existing is None:
        conn.execute(
            sql.SQL("CREATE ROLE {} {} INHERIT").format(ident, sql.SQL("LOGIN" if login else "NOLOGIN"))
        )
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(PRINCIPAL_MARKER)))
        report.roles_created.append(name)
    else:
        oid, is_super, bypass, createrole, createdb, replication, can_login, marker = existing
        if oid < 16384 or is_super or bypass or createrole or createdb or replication:
            raise ProvisionError(
                f"principal row {name!r} names a privileged or predefined role; refused (nothing changed)"
            )
        if marker != PRINCIPAL_MARKER:
            raise ProvisionError(
                f"principal row {name!r} names an existing role that agency-rls did not create; refused "
                "(nothing changed)"
            )
        if login and not can_login:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(ident))
            report.roles_updated.append(name)
    _check_memberships(conn, roles, name)
    changed = False
    for group in roles.groups():
        member = _is_member(conn, name, group)
        if group in wanted_groups and not member:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), ident))
            changed = True
        elif group not in wanted_groups and member:
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
            changed = True
    if not _is_member(conn, roles.backend, name):
        conn.execute(sql.SQL("GRANT {} TO {}").format(ident, sql.Identifier(roles.backend)))
        changed = True
    if changed and name not in report.roles_created and name not in report.roles_updated:
        report.roles_updated.append(name)


def _is_member(conn: psycopg.Connection, member: str, group: str) -> bool:
    """Direct membership of ``member`` in ``group``."""
    row = conn.execute(
        """
        SELECT EXISTS (SELECT FROM pg_catalog.pg_auth_members AS m
                        WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)
                          AND m.roleid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s))
        """,
        (member, group),
    ).fetchone()
    return bool(row and row[0])


def _check_memberships(conn: psycopg.Connection, roles: ManagementRoles, name: str) -> None:
    """A principal may be a member of the group roles only: nothing else is reachable."""
    foreign = conn.execute(
        """
        SELECT g.rolname
          FROM pg_catalog.pg_auth_members AS m
          JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
         WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)
           AND g.rolname <> ALL (%s)
        """,
        (name, list(roles.groups())),
    ).fetchall()
    if foreign:
        granted = ", ".join(sorted(row[0] for row in foreign))
        raise ProvisionError(
            f"principal role {name!r} is also a member of {granted}; a principal may only be a member of "
            "its group role (revoke that membership, then provision again)"
        )


def _prune(conn: psycopg.Connection, roles: ManagementRoles, keep: set[str], report: ProvisionReport) -> None:
    """Drop this project's principal roles whose principal row is gone."""
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
    for (name,) in stale:
        if name not in keep:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
            report.roles_dropped.append(name)

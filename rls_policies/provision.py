"""Make principal roles match the ``principal`` table, idempotently, in one transaction.

Why a command and not triggers: creating roles needs CREATEROLE (or superuser), which no
loader should hold, and roles are cluster-wide state that deserves one reviewed code path.
Rows that loaders insert by plain SQL are picked up on the next run.

What it does (all or nothing):
1. every agency and insurer gets its default principal row (``<prefix>agency_<code>``,
   ``<prefix>insurer_<code>``) unless it exists;
2. every principal row gets a role: created NOLOGIN (LOGIN on request: ``login=True``; ``login=False``
   makes an existing LOGIN principal NOLOGIN again, ``None`` leaves it as it is), INHERIT, marked
   with the comment ``agency-rls:principal``, made a member of its kind's group role, and
   granted to the backend role;
3. with ``prune``: roles marked as this database's principals whose row is gone are dropped,
   after what they own here (large objects, default privileges) is dropped.

Roles are cluster-wide: every role it creates carries the marker ``agency-rls:principal
database=<this database>``, and it never adopts, alters or drops a role marked for another
database. It refuses, before changing anything, any name it would not create (see ``names``)
and any existing role it did not create: a role without the marker, a superuser, BYPASSRLS,
CREATEROLE, CREATEDB or REPLICATION role, a predefined role, or a management role.

It also reports what principals, the group roles and the backend own in this database or
elsewhere (``owned_objects``), and resets the role-level settings principals and group roles
gave themselves (``ALTER ROLE … SET``: readable by every role, a channel between principals).

Concurrent runs serialise on a lock of ``agency_rls.provision_lock`` (a table principals have no
privilege on, so they cannot hold a conflicting lock), waiting at most ``lock_timeout_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from agency_rls.rls_policies.definition import BACKEND_ROLE_SETTINGS
from agency_rls.rls_policies.names import (
    ManagementRoles,
    RoleNameError,
    check_role_name,
    default_principal_role,
    management_marker,
    marker_database,
    principal_marker,
)
from agency_rls.rls_policies.privileges import MissingPrivilege, no_schema_access, require_provision
from psycopg import sql

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
    owned_objects: list[str] = field(default_factory=list)
    settings_reset: list[str] = field(default_factory=list)
    sequences_advanced: dict[str, int] = field(default_factory=dict)  # table -> largest id
    derived_rows_repaired: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "prefix": self.prefix,
            "principals": self.principals,
            "principal_rows_added": self.principal_rows_added,
            "roles_created": self.roles_created,
            "roles_updated": self.roles_updated,
            "roles_dropped": self.roles_dropped,
            "owned_objects": self.owned_objects,
            "settings_reset": self.settings_reset,
            "sequences_advanced": self.sequences_advanced,
            "derived_rows_repaired": self.derived_rows_repaired,
        }


def stored_prefix(conn: psycopg.Connection) -> str:
    """The role prefix the database was migrated with; error when it is not migrated."""
    if conn.execute("SELECT to_regnamespace('agency_rls') IS NULL").fetchone() == (True,):
        raise ProvisionError("this database is not migrated: run 'agency-rls migrate' first")
    try:
        with conn.transaction():  # a savepoint when called inside provision's transaction
            found = conn.execute("SELECT to_regprocedure('agency_rls.role_prefix()') IS NOT NULL").fetchone()
            if not found or not found[0]:
                raise ProvisionError("this database is not migrated: run 'agency-rls migrate' first")
            row = conn.execute("SELECT agency_rls.role_prefix()").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        raise ProvisionError(str(no_schema_access(conn))) from None
    assert row is not None
    return str(row[0])


def provision(
    conn: psycopg.Connection,
    *,
    login: bool | None = None,
    prune: bool = False,
    lock_timeout_ms: int = 30_000,
) -> ProvisionReport:
    """Provision principal roles on ``conn`` in one transaction; see the module docstring.

    Set-based: the catalog is read in a few queries, every refusal is decided before any
    statement runs, and the changes go to the server as one batch (10,000 principals provision
    in seconds, not minutes).
    """
    try:
        return _provision(conn, login=login, prune=prune, lock_timeout_ms=lock_timeout_ms)
    except psycopg.errors.LockNotAvailable:
        raise ProvisionError(
            f"a lock provisioning needs was not granted within {lock_timeout_ms} ms: another session holds it "
            "(another provision, or an open transaction of a principal: see pg_stat_activity and "
            "pg_blocking_pids()); nothing changed, try again"
        ) from None


def _provision(
    conn: psycopg.Connection, *, login: bool | None, prune: bool, lock_timeout_ms: int
) -> ProvisionReport:
    """provision(), inside its transaction; every wait for a lock is bounded by ``lock_timeout_ms``."""
    with conn.transaction():
        prefix = stored_prefix(conn)
        try:
            require_provision(conn, ManagementRoles(prefix))
        except MissingPrivilege as error:
            raise ProvisionError(str(error)) from None
        _lock(conn, lock_timeout_ms)
        roles = ManagementRoles(prefix)
        database = _check_prefix_belongs_here(conn, roles)
        report = ProvisionReport(prefix=prefix)
        if prune:
            # Before rows are added: a default row may name a stale role, which must go first.
            _prune(conn, roles, database, report)
        _add_default_principal_rows(conn, prefix, report)
        # Loads nobody told us about: sequences behind explicit ids, derived columns a
        # replica-mode load left wrong (agency_rls.rls_policies.maintenance says why each matters).
        from agency_rls.rls_policies.maintenance import (
            MaintenanceError,
            advance_identity_sequences,
            repair_derived_columns,
        )

        try:
            report.sequences_advanced = advance_identity_sequences(conn)
            report.derived_rows_repaired = repair_derived_columns(conn)
        except MaintenanceError as error:
            raise ProvisionError(str(error)) from None
        principals = conn.execute(
            "SELECT role_name, kind, agency_id, insurer_id FROM public.principal ORDER BY role_name"
        ).fetchall()
        report.principals = len(principals)
        existing = _existing_roles(conn, roles, [row[0] for row in principals])
        recorded = _provisioned_mappings(conn)
        statements: list[sql.Composable] = []
        to_record: list[tuple[str, Mapping]] = []
        for role_name, kind, agency_id, insurer_id in principals:
            mapping = (kind, agency_id, insurer_id)
            restricted = kind == "agency" and insurer_id is not None
            wanted_groups = roles.groups_for(kind, restricted=restricted)
            role = existing.get(role_name)
            statements += _plan_principal_role(
                roles,
                role_name,
                wanted_groups,
                role,
                marker=principal_marker(database),
                login=login,
                report=report,
                server_version=conn.info.server_version,
            )
            if role is None or recorded.get(role_name) is None:
                to_record.append((role_name, mapping))
            elif recorded[role_name] != mapping:
                raise ProvisionError(
                    f"principal {role_name!r} was provisioned for {_describe(recorded[role_name])}, but its row "
                    f"now says {_describe(mapping)} (a row replaced behind provisioning's back); a principal is "
                    "never remapped in place: delete its row, run 'agency-rls provision --prune', insert the "
                    "new row, provision (nothing changed)"
                )
        statements += _record_mappings(to_record)
        if statements:
            conn.execute(sql.SQL(";\n").join(statements))
        statements = _plan_owned_objects(conn, roles, database, report)
        if statements:
            conn.execute(sql.SQL(";\n").join(statements))
    return report


Mapping = tuple[str, int | None, int | None]  # kind, agency_id, insurer_id


def _provisioned_mappings(conn: psycopg.Connection) -> dict[str, Mapping]:
    """What each principal role was provisioned for (agency_rls.provisioned_principal)."""
    rows = conn.execute(
        "SELECT role_name, kind, agency_id, insurer_id FROM agency_rls.provisioned_principal"
    ).fetchall()
    return {name: (kind, agency_id, insurer_id) for name, kind, agency_id, insurer_id in rows}


def _record_mappings(mappings: list[tuple[str, Mapping]]) -> list[sql.Composable]:
    """Statements recording that each role is provisioned for its mapping (replacing a stale record).

    Two statements whatever the count (10,000 principals provision in seconds)."""
    if not mappings:
        return []
    names = sql.Literal([name for name, _ in mappings])
    kinds = sql.Literal([kind for _, (kind, _, _) in mappings])
    agencies = sql.Literal([agency_id for _, (_, agency_id, _) in mappings])
    insurers = sql.Literal([insurer_id for _, (_, _, insurer_id) in mappings])
    return [
        sql.SQL("DELETE FROM agency_rls.provisioned_principal WHERE role_name = ANY ({}::text[])").format(
            names
        ),
        sql.SQL(
            "INSERT INTO agency_rls.provisioned_principal (role_name, kind, agency_id, insurer_id)"
            " SELECT * FROM unnest({}::text[], {}::text[], {}::bigint[], {}::bigint[])"
        ).format(names, kinds, agencies, insurers),
    ]


def _describe(mapping: Mapping) -> str:
    kind, agency_id, insurer_id = mapping
    if kind == "insurer":
        return f"insurer #{insurer_id}"
    return f"agency #{agency_id}" + (
        f" restricted to insurer #{insurer_id}" if insurer_id is not None else ""
    )


def _lock(conn: psycopg.Connection, timeout_ms: int) -> None:
    """Serialise provisioning on this database, and bound every lock wait of the transaction.

    The timeout stays for the whole transaction: a principal can hold locks provisioning needs
    later (an open transaction that altered its own role settings, or holds its large object),
    and an unbounded wait there would block provisioning as surely as the advisory lock did.
    """
    if conn.execute("SELECT to_regclass('agency_rls.provision_lock')").fetchone() == (None,):
        raise ProvisionError(
            "this database is at an older agency-rls revision: run 'agency-rls migrate' first"
        )
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(timeout_ms)}ms",))
    try:
        conn.execute("LOCK TABLE agency_rls.provision_lock IN SHARE UPDATE EXCLUSIVE MODE")
    except psycopg.errors.LockNotAvailable:
        raise ProvisionError(
            f"another 'agency-rls provision' is running on this database (agency_rls.provision_lock not "
            f"granted within {timeout_ms} ms); nothing changed, try again"
        ) from None


def _check_prefix_belongs_here(conn: psycopg.Connection, roles: ManagementRoles) -> str:
    """This database's name, after checking that the prefix's management roles are marked for it."""
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    database = str(row[0])
    for name, marker in conn.execute(
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles"
        " WHERE rolname = ANY (%s) ORDER BY rolname",
        (list(roles.all()),),
    ):
        if marker != management_marker(database):
            owner = marker_database(marker)
            raise ProvisionError(
                f"role {name!r} of prefix {roles.prefix!r} belongs to "
                + (f"database {owner!r}" if owner else "no database of this version")
                + f", not {database!r}; nothing changed"
            )
    return database


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
        # One statement, not one per row: 10,000 agencies provision in seconds (each row still
        # passes principal_guard.sql's row trigger).
        names, kinds, agency_ids, insurer_ids = (list(column) for column in zip(*missing, strict=True))
        conn.execute(
            "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])",
            (names, kinds, agency_ids, insurer_ids),
        )
        report.principal_rows_added.extend(names)


@dataclass(frozen=True)
class _ExistingRole:
    """What the catalog says about a role a principal row names."""

    oid: int
    powerful: bool  # superuser, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION
    can_login: bool
    marker: str | None
    member_of: frozenset[str]
    granted_to_backend: bool
    #: PostgreSQL 16+: groups it may SET ROLE to (a principal should not: see _grant_group)
    settable: frozenset[str] = frozenset()


def _existing_roles(
    conn: psycopg.Connection, roles: ManagementRoles, names: list[str]
) -> dict[str, _ExistingRole]:
    """One catalog query for every role named by a principal row."""
    settable = (
        "ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members AS m"
        " JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid WHERE m.member = r.oid AND m.set_option)"
        if conn.info.server_version >= 160000
        else "ARRAY[]::text[]"
    )
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
                       WHERE m.roleid = r.oid AND b.rolname = %s),
               """
        + settable
        + """
          FROM pg_catalog.pg_roles AS r
         WHERE r.rolname = ANY (%s)
        """,
        (roles.backend, names),
    ).fetchall()
    return {
        name: _ExistingRole(
            oid, powerful, can_login, marker, frozenset(member_of), to_backend, frozenset(settable_groups)
        )
        for name, oid, powerful, can_login, marker, member_of, to_backend, settable_groups in rows
    }


def _grant_group(group: str, principal: str, server_version: int) -> sql.Composable:
    """GRANT a group role to a principal; from PostgreSQL 16 WITH INHERIT TRUE, SET FALSE.

    The principal needs the group's privileges (and the policies naming the group) but never to
    act *as* the group: on 15 any member can SET ROLE to it and then set the group's role settings
    and default privileges, or own large objects in its name (a channel between principals).
    """
    grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(principal))
    if server_version >= 160000:
        return grant + sql.SQL(" WITH INHERIT TRUE, SET FALSE")
    return grant


def _plan_principal_role(
    roles: ManagementRoles,
    name: str,
    wanted_groups: tuple[str, ...],
    existing: _ExistingRole | None,
    *,
    marker: str,
    login: bool | None,
    report: ProvisionReport,
    server_version: int,
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
        statements.append(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(marker)))
        report.roles_created.append(name)
    else:
        if existing.oid < FIRST_NORMAL_OID or existing.powerful:
            raise ProvisionError(
                f"principal row {name!r} names a privileged or predefined role; refused (nothing changed)"
            )
        if existing.marker != marker:
            owner = marker_database(existing.marker)
            raise ProvisionError(
                f"principal row {name!r} names a role of database {owner!r}; roles belong to one database, "
                "refused (nothing changed)"
                if owner
                else f"principal row {name!r} names an existing role that agency-rls did not create for this "
                "database; refused (nothing changed)"
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
        elif login is False and existing.can_login:  # direct login is granted per run, never kept by default
            statements.append(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
    settable = existing.settable if existing is not None else frozenset()
    for group in roles.groups():
        if group in wanted_groups and (group not in member_of or group in settable):
            statements.append(_grant_group(group, name, server_version))
        elif group not in wanted_groups and group in member_of:
            statements.append(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
    if not granted_to_backend:
        statements.append(sql.SQL("GRANT {} TO {}").format(ident, sql.Identifier(roles.backend)))
    if statements and existing is not None:
        report.roles_updated.append(name)
    return statements


def _prune(conn: psycopg.Connection, roles: ManagementRoles, database: str, report: ProvisionReport) -> None:
    """Drop this database's principal roles whose principal row is gone, and what they own here."""
    stale = [
        name
        for (name,) in conn.execute(
            """
            SELECT DISTINCT r.rolname
              FROM pg_catalog.pg_auth_members AS m
              JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
              JOIN pg_catalog.pg_roles AS r ON r.oid = m.member
             WHERE g.rolname = ANY (%s)
               AND shobj_description(r.oid, 'pg_authid') = %s
               AND NOT EXISTS (SELECT FROM public.principal AS p WHERE p.role_name = r.rolname)
             ORDER BY r.rolname
            """,
            (list(roles.groups()), principal_marker(database)),
        )
    ]
    superuser = bool(conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0])  # type: ignore[index]
    for name in stale:
        conn.execute("DELETE FROM agency_rls.provisioned_principal WHERE role_name = %s", (name,))
        try:
            if not superuser:  # DROP OWNED needs the role's privileges; a CREATEROLE DBA may grant them
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("ALTER ROLE {0} NOLOGIN; DROP OWNED BY {0}; DROP ROLE {0}").format(
                    sql.Identifier(name)
                )
            )
        except psycopg.errors.DependentObjectsStillExist as error:
            raise ProvisionError(
                f"cannot drop stale principal role {name!r}: {' '.join(str(error).split())} (objects in another "
                "database: run DROP OWNED BY there); nothing changed"
            ) from None
    report.roles_dropped.extend(stale)


#: What this database's principals, group roles and backend own or are granted, and their settings.
#: A principal owns nothing and is granted nothing directly (its privileges come from its group);
#: the group roles and the backend own nothing. Every row is something a principal made.
_OWNED_QUERY = """
WITH ours AS (
    SELECT r.oid, r.rolname, true AS principal
      FROM pg_catalog.pg_roles AS r
     WHERE shobj_description(r.oid, 'pg_authid') = %(principal_marker)s
    UNION ALL
    SELECT r.oid, r.rolname, false
      FROM pg_catalog.pg_roles AS r
     WHERE r.rolname = ANY (%(kept)s)
       AND shobj_description(r.oid, 'pg_authid') = %(management_marker)s
)
SELECT ours.rolname, NULL::text AS setting_database,
       CASE d.deptype WHEN 'o' THEN 'owns ' WHEN 'a' THEN 'is granted privileges on ' ELSE 'is named by ' END
       || CASE WHEN db.datname = current_database() OR d.dbid = 0
               THEN pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
               ELSE 'an object in database ' || quote_ident(db.datname) END
  FROM pg_catalog.pg_shdepend AS d
  JOIN ours ON ours.oid = d.refobjid AND d.refclassid = 'pg_catalog.pg_authid'::regclass
  LEFT JOIN pg_catalog.pg_database AS db ON db.oid = d.dbid
 WHERE (ours.principal OR d.deptype = 'o' OR (d.dbid <> 0 AND db.datname <> current_database()))
   -- a principal's temporary objects live and die with its session: not reported, never dropped
   AND coalesce(CASE WHEN db.datname = current_database()
                     THEN (pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema END, '')
       !~ '^pg_temp_'
UNION ALL
SELECT ours.rolname, coalesce(db.datname, ''),
       'has role settings ' || array_to_string(s.setconfig, ', ')
       || CASE WHEN s.setdatabase = 0 THEN '' ELSE ' in database ' || quote_ident(db.datname) END
  FROM pg_catalog.pg_db_role_setting AS s
  JOIN ours ON ours.oid = s.setrole
  LEFT JOIN pg_catalog.pg_database AS db ON db.oid = s.setdatabase
 -- the backend's own setting, from the definition (roles.sql: its sessions never JIT-compile)
 WHERE NOT (ours.rolname = %(backend)s AND s.setdatabase = 0 AND s.setconfig = %(backend_settings)s::text[])
 ORDER BY 1, 3
"""


def _plan_owned_objects(
    conn: psycopg.Connection, roles: ManagementRoles, database: str, report: ProvisionReport
) -> list[sql.Composable]:
    """Report what principals made (``report.owned_objects``) and reset the role settings they set.

    Objects are reported, not dropped: a live principal's session may be using them, and DROP
    OWNED BY a group role would also revoke its grants and drop the policies naming it. ``--prune``
    drops what a stale principal owns here with the role; ``agency-rls downgrade`` drops it all.
    """
    rows = conn.execute(
        _OWNED_QUERY,
        {
            "principal_marker": principal_marker(database),
            "management_marker": management_marker(database),
            "kept": [*roles.groups(), roles.backend],
            "backend": roles.backend,
            "backend_settings": list(BACKEND_ROLE_SETTINGS),
        },
    ).fetchall()
    statements: list[sql.Composable] = []
    for name, setting_database, what in rows:
        report.owned_objects.append(f"{name} {what}")
        if setting_database is not None:
            scope = (
                sql.SQL(" IN DATABASE {}").format(sql.Identifier(setting_database))
                if setting_database
                else sql.SQL("")
            )
            statements.append(sql.SQL("ALTER ROLE {}{} RESET ALL").format(sql.Identifier(name), scope))
            report.settings_reset.append(name)
    return statements

"""What the connecting role needs for each command, checked up front and named in one line.

Why: a command that fails halfway through with "permission denied for schema agency_rls" or
"must be superuser to create bypassrls users" tells a DBA on managed PostgreSQL nothing about what
to ask for. Every transaction rolls back anyway; this says, before anything runs, which privilege
is missing.

What each needs (a superuser has all of it):
- installing a new database (from the current definition) and ``downgrade base`` from head:
  CREATEROLE, ownership of the database and CREATE on schema ``public`` (managed PostgreSQL gives
  the DBA all three);
- walking the recorded revisions (upgrading a database migrated before revision 0004, or
  downgrading to a revision below head): SUPERUSER, because revisions 0002 and 0004 create or
  alter a BYPASSRLS role;
- ``provision``: CREATEROLE, and membership in the table owner and the loader role
  (``<prefix>rls_owner``, ``<prefix>rls_loader``): it writes principal rows and the provisioning
  record, and repairs data under forced row level security. The DBA who installed has both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from agency_rls.rls_policies.names import ManagementRoles


class MissingPrivilege(PermissionError):
    """The connecting role lacks what a command needs; nothing was changed."""


@dataclass(frozen=True)
class ConnectingRole:
    """What matters about the connecting role, read in one query."""

    name: str
    superuser: bool
    createrole: bool
    owns_database: bool
    database: str
    creates_in_public: bool

    @classmethod
    def of(cls, conn: psycopg.Connection[Any]) -> ConnectingRole:
        row = conn.execute(
            """
            SELECT r.rolname, r.rolsuper, r.rolcreaterole,
                   pg_has_role(r.oid, d.datdba, 'USAGE'), d.datname,
                   has_schema_privilege(r.oid, 'public', 'CREATE')
              FROM pg_catalog.pg_roles AS r, pg_catalog.pg_database AS d
             WHERE r.rolname = current_user AND d.datname = current_database()
            """
        ).fetchone()
        assert row is not None
        return cls(*row)


def require_install(conn: psycopg.Connection[Any], what: str) -> None:
    """Installing from (or removing by) the current definition: CREATEROLE and the database's ownership."""
    role = ConnectingRole.of(conn)
    if role.superuser:
        return
    missing = [
        text
        for text, ok in (
            ("CREATEROLE", role.createrole),
            (f"ownership of database {role.database!r}", role.owns_database),
            # The tables live in public; a cluster moved by pg_upgrade can keep public owned by postgres.
            ("CREATE on schema public", role.creates_in_public),
        )
        if not ok
    ]
    if missing:
        raise MissingPrivilege(f"{what} needs {' and '.join(missing)} (or SUPERUSER); {role.name!r} lacks it")


def require_walk(conn: psycopg.Connection[Any], what: str) -> None:
    """Walking the recorded revisions: SUPERUSER (revisions 0002 and 0004 handle a BYPASSRLS role)."""
    role = ConnectingRole.of(conn)
    if not role.superuser:
        raise MissingPrivilege(
            f"{what} walks the recorded revisions, which create or alter a BYPASSRLS role (0002, 0004): it "
            f"needs SUPERUSER, and {role.name!r} is not one (a new database installs without it, and "
            "'downgrade base' from head removes everything without it)"
        )


def require_provision(conn: psycopg.Connection[Any], roles: ManagementRoles) -> None:
    """provision: CREATEROLE, and membership in the table owner and the loader role (or SUPERUSER)."""
    role = ConnectingRole.of(conn)
    if role.superuser:
        return
    member = {name: _is_member(conn, name) for name in (roles.owner, roles.loader)}
    missing = [
        text
        for text, ok in (
            ("CREATEROLE", role.createrole),
            *((f"membership in {name!r}", ok) for name, ok in member.items()),
        )
        if not ok
    ]
    if missing:
        raise MissingPrivilege(
            f"provision needs {' and '.join(missing)} (or SUPERUSER); {role.name!r} lacks it"
        )


def _is_member(conn: psycopg.Connection[Any], role: str) -> bool:
    """Whether the connecting role has the privileges of ``role`` (which must exist)."""
    row = conn.execute(
        "SELECT to_regrole(%s) IS NOT NULL AND pg_has_role(current_user, %s, 'USAGE')", (role, role)
    ).fetchone()
    return bool(row and row[0])


def no_schema_access(conn: psycopg.Connection[Any]) -> MissingPrivilege:
    """The refusal for a role that cannot even read this database's agency_rls schema."""
    role = ConnectingRole.of(conn)
    return MissingPrivilege(
        f"{role.name!r} cannot use this database's agency_rls schema: provision needs CREATEROLE and "
        "membership in the owner and loader roles <prefix>rls_owner, <prefix>rls_loader (or SUPERUSER)"
    )


def require_superuser_to_act_as_principals(conn: psycopg.Connection[Any], what: str) -> None:
    """``check`` and ``demo`` on a given server act as each principal with SET LOCAL ROLE from the
    connecting role; only a superuser can do that for principals it is not a member of."""
    role = ConnectingRole.of(conn)
    if not role.superuser:
        raise MissingPrivilege(
            f"{what} needs SUPERUSER: it acts as each principal with SET ROLE, and {role.name!r} is not a "
            "superuser (without --database-url it runs on a throwaway cluster of its own)"
        )

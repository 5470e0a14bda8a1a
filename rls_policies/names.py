"""Role names: the spec's defaults behind a configurable prefix.

Why a prefix: roles are cluster-wide, databases are not. Several databases (and every test
database) can share one cluster when each uses its own prefix. The prefix is stored in the
database (``agency_rls.role_prefix()``) by the first migration so every command agrees.

Why refuse rather than fix names: PostgreSQL truncates identifiers over 63 bytes with only a
NOTICE, and two long names could collapse into one role. Quotes, whitespace and control
characters are legal when quoted but make every later script, log line and review
error-prone; the spec asks for a clear error instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_IDENTIFIER_BYTES = 63
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
#: Characters never accepted in a role name (even though PostgreSQL would quote them).
_FORBIDDEN = re.compile(r"[\"'\\\s\x00-\x1f\x7f]")
#: The only form a principal role name may take (the principal table's guard checks the same).
_CANONICAL = re.compile(r"^[a-z_][a-z0-9_]*\Z")

#: Role comments that mark a role as this project's. Roles are cluster-wide and databases are
#: not: the marker names the one database a role belongs to (``agency-rls:principal
#: database=crm``), so a second database never adopts, alters or drops it. The bare markers are
#: what revisions before 0003 wrote; 0003 claims them for the database that migrates.
PRINCIPAL_MARKER = "agency-rls:principal"
MANAGEMENT_MARKER = "agency-rls:management"


def principal_marker(database: str) -> str:
    """The comment on a principal role that belongs to ``database``."""
    return f"{PRINCIPAL_MARKER} database={database}"


def management_marker(database: str) -> str:
    """The comment on a management role that belongs to ``database``."""
    return f"{MANAGEMENT_MARKER} database={database}"


def marker_database(marker: str | None) -> str | None:
    """The database a role's marker names (None for a bare marker or a role that is not ours)."""
    for kind in (PRINCIPAL_MARKER, MANAGEMENT_MARKER):
        if marker is not None and marker.startswith(f"{kind} database="):
            return marker[len(kind) + len(" database=") :]
    return None


class RoleNameError(ValueError):
    """A role name or prefix that the project refuses to create or adopt."""


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a short lower-case identifier, else raise."""
    if prefix and not PREFIX_PATTERN.match(prefix):
        raise RoleNameError(
            f"role prefix {prefix!r} is not allowed: use up to 20 lower-case letters, digits or _, "
            "starting with a letter (e.g. 'crm_')"
        )
    return prefix


def check_role_name(name: str) -> str:
    """Return ``name`` if the project may create a role of that name, else raise."""
    if not name:
        raise RoleNameError("role name is empty")
    if _FORBIDDEN.search(name):
        raise RoleNameError(
            f"role name {name!r} contains quotes, backslashes, whitespace or control characters"
        )
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise RoleNameError(
            f"role name {name!r} is {size} bytes; PostgreSQL would truncate it to {MAX_IDENTIFIER_BYTES}"
        )
    if name.startswith("pg_"):
        raise RoleNameError(f"role name {name!r} is reserved for predefined roles (pg_*)")
    if not _CANONICAL.match(name):
        raise RoleNameError(
            f"role name {name!r} is not canonical: use lower-case ASCII letters, digits and _, not starting "
            "with a digit (unquoted SQL folds case; look-alike and invisible characters read as another name)"
        )
    return name


def default_principal_role(prefix: str, kind: str, code: str) -> str:
    """``<prefix>agency_<code>`` or ``<prefix>insurer_<code>``, code lower-cased, checked."""
    if kind not in ("agency", "insurer"):
        raise ValueError(f"unknown principal kind {kind!r}")
    return check_role_name(f"{check_prefix(prefix)}{kind}_{code.lower()}")


@dataclass(frozen=True)
class ManagementRoles:
    """The project's own roles for one prefix."""

    prefix: str = ""

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def owner(self) -> str:
        """NOLOGIN owner of the tables."""
        return f"{self.prefix}rls_owner"

    @property
    def helper(self) -> str:
        """NOLOGIN owner of the scope functions, which read across scope through policies naming it; nobody is its member."""
        return f"{self.prefix}rls_helper"

    @property
    def backend(self) -> str:
        """LOGIN NOINHERIT role of application backends: member of every principal."""
        return f"{self.prefix}rls_backend"

    @property
    def agency_group(self) -> str:
        """Group of every agency principal."""
        return f"{self.prefix}rls_agency"

    @property
    def agency_writer_group(self) -> str:
        """Group of the unrestricted agency principals: the only ones with write privileges."""
        return f"{self.prefix}rls_agency_writer"

    @property
    def insurer_group(self) -> str:
        """Group of every insurer principal."""
        return f"{self.prefix}rls_insurer"

    @property
    def loader(self) -> str:
        """NOLOGIN role whose policies open every row to read and write: loads and maintenance.

        What a superuser gets by bypassing row level security, scoped to this database's tables and
        granted explicitly: the DBA (and ETL logins) join it. Never a principal's or the backend's.
        """
        return f"{self.prefix}rls_loader"

    def all(self) -> tuple[str, ...]:
        """Every management role, in creation order."""
        return (
            self.owner,
            self.helper,
            self.backend,
            self.agency_group,
            self.agency_writer_group,
            self.insurer_group,
            self.loader,
        )

    def groups(self) -> tuple[str, ...]:
        """The group roles principals join."""
        return (self.agency_group, self.agency_writer_group, self.insurer_group)

    def groups_for(self, kind: str, *, restricted: bool) -> tuple[str, ...]:
        """The group roles a principal joins: its kind's, and the writers' for unrestricted agencies."""
        if kind == "insurer":
            return (self.insurer_group,)
        return (self.agency_group,) if restricted else (self.agency_group, self.agency_writer_group)

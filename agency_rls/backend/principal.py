"""Whom a transaction acts for, and the checked switch of a backend connection to that principal.

Why the role is the identity: the row-level security policies read the role in force
(``current_user`` / the ``role`` setting), never a custom setting or a function argument (see
``scope-rules.md``, "Principals and roles"). A backend logs in as ``<prefix>rls_backend``, which is
``NOINHERIT`` and sees nothing by itself, and runs ``SET LOCAL ROLE <principal>`` as the first
statement of each transaction. ``LOCAL`` makes the switch end with the transaction, whatever
happens: commit, rollback, error or a dropped connection. Nothing outlives it, so the connection
can go back to a pool (or to PgBouncer in transaction mode) and serve another principal.

Why the checks, in this order, before any statement of the caller:

1. the name is refused locally when PostgreSQL could not hold it as given (quotes, control
   characters, more than 63 bytes: it would be *truncated* to another name), with
   ``agency_rls.rls_policies.names.check_role_name``, the same rule provisioning uses;
2. ``SET LOCAL ROLE`` itself is PostgreSQL's check that the role exists and that the *session*
   user is a member of it (``pg_has_role(session_user, role, 'MEMBER')``); doing the check with
   the statement that switches leaves no gap between checking and switching, and costs no extra
   round trip. Its two refusals have distinct SQLSTATEs (``22023``: no such role; ``42501``:
   not a member), which become ``UnknownPrincipal`` and ``NotAMember``;
3. after the switch, the role must see the ``principal`` row naming itself (a principal reads
   exactly that row; a group role, the backend role or any other role reachable from the
   backend does not, or may not read the table at all). Otherwise the role is not a principal,
   it would see nothing or something unintended, and ``NotAPrincipal`` is raised.

Every refusal is raised inside the caller's transaction before the caller's first statement; the
transaction context that opened it rolls it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from agency_rls.backend._dbapi import DBAPIConnection, run_autocommit
from agency_rls.rls_policies.names import (
    ManagementRoles,
    RoleNameError,
    check_role_name,
    default_principal_role,
)

__all__ = [
    "PREFIX_QUERY",
    "PRINCIPAL_ROW_QUERY",
    "InvalidPrincipalName",
    "NotAMember",
    "NotAPrincipal",
    "Principal",
    "PrincipalError",
    "PrincipalKind",
    "UnknownPrincipal",
    "not_a_principal",
    "principal_from",
    "read_role_prefix",
    "refusal_for",
    "set_local_principal",
    "set_local_role_statement",
]

PrincipalKind = Literal["agency", "insurer", "role"]

#: The role prefix the database was migrated with; ``agency_rls.role_prefix()`` is executable by PUBLIC.
PREFIX_QUERY: Final = "SELECT agency_rls.role_prefix()"

#: Run right after ``SET LOCAL ROLE``: true only for a principal (it reads the row naming its role).
#: The policy on ``principal`` adds ``role_name = current_user``; the role name is compared here as
#: ``current_setting('role')`` (text, the role just set), which can use the primary key index,
#: where a comparison with ``current_user`` (type name, collation "C") scans the whole table.
PRINCIPAL_ROW_QUERY: Final = (
    "SELECT EXISTS (SELECT FROM public.principal WHERE role_name = pg_catalog.current_setting('role'))"
)

_UNKNOWN_ROLE_SQLSTATE: Final = "22023"  # invalid_parameter_value: role "…" does not exist
_NOT_A_MEMBER_SQLSTATE: Final = "42501"  # insufficient_privilege: permission denied to set role "…"


class PrincipalError(Exception):
    """The backend cannot act as this principal; raised before any statement of the caller runs.

    ``principal`` is the role name (or, when no role name could be formed, the code as given).
    """

    def __init__(self, message: str, *, principal: str) -> None:
        super().__init__(message)
        self.principal = principal


class UnknownPrincipal(PrincipalError, LookupError):
    """No role of that name exists (e.g. an unknown agency or insurer code)."""


class InvalidPrincipalName(UnknownPrincipal, ValueError):
    """A name no principal can have: empty, quotes, whitespace, control characters, over 63 bytes, pg_*.

    A subclass of ``UnknownPrincipal`` because, to a caller mapping user input to a principal,
    both mean the same: there is no such principal.
    """


class NotAMember(PrincipalError, PermissionError):
    """The role exists but the session user (the backend login role) is not a member of it.

    Usually a principal that was created after the last ``agency-rls provision`` (provisioning
    grants every principal role to the backend), or a role that is not the project's at all.
    """


class NotAPrincipal(PrincipalError):
    """The role is reachable but is not a principal: it does not see a ``principal`` row naming itself.

    For example a group role (``<prefix>rls_agency``), the backend role itself, or a role whose
    ``principal`` row was deleted.
    """


@dataclass(frozen=True)
class Principal:
    """Whom to act for: an agency or insurer by its code, or a principal by its role name.

    Codes map to the default role names of the spec, ``<prefix>agency_<code>`` and
    ``<prefix>insurer_<code>`` (code lower-cased); the prefix is read from the database, so a
    code is resolved only once a connection is at hand (``role_name``). A role name is taken as
    is: principals a DBA added by hand (e.g. seconded staff restricted to one insurer) have no
    code. Names are validated on construction, before any connection is used.
    """

    kind: PrincipalKind
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("agency", "insurer", "role"):
            raise ValueError(f"unknown principal kind {self.kind!r}")
        if not isinstance(self.name, str):
            raise TypeError(f"a principal {self.kind} must be given as str, not {type(self.name).__name__}")
        if self.kind != "role" and not self.name:
            raise InvalidPrincipalName(f"empty {self.kind} code", principal=self.name)
        # Without the prefix the name is shorter than the final role name; ``role_name`` checks again.
        candidate = self.name if self.kind == "role" else f"{self.kind}_{self.name.lower()}"
        try:
            check_role_name(candidate)
        except RoleNameError as error:
            raise InvalidPrincipalName(f"{self}: {error}", principal=self.name) from None

    @classmethod
    def agency(cls, code: str) -> Principal:
        """The default principal of the agency with this code (``<prefix>agency_<code lower>``)."""
        return cls("agency", code)

    @classmethod
    def insurer(cls, code: str) -> Principal:
        """The default principal of the insurer with this code (``<prefix>insurer_<code lower>``)."""
        return cls("insurer", code)

    @classmethod
    def role(cls, role_name: str) -> Principal:
        """A principal by its full role name, exactly as in ``principal.role_name``."""
        return cls("role", role_name)

    @property
    def needs_prefix(self) -> bool:
        """True when the role name depends on the database's role prefix (agency and insurer codes)."""
        return self.kind != "role"

    def role_name(self, prefix: str) -> str:
        """The role to ``SET LOCAL ROLE`` to, given the database's role prefix; checked like provisioning."""
        if self.kind == "role":
            return self.name
        try:
            return default_principal_role(prefix, self.kind, self.name)
        except RoleNameError as error:
            raise InvalidPrincipalName(f"{self}: {error}", principal=self.name) from None

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


def principal_from(
    principal: Principal | None = None,
    *,
    agency: str | None = None,
    insurer: str | None = None,
    role: str | None = None,
) -> Principal:
    """Exactly one of ``principal``, ``agency=``, ``insurer=``, ``role=`` as a ``Principal``.

    Why keywords: ``acting_as(agency="W11")`` cannot be misread as a role name or an insurer
    code, and a plain string is refused instead of being guessed at.
    """
    given = [value for value in (principal, agency, insurer, role) if value is not None]
    if len(given) != 1:
        raise TypeError("give exactly one of: a Principal, agency=<code>, insurer=<code>, role=<role name>")
    if principal is not None:
        if not isinstance(principal, Principal):
            raise TypeError(
                f"expected a Principal, got {type(principal).__name__}; use agency=, insurer= or role="
            )
        return principal
    if agency is not None:
        return Principal.agency(agency)
    if insurer is not None:
        return Principal.insurer(insurer)
    assert role is not None
    return Principal.role(role)


def set_local_role_statement(role_name: str) -> sql.Composed:
    """``SET LOCAL ROLE "<role_name>"``, the name quoted by psycopg (never interpolated as text)."""
    return sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role_name))


#: The group roles' names without their prefix (``rls_agency``, ``rls_agency_writer``, ``rls_insurer``).
_GROUP_SUFFIXES: tuple[str, ...] = ManagementRoles("").groups()


def refusal_for(role_name: str, error: BaseException) -> PrincipalError | None:
    """The typed refusal for an error raised by ``SET LOCAL ROLE``, or None for any other error.

    ``error`` may be a psycopg error or a wrapper carrying one in ``orig`` (SQLAlchemy's
    ``DBAPIError``). Connection failures and the like return None and propagate unchanged.
    """
    original = getattr(error, "orig", None) or error
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate == _UNKNOWN_ROLE_SQLSTATE:
        return UnknownPrincipal(f"no role {role_name!r}: unknown principal", principal=role_name)
    if sqlstate == _NOT_A_MEMBER_SQLSTATE:
        if role_name.endswith(_GROUP_SUFFIXES):
            # From PostgreSQL 16 principals join their groups WITH SET FALSE, so the backend cannot
            # switch to a group role at all: that is a role that is not a principal, not a missing
            # membership. (Named like a group role of some prefix; the spec's principal names
            # are agency_<code> / insurer_<code> or a DBA's own.)
            return NotAPrincipal(
                f"role {role_name!r} is a group role of agency-rls, not a principal", principal=role_name
            )
        return NotAMember(
            f"the backend login role is not a member of {role_name!r} (run 'agency-rls provision'?)",
            principal=role_name,
        )
    return None


def not_a_principal(role_name: str) -> NotAPrincipal:
    """The refusal for a role that passed ``SET LOCAL ROLE`` but does not see its ``principal`` row."""
    return NotAPrincipal(
        f"role {role_name!r} is not a principal (it sees no principal row naming itself)", principal=role_name
    )


def set_local_principal(conn: psycopg.Connection[Any], role_name: str) -> None:
    """Switch ``conn``'s open transaction to ``role_name`` and check that it is a principal.

    Call it first inside a transaction the caller opened explicitly (``with conn.transaction():``),
    so that no statement runs as the backend before it and the switch ends with that transaction.
    On a refusal the typed ``PrincipalError`` is raised with the transaction aborted; leaving the
    caller's transaction block rolls it back. ``role_name`` is checked like ``Principal.role``.

    ``SET LOCAL ROLE`` is sent unprepared: one statement per role name would otherwise fill
    psycopg's prepared-statement cache (``prepare_threshold``) and push the application's own
    queries out of it.
    """
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise psycopg.ProgrammingError(
            "set_local_principal() must run first inside an open transaction (SET LOCAL has no effect "
            f"outside one); the connection is {TransactionStatus(conn.info.transaction_status).name}"
        )
    try:
        check_role_name(role_name)
    except RoleNameError as error:
        raise InvalidPrincipalName(f"role {role_name!r}: {error}", principal=role_name) from None
    try:
        conn.execute(set_local_role_statement(role_name), prepare=False)
    except psycopg.Error as error:
        refused = refusal_for(role_name, error)
        if refused is None:
            raise
        raise refused from error
    try:
        row = conn.execute(PRINCIPAL_ROW_QUERY).fetchone()
    except psycopg.errors.InsufficientPrivilege as error:
        raise not_a_principal(role_name) from error
    if row is None or row[0] is not True:
        raise not_a_principal(role_name)


def read_role_prefix(conn: DBAPIConnection) -> str:
    """The database's role prefix, read outside any transaction on a backend connection.

    ``agency_rls.role_prefix()`` is the source of truth; the migration grants the backend role
    USAGE on ``agency_rls`` so that it can call it. A wrong prefix could only name a role that the
    checked ``SET LOCAL ROLE`` then refuses.
    """
    rows = run_autocommit(conn, PREFIX_QUERY, fetch=True)
    return str(rows[0][0])

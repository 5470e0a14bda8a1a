"""The current definition of every rule, as reviewable SQL files rendered for one prefix.

The SQL under ``rls_policies/sql/`` is written for a DBA to read. Role names appear as
``{{owner}}`` (a quoted identifier) or ``{{owner_name}}`` (a string literal) and
``{{prefix_literal}}``; :func:`render` fills them in with psycopg's quoting, so no name is
ever pasted into SQL unquoted.

Migrations record the SQL they applied at their revision (a frozen copy under
``migrations/versions/``); this module is what new migrations copy from and what drift
checks compare against.
"""

from __future__ import annotations

import re
from pathlib import Path

from agency_rls.rls_policies.names import ManagementRoles
from psycopg import sql

SQL_DIR = Path(__file__).parent / "sql"

#: Files applied, in order, to secure the schema; ``teardown.sql`` undoes them.
SECURITY_FILES: tuple[str, ...] = (
    "roles.sql",
    "scope_functions.sql",
    "principal_guard.sql",
    "derived_columns.sql",
    "scope_columns.sql",
    "policies.sql",
    "grants.sql",
)
TEARDOWN_FILE = "teardown.sql"

#: Columns and indexes the security definition adds to the domain tables (``scope_columns.sql``:
#: handler links copied onto rows so that policies are index conditions). They are not part of
#: the domain schema (``agency_rls.schema``): principals never select the customer ones, and
#: loaders never write them (triggers do).
SCOPE_COPY_COLUMNS: dict[str, tuple[str, ...]] = {
    "contract": ("handler_agency_ids", "handler_windows"),
    "customer": ("handler_agency_ids", "handler_insurer_ids", "handler_windows", "party_insurer_ids"),
}
SCOPE_INDEXES: tuple[str, ...] = (
    "contract_handler_agency_ids_idx",
    "customer_handler_agency_ids_idx",
    "notice_addressee_created_idx",
    "principal_role_name_lower_idx",  # principal_guard.sql: the twin check's lookups
)

#: The backend role's own settings, as roles.sql sets them (ALTER ROLE ... SET): provision and lint
#: accept exactly these on it and report any other role setting of the project's roles.
BACKEND_ROLE_SETTINGS: tuple[str, ...] = ("jit=off",)

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

#: The management roles a template names: ``{{owner}}`` (identifier) and ``{{owner_name}}`` (literal) ….
ROLE_KEYS: tuple[str, ...] = (
    "owner",
    "helper",
    "backend",
    "agency_group",
    "agency_writer_group",
    "insurer_group",
    "loader",
)


def placeholders(roles: ManagementRoles) -> dict[str, str]:
    """Every placeholder's SQL text for ``roles``."""
    values: dict[str, str] = {"prefix_literal": sql.Literal(roles.prefix).as_string(None)}
    for key in ROLE_KEYS:
        name = getattr(roles, key)
        values[key] = sql.Identifier(name).as_string(None)
        values[f"{key}_name"] = sql.Literal(name).as_string(None)
    return values


def render(template: str, roles: ManagementRoles) -> str:
    """Fill ``{{…}}`` placeholders of ``template``; an unknown placeholder is an error."""
    values = placeholders(roles)

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"unknown placeholder {{{{{key}}}}} in agency-rls SQL")
        return values[key]

    return _PLACEHOLDER.sub(substitute, template)


def read_template(name: str, sql_dir: Path | None = None) -> str:
    """The current text of one SQL file of the definition (``sql_dir``: another copy of ``sql/``)."""
    return ((sql_dir or SQL_DIR) / name).read_text(encoding="utf-8")


def security_template(sql_dir: Path | None = None) -> str:
    """All security SQL files, concatenated in application order, unrendered.

    ``sql_dir``: a copy of ``sql/`` to read instead (``agency-rls revision --definition``, and the
    tests that change a rule in a scratch copy).
    """
    return "\n".join(f"-- ==== {name} ====\n{read_template(name, sql_dir)}" for name in SECURITY_FILES)


def main(argv: list[str] | None = None) -> None:
    """``python -m agency_rls.rls_policies.definition [--teardown]``: print the current definition, unrendered.

    What a new revision records beside itself (``migrations/versions/<rev>_*.sql``); the
    placeholders are filled in with the database's role prefix when the revision runs.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m agency_rls.rls_policies.definition", description=main.__doc__
    )
    parser.add_argument("--teardown", action="store_true", help="print teardown.sql instead")
    args = parser.parse_args(argv)
    print(read_template(TEARDOWN_FILE) if args.teardown else security_template(), end="")


if __name__ == "__main__":
    main()

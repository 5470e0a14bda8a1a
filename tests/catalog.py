"""Catalog snapshots: what a database (and the cluster's roles) look like, for before/after checks."""

from __future__ import annotations

import psycopg

SNAPSHOT_QUERIES: dict[str, str] = {
    "schemas": """
        SELECT nspname, nspowner::regrole::text, coalesce(nspacl::text, '')
          FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 1""",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, c.relowner::regrole::text, coalesce(c.relacl::text, ''),
               c.relrowsecurity, c.relforcerowsecurity
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1, 2""",
    "functions": """
        SELECT p.oid::regprocedure::text, p.proowner::regrole::text, coalesce(p.proacl::text, '')
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1""",
    "types": """
        SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1""",
    "policies": "SELECT schemaname, tablename, policyname FROM pg_policies ORDER BY 1, 2, 3",
    "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    "database_acl": """
        SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = current_database()""",
    "default_acl": "SELECT defaclrole::regrole::text, defaclobjtype FROM pg_default_acl ORDER BY 1, 2",
}


def snapshot(conn: psycopg.Connection, role_prefix: str) -> dict[str, list[tuple[object, ...]]]:
    """Everything in SNAPSHOT_QUERIES plus the cluster roles whose names start with ``role_prefix``."""
    result = {name: conn.execute(query).fetchall() for name, query in SNAPSHOT_QUERIES.items()}  # type: ignore[call-overload]
    result["roles"] = conn.execute(
        "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1", (role_prefix,)
    ).fetchall()
    return result

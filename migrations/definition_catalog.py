"""The catalog of everything the security definition makes, for comparing two databases.

Two databases hold the same definition when these queries return the same rows once each one's
role prefix and database name are written as ``<p>`` and ``<db>``: policies as the server renders
them, function bodies and settings, triggers, constraints, indexes, grants, RLS flags, comments,
roles, their attributes, markers and memberships. The drift test compares a database migrated
through every revision with one built from ``rls_policies/sql/``; ``agency-rls revision`` checks
with the same queries that the SQL it wrote moves one to the other and back.
"""

from __future__ import annotations

from typing import Any

import psycopg


def acl(column: str) -> str:
    """An aclitem[] as text with its items sorted: the order of grants made is not a difference."""
    return f"(SELECT coalesce(string_agg(x::text, ',' ORDER BY x::text), '') FROM unnest({column}) AS x)"


DEFINITION_QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, n.nspowner::regrole::text, {acl("n.nspacl")},
               coalesce(obj_description(n.oid, 'pg_namespace'), '')
          FROM pg_namespace AS n WHERE n.nspname IN ('public', 'agency_rls') ORDER BY 1""",
    "relations": f"""
        SELECT c.oid::regclass::text, c.relkind, c.relowner::regrole::text, {acl("c.relacl")},
               c.relrowsecurity, c.relforcerowsecurity, coalesce(obj_description(c.oid, 'pg_class'), '')
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'agency_rls') AND c.relname <> 'alembic_version' ORDER BY 1""",
    "columns": """
        SELECT a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(d.adbin, d.adrelid), '')
          FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname IN ('public', 'agency_rls') AND c.relkind IN ('r', 'p') AND a.attnum > 0
           AND NOT a.attisdropped AND c.relname <> 'alembic_version' ORDER BY 1, 2""",
    "column_acl": f"""
        SELECT a.attrelid::regclass::text, a.attname, {acl("a.attacl")}
          FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'agency_rls') AND a.attacl IS NOT NULL ORDER BY 1, 2""",
    "functions": f"""
        SELECT p.oid::regprocedure::text, p.proowner::regrole::text, {acl("p.proacl")},
               pg_get_function_result(p.oid), p.prosecdef, p.provolatile, p.proparallel, p.prorows,
               coalesce(p.proconfig::text, ''), p.prosrc, coalesce(obj_description(p.oid, 'pg_proc'), '')
          FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('public', 'agency_rls') ORDER BY 1""",
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, coalesce(qual, ''),
               coalesce(with_check, '')
          FROM pg_policies ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
          FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname <> 'alembic_version' ORDER BY 1""",
    "roles": """
        SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
               r.rolreplication, r.rolbypassrls, coalesce(shobj_description(r.oid, 'pg_authid'), '')
          FROM pg_roles AS r WHERE starts_with(r.rolname, %(prefix)s) ORDER BY 1""",
    "memberships": """
        SELECT g.rolname, m.rolname, a.admin_option
          FROM pg_auth_members AS a
          JOIN pg_roles AS g ON g.oid = a.roleid JOIN pg_roles AS m ON m.oid = a.member
         WHERE starts_with(g.rolname, %(prefix)s) OR starts_with(m.rolname, %(prefix)s) ORDER BY 1, 2""",
}

Catalog = dict[str, list[tuple[object, ...]]]


def definition_catalog(conn: psycopg.Connection[Any], prefix: str) -> Catalog:
    """DEFINITION_QUERIES on ``conn``, with the role prefix and the database name written as <p> and <db>."""
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    database = str(row[0])

    def normal(value: object) -> object:
        if not isinstance(value, str):
            return value
        return (value.replace(prefix, "<p>") if prefix else value).replace(database, "<db>")

    return {
        name: [tuple(normal(v) for v in row) for row in conn.execute(query, {"prefix": prefix}).fetchall()]  # type: ignore[call-overload]
        for name, query in DEFINITION_QUERIES.items()
    }


def catalog_differences(left: Catalog, right: Catalog) -> list[str]:
    """The parts of DEFINITION_QUERIES where two catalogs differ (empty when they are the same)."""
    return [part for part in DEFINITION_QUERIES if left[part] != right[part]]

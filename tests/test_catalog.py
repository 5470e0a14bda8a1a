"""The catalog, read directly: RLS forced everywhere, role attributes, definer functions, grants.

These guard the threats that no row-level query can show (threats.md 1, 2, 3, 9, 11, 12, 26–29,
31, 33): a later migration that adds a table without RLS, a role with too much power, a definer
function without a pinned search_path all fail here.
"""

from __future__ import annotations

import psycopg
import pytest
from agency_rls.rls_policies.names import ManagementRoles, management_marker, principal_marker
from agency_rls.schema import PROTECTED_TABLES

from tests.support import World

NOT_PROTECTED = {"insurer", "alembic_version"}


@pytest.fixture(scope="module")
def admin(superuser: psycopg.Connection) -> psycopg.Connection:
    """The catalog is read as the superuser."""
    return superuser


def application_roles(admin: psycopg.Connection, world: World) -> list[str]:
    """Every principal role and the backend role of this world."""
    principals = [row[0] for row in admin.execute("SELECT role_name FROM public.principal")]
    assert principals, "the world has principals"
    return [*principals, world.role("rls_backend")]


def test_every_protected_table_has_rls_enabled_and_forced(admin: psycopg.Connection) -> None:
    """Attack 26 and 31: any table in public other than insurer must have RLS enabled and forced."""
    rows = admin.execute(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
          FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
         ORDER BY 1"""
    ).fetchall()
    tables = {name: (enabled, forced) for name, enabled, forced in rows}
    assert set(PROTECTED_TABLES) <= set(tables)
    for name, (enabled, forced) in tables.items():
        if name not in NOT_PROTECTED:
            assert (enabled, forced) == (True, True), f"{name} must have RLS enabled and forced"


def test_rls_and_policies_agree_in_both_directions(admin: psycopg.Connection) -> None:
    """Threat 11: RLS on with no policy denies all; policies with RLS off protect nothing."""
    rows = admin.execute(
        """
        SELECT c.relname, c.relrowsecurity, count(p.polname)
          FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
         GROUP BY 1, 2"""
    ).fetchall()
    for name, enabled, policies in rows:
        if name in NOT_PROTECTED:
            assert policies == 0
        else:
            assert enabled and policies > 0, name


def test_no_partitions_or_child_tables_escape_the_policies(admin: psycopg.Connection) -> None:
    """Threat 10: children of protected tables are not covered by their parents' policies."""
    assert admin.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent::regclass::text = ANY (%s)",
        ([f"{t}" for t in PROTECTED_TABLES],),
    ).fetchone() == (0,)


def test_policies_name_roles_and_never_admit_everything(admin: psycopg.Connection, world: World) -> None:
    """Attack 33: no policy for PUBLIC; none USING (true) for a role a principal or the backend acts
    as: every policy applies only to the group roles, except the scope functions' SELECT policies,
    which name only their owner (NOLOGIN, nobody's member: it reads across scope without
    BYPASSRLS), and the loader's, which name only the loader (NOLOGIN; the DBA joins it to load)."""
    roles = ManagementRoles(world.prefix)
    rows = admin.execute(
        """
        SELECT tablename, policyname, roles::text[], coalesce(qual, ''), coalesce(with_check, ''), permissive, cmd
          FROM pg_policies WHERE schemaname = 'public'"""
    ).fetchall()
    assert rows
    helper_tables, loader_tables = set(), set()
    for table, policy, policy_roles, qual, check, permissive, cmd in rows:
        assert "public" not in policy_roles, policy
        if policy == "loader_all":
            assert (policy_roles, qual, check, permissive, cmd) == (
                [roles.loader],
                "true",
                "true",
                "PERMISSIVE",
                "ALL",
            )
            loader_tables.add(table)
            continue
        if policy == "scope_functions_read":
            assert (policy_roles, qual, check, permissive, cmd) == (
                [roles.helper],
                "true",
                "",
                "PERMISSIVE",
                "SELECT",
            )
            helper_tables.add(table)
            continue
        if policy == "scope_copies_refresh":  # its triggers rewrite the copied handler links
            assert table in ("contract", "customer"), table
            assert (policy_roles, qual, check, permissive, cmd) == (
                [roles.helper],
                "true",
                "true",
                "PERMISSIVE",
                "UPDATE",
            )
            continue
        assert set(policy_roles) <= set(roles.groups()), policy
        assert qual.strip("() ").lower() != "true" and check.strip("() ").lower() != "true", policy
    # Exactly the tables the scope functions read (SELECT granted to the helper), no more.
    granted = admin.execute(
        "SELECT table_name FROM information_schema.role_table_grants"
        " WHERE grantee = %s AND privilege_type = 'SELECT' AND table_schema = 'public'",
        (roles.helper,),
    ).fetchall()
    assert helper_tables == {t for (t,) in granted} - {"insurer"}
    assert loader_tables == set(PROTECTED_TABLES)  # every table with row level security
    assert admin.execute(
        "SELECT rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s", (roles.helper,)
    ).fetchone() == (False, False)
    assert admin.execute(
        "SELECT count(*) FROM pg_auth_members WHERE roleid = %s::regrole", (roles.helper,)
    ).fetchone() == (0,)
    restrictive = {
        (t, p) for t, p, _roles, _qual, _check, permissive, _cmd in rows if permissive == "RESTRICTIVE"
    }
    assert ("contract", "contract_entrustment_guard") in restrictive
    assert ("contract_handler", "contract_handler_entrustment_guard") in restrictive
    assert ("notice", "notice_entrustment_guard") in restrictive


def test_application_roles_have_no_dangerous_attributes(admin: psycopg.Connection, world: World) -> None:
    """Attack 27: no principal or backend role is superuser, BYPASSRLS, CREATEROLE, CREATEDB, REPLICATION."""
    for role in application_roles(admin, world):
        row = admin.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles"
            " WHERE rolname = %s",
            (role,),
        ).fetchone()
        assert row == (False, False, False, False, False), role


def test_memberships_reach_only_the_projects_own_unprivileged_roles(
    admin: psycopg.Connection, world: World
) -> None:
    """Attack 27, by membership: every role reachable from an application role is ours and harmless."""
    roles = ManagementRoles(world.prefix)
    for role in application_roles(admin, world):
        reachable = admin.execute(
            """
            WITH RECURSIVE up(oid) AS (
                SELECT oid FROM pg_roles WHERE rolname = %s
                UNION
                SELECT m.roleid FROM pg_auth_members m JOIN up ON m.member = up.oid
            )
            SELECT r.rolname, r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication,
                   shobj_description(r.oid, 'pg_authid')
              FROM up JOIN pg_roles r ON r.oid = up.oid""",
            (role,),
        ).fetchall()
        for name, powerful, marker in reachable:
            assert not powerful, f"{role} reaches {name}"
            assert marker in (principal_marker(world.db.name), management_marker(world.db.name)), (
                f"{role} reaches foreign role {name}"
            )
            assert name not in (roles.owner, roles.helper), f"{role} reaches {name}"


def test_application_roles_own_nothing(admin: psycopg.Connection, world: World) -> None:
    """Attack 27: an owner skips policies unless forced; no application role owns anything."""
    for role in application_roles(admin, world):
        owned = admin.execute(
            """
            SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid
             WHERE r.rolname = %s AND d.deptype = 'o'""",
            (role,),
        ).fetchone()
        assert owned == (0,), role


def test_security_definer_functions_pin_search_path_and_are_not_public(admin: psycopg.Connection) -> None:
    """Attack 29 (threat 3)."""
    rows = admin.execute(
        """
        SELECT p.oid::regprocedure::text, coalesce(p.proconfig, '{}'),
               has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
          FROM pg_proc p
         WHERE p.prosecdef AND p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)"""
    ).fetchall()
    assert rows, "the scope functions are SECURITY DEFINER"
    for name, config, public_exec in rows:
        assert any(c.startswith("search_path=pg_catalog") and c.endswith("pg_temp") for c in config), name
        assert not public_exec, name


def test_no_function_a_principal_can_execute_takes_an_argument(
    admin: psycopg.Connection, world: World
) -> None:
    """Identity is never an argument: every function a principal may call takes none."""
    roles = ManagementRoles(world.prefix)
    rows = admin.execute(
        """
        SELECT p.oid::regprocedure::text
          FROM pg_proc p
         WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
           AND p.pronargs > 0
           AND (has_function_privilege(%s, p.oid, 'EXECUTE') OR has_function_privilege(%s, p.oid, 'EXECUTE')
                OR has_function_privilege(%s, p.oid, 'EXECUTE'))""",
        roles.groups(),
    ).fetchall()
    assert rows == []


def test_views_over_protected_tables_are_security_invoker(admin: psycopg.Connection) -> None:
    """Attack 28: a view runs with its owner's rights unless security_invoker."""
    rows = admin.execute(
        """
        SELECT DISTINCT v.oid::regclass::text
          FROM pg_class v
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
          JOIN pg_rewrite rw ON rw.oid = d.objid AND rw.ev_class = v.oid
         WHERE v.relkind IN ('v', 'm') AND d.refobjid::regclass::text = ANY (%s)
           AND NOT coalesce('security_invoker=true' = ANY (v.reloptions), false)""",
        (list(PROTECTED_TABLES),),
    ).fetchall()
    assert rows == []


def test_principals_get_no_create_delete_truncate_references_or_trigger(
    admin: psycopg.Connection, world: World
) -> None:
    """Attacks 15 and 34, and the write rules: no CREATE on any schema, no destructive table privilege."""
    schemas = [
        r[0] for r in admin.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_toast%'")
    ]
    tables = [
        r[0]
        for r in admin.execute(
            "SELECT oid::regclass::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        )
    ]
    for role in application_roles(admin, world):
        for schema in schemas:
            assert not admin.execute(
                "SELECT has_schema_privilege(%s, %s, 'CREATE')", (role, schema)
            ).fetchone()[0], (role, schema)
        for table in tables:
            for privilege in ("DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
                assert not admin.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
                ).fetchone()[0], (role, table, privilege)


def test_the_server_is_at_or_above_the_row_security_cve_fixes(admin: psycopg.Connection) -> None:
    """Attack 36: threats.md lists the fixed minors; 15.14 fixes the newest (CVE-2025-8713)."""
    version = admin.execute("SHOW server_version_num").fetchone()[0]
    major, minor = int(version) // 10000, int(version) % 10000
    minimum = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
    if major in minimum:
        assert minor >= minimum[major], f"PostgreSQL {major}.{minor} is below the row security CVE fixes"
    else:
        assert major >= 18, f"PostgreSQL {major} is unsupported"

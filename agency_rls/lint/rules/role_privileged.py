"""A principal, group or the backend role that bypasses row level security, directly or through membership.

Superusers and BYPASSRLS roles skip every policy; REPLICATION reads the raw change stream;
CREATEROLE can grant itself other roles; the tables' owner can switch row level security off;
the scope functions' owner and the loader read every row through policies that name them alone.
A member of any of these can SET ROLE to it (threats.md 1, attack 27). Every role reachable from
an application role through pg_auth_members is checked; a danger reached through another
application role (a principal through its group) is reported once, on the role closest to it.

Bad::

    GRANT crm_rls_owner TO crm_agency_w11;
    ALTER ROLE crm_rls_backend BYPASSRLS;

Good::

    REVOKE crm_rls_owner FROM crm_agency_w11;
    ALTER ROLE crm_rls_backend NOBYPASSRLS;   -- principals reach only their group roles
"""

from agency_rls.lint.catalog import PREAMBLE

ID = "role_privileged"
LEVEL = "error"
TITLE = "Application role that bypasses row level security"

SQL = f"""{PREAMBLE},
owner_of_protected AS (
    SELECT t.oid AS table_oid, c.relowner
      FROM protected_table AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.oid
),
danger AS (
    SELECT reach.app_name, reach.path, r.rolname::text AS reached,
           pg_catalog.concat_ws(', ',
               CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
               CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
               CASE WHEN r.rolreplication THEN 'REPLICATION' END,
               CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
               (SELECT 'owner of ' || pg_catalog.string_agg(o.table_oid::regclass::text, ', ' ORDER BY 1)
                  FROM owner_of_protected AS o WHERE o.relowner = r.oid),
               CASE WHEN r.rolname = %(helper)s THEN 'the scope functions'' owner (reads every row)' END,
               CASE WHEN r.rolname = %(loader)s THEN 'the loader (reads and writes every row)' END) AS what
      FROM application_reach AS reach
      JOIN pg_catalog.pg_roles AS r ON r.oid = reach.oid
)
SELECT NULL AS level,
       'role ' || pg_catalog.quote_ident(d.app_name) AS object,
       'role ' || pg_catalog.quote_ident(d.app_name)
       || CASE WHEN pg_catalog.cardinality(d.path) = 1 THEN ' is '
               ELSE ' reaches ' || pg_catalog.quote_ident(d.reached) || ' (' || pg_catalog.array_to_string(d.path, ' -> ')
                    || '), which is ' END
       || d.what AS message,
       CASE WHEN pg_catalog.cardinality(d.path) = 1
            THEN 'ALTER ROLE ' || pg_catalog.quote_ident(d.app_name)
                 || ' NOSUPERUSER NOBYPASSRLS NOREPLICATION NOCREATEROLE; give owned tables to the owner role'
            ELSE 'REVOKE ' || pg_catalog.quote_ident(d.path[pg_catalog.cardinality(d.path)]) || ' FROM '
                 || pg_catalog.quote_ident(d.path[pg_catalog.cardinality(d.path) - 1])
       END AS remedy
  FROM danger AS d
 WHERE d.what <> ''
   -- reported once, on the application role closest to the danger (the group, not each principal)
   AND NOT EXISTS (SELECT FROM application_role AS a
                    WHERE a.rolname = ANY (d.path[2:pg_catalog.cardinality(d.path) - 1]))
 ORDER BY 2, 3
"""

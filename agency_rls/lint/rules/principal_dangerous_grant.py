"""TRUNCATE, REFERENCES or TRIGGER on a table, or CREATE on a schema, held by a principal or the backend.

TRUNCATE empties a table without looking at policies; REFERENCES lets a foreign key probe
hidden keys; TRIGGER runs the grantee's code on every row written; CREATE in a schema lets a
principal plant functions and operators that leak rows through errors or shadow the helpers'
names (threats.md 4, 9, attacks 15, 34). Privileges through PUBLIC and group membership count.

Bad::

    GRANT TRUNCATE, REFERENCES ON public.contract TO crm_rls_agency;
    GRANT CREATE ON SCHEMA public TO crm_rls_agency;

Good::

    REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.contract FROM crm_rls_agency;
    REVOKE CREATE ON SCHEMA public FROM PUBLIC, crm_rls_agency;
"""

from agency_rls.lint.catalog import PREAMBLE, USER_SCHEMA, holders

ID = "principal_dangerous_grant"
LEVEL = "error"
TITLE = "TRUNCATE, REFERENCES, TRIGGER or schema CREATE held by a principal"

_TABLE_PRIVILEGE = (
    "CASE v.privilege WHEN 'REFERENCES' THEN pg_catalog.has_any_column_privilege({role}, c.oid, 'REFERENCES')"
    " ELSE pg_catalog.has_table_privilege({role}, c.oid, v.privilege) END"
)
_SCHEMA_CREATE = "pg_catalog.has_schema_privilege({role}, n.oid, 'CREATE')"

SQL = f"""{PREAMBLE},
held AS (
    SELECT c.oid::regclass::text AS object, 'TABLE ' || c.oid::regclass::text AS target, v.privilege,
           {holders(_TABLE_PRIVILEGE)} AS roles
      FROM pg_catalog.pg_class AS c
      JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     CROSS JOIN (VALUES ('TRUNCATE'), ('REFERENCES'), ('TRIGGER')) AS v(privilege)
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMA}
    UNION ALL
    SELECT 'schema ' || pg_catalog.quote_ident(n.nspname), 'SCHEMA ' || pg_catalog.quote_ident(n.nspname),
           'CREATE', {holders(_SCHEMA_CREATE)}
      FROM pg_catalog.pg_namespace AS n
     WHERE n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
)
SELECT NULL AS level,
       h.object,
       pg_catalog.string_agg(h.privilege || ' (held by ' || h.roles || ')', ', ' ORDER BY h.privilege)
       || ' on ' || h.object AS message,
       'REVOKE ' || pg_catalog.string_agg(h.privilege, ', ' ORDER BY h.privilege) || ' ON ' || h.target
       || ' FROM PUBLIC and the roles that hold it' AS remedy
  FROM held AS h
 WHERE h.roles IS NOT NULL
 GROUP BY h.object, h.target
 ORDER BY 2
"""

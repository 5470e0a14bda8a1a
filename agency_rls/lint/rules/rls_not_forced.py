"""A table with personal data, or granted to a principal, whose row level security is not enabled and forced.

Without ENABLE every granted row is readable; without FORCE the table's owner (and every member
of it) skips the policies (threats.md 1, 26, 31). The only table the spec leaves open is
``public.insurer`` ("every role may read insurer; it holds no personal data"): it passes while
it has no personal-data column and principals may only SELECT it.

Bad::

    CREATE TABLE public.claim (id bigint, customer_id bigint, phone text);
    GRANT SELECT ON public.claim TO crm_rls_agency;

Good::

    ALTER TABLE public.claim ENABLE ROW LEVEL SECURITY;
    ALTER TABLE public.claim FORCE ROW LEVEL SECURITY;
    CREATE POLICY claim_read ON public.claim FOR SELECT TO crm_rls_agency USING (…);
"""

from agency_rls.lint.catalog import PREAMBLE, USER_SCHEMA, holders

ID = "rls_not_forced"
LEVEL = "error"
TITLE = "Row level security not enabled and forced"
#: Tables the spec makes readable by every role: exempt while they hold no personal data and
#: principals may only read them.
PARAMS = {"public_by_design": ["public.insurer"]}
_ANY_PRIVILEGE = (
    "(pg_catalog.has_any_column_privilege({role}, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')"
    " OR pg_catalog.has_table_privilege({role}, c.oid, 'DELETE, TRUNCATE, TRIGGER'))"
)

SQL = f"""{PREAMBLE},
exposure AS (
    SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                      AND a.attname ~ %(personal_column_pattern)s) AS personal,
           {holders(_ANY_PRIVILEGE)} AS granted_to,
           (SELECT pg_catalog.bool_or(
                       pg_catalog.has_any_column_privilege(a.oid, c.oid, 'INSERT, UPDATE, REFERENCES')
                       OR pg_catalog.has_table_privilege(a.oid, c.oid, 'DELETE, TRUNCATE, TRIGGER'))
              FROM application_role AS a) AS writable
      FROM pg_catalog.pg_class AS c
      JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMA}
)
SELECT NULL AS level,
       e.oid::regclass::text AS object,
       e.oid::regclass::text || ' has row level security '
       || CASE WHEN NOT e.relrowsecurity THEN 'disabled' ELSE 'enabled but not forced (its owner skips the policies)' END
       || CASE WHEN e.personal THEN '; it holds personal data' ELSE '' END
       || CASE WHEN e.granted_to IS NOT NULL THEN '; granted to ' || e.granted_to ELSE '' END AS message,
       'ALTER TABLE ' || e.oid::regclass::text || ' ENABLE ROW LEVEL SECURITY; ALTER TABLE '
       || e.oid::regclass::text || ' FORCE ROW LEVEL SECURITY; then add policies for the roles that read it' AS remedy
  FROM exposure AS e
 WHERE (e.personal OR e.granted_to IS NOT NULL)
   AND NOT (e.relrowsecurity AND e.relforcerowsecurity)
   AND NOT (e.oid::regclass::text = ANY (%(public_by_design)s::text[]) AND NOT e.personal AND NOT coalesce(e.writable, false))
 ORDER BY 2
"""

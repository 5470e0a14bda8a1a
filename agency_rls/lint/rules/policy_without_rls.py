"""Policies on a table whose row level security is off: they protect nothing.

A policy is only consulted when row level security is enabled; with it off every privilege
holder reads every row, whatever the policies say (threats.md 11).

Bad::

    CREATE POLICY customer_read ON public.customer FOR SELECT TO crm_rls_agency USING (…);
    ALTER TABLE public.customer DISABLE ROW LEVEL SECURITY;

Good::

    ALTER TABLE public.customer ENABLE ROW LEVEL SECURITY;
    ALTER TABLE public.customer FORCE ROW LEVEL SECURITY;
"""

ID = "policy_without_rls"
LEVEL = "error"
TITLE = "Policies on a table with row level security off"

SQL = """
SELECT NULL AS level,
       c.oid::regclass::text AS object,
       c.oid::regclass::text || ' has ' || pg_catalog.count(*) || ' polic'
       || CASE WHEN pg_catalog.count(*) = 1 THEN 'y' ELSE 'ies' END || ' ('
       || pg_catalog.string_agg(p.polname::text, ', ' ORDER BY p.polname)
       || ') but row level security is disabled: the policies protect nothing' AS message,
       'ALTER TABLE ' || c.oid::regclass::text || ' ENABLE ROW LEVEL SECURITY; ALTER TABLE '
       || c.oid::regclass::text || ' FORCE ROW LEVEL SECURITY' AS remedy
  FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_policy AS p ON p.polrelid = c.oid
 WHERE NOT c.relrowsecurity
 GROUP BY c.oid
 ORDER BY 2
"""

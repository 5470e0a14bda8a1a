"""A materialized view, foreign table, or partition/child table of protected data that a principal can read.

Row level security belongs to one table: a materialized view over a protected table is a copy
with no policies; a foreign table has none; a partition or inheritance child read directly is
not covered by its parent's policies (threats.md 10). Each is reported when a principal may read
it without the parent's protection (for a child: row level security enabled, forced, and at least
one policy).

Bad::

    CREATE MATERIALIZED VIEW public.contract_totals AS SELECT insurer_id, count(*) FROM public.contract GROUP BY 1;
    GRANT SELECT ON public.contract_totals TO crm_rls_agency;
    CREATE TABLE public.contract_2026 () INHERITS (public.contract);
    GRANT SELECT ON public.contract_2026 TO crm_rls_agency;

Good::

    REVOKE ALL ON public.contract_totals FROM crm_rls_agency;  -- serve it through a security_invoker view
    ALTER TABLE public.contract_2026 ENABLE ROW LEVEL SECURITY;  -- and FORCE, and the parent's policies
"""

from agency_rls.lint.catalog import PREAMBLE, USER_SCHEMA, holders

ID = "unprotected_derived_relation"
LEVEL = "error"
TITLE = "Derived relation of protected data readable without protection"

SQL = f"""{PREAMBLE},
child (oid, parent) AS (
    SELECT i.inhrelid, i.inhparent
      FROM pg_catalog.pg_inherits AS i
     WHERE i.inhparent IN (SELECT oid FROM protected_table)
    UNION
    SELECT i.inhrelid, child.parent
      FROM child
      JOIN pg_catalog.pg_inherits AS i ON i.inhparent = child.oid
),
candidate AS (
    SELECT m.oid,
           'materialized view ' || m.oid::regclass::text || ' copies rows of '
           || pg_catalog.string_agg(DISTINCT d.base::regclass::text, ', ') || ' and has no row level security' AS what,
           'REVOKE ALL ON ' || m.oid::regclass::text
           || ' FROM the principals (serve it through a security_invoker view with its own filter), or drop it' AS remedy
      FROM pg_catalog.pg_class AS m
      JOIN derived_from_protected AS d ON d.oid = m.oid
     WHERE m.relkind = 'm'
     GROUP BY m.oid
    UNION ALL
    SELECT f.oid,
           'foreign table ' || f.oid::regclass::text || ' is outside row level security',
           'REVOKE ALL ON ' || f.oid::regclass::text || ' FROM the principals'
      FROM pg_catalog.pg_class AS f
      JOIN pg_catalog.pg_namespace AS n ON n.oid = f.relnamespace
     WHERE f.relkind = 'f' AND {USER_SCHEMA}
       AND NOT (f.relrowsecurity AND f.relforcerowsecurity)
    UNION ALL
    SELECT c.oid,
           CASE WHEN k.relispartition THEN 'partition ' ELSE 'child table ' END || c.oid::regclass::text
           || ' of ' || pg_catalog.string_agg(DISTINCT c.parent::regclass::text, ', ')
           || ' is not covered by its parent''s policies when read directly, and has '
           || CASE WHEN NOT k.relrowsecurity THEN 'row level security disabled'
                   WHEN NOT k.relforcerowsecurity THEN 'row level security not forced'
                   ELSE 'no policy' END,
           'REVOKE ALL ON ' || c.oid::regclass::text || ' FROM the principals, or ENABLE and FORCE row level '
           || 'security on it with the parent''s policies'
      FROM child AS c
      JOIN pg_catalog.pg_class AS k ON k.oid = c.oid
     WHERE NOT (k.relrowsecurity AND k.relforcerowsecurity
                AND EXISTS (SELECT FROM pg_catalog.pg_policy AS p WHERE p.polrelid = k.oid))
     GROUP BY c.oid, k.relispartition, k.relrowsecurity, k.relforcerowsecurity
)
SELECT NULL AS level,
       c.oid::regclass::text AS object,
       c.what || '; readable by ' || readers.names AS message,
       c.remedy
  FROM candidate AS c
  CROSS JOIN LATERAL (SELECT {holders("pg_catalog.has_any_column_privilege({role}, c.oid, 'SELECT')")} AS names) AS readers
 WHERE readers.names IS NOT NULL
 ORDER BY 2
"""

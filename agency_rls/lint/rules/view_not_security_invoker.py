"""A view over a protected table that runs with its owner's rights instead of the caller's.

A view reads its tables as its owner unless it is ``security_invoker`` (PostgreSQL 15+): the
caller's policies do not apply, and an owner that bypasses row level security (superuser,
BYPASSRLS, the table's owner without FORCE) shows every row (threats.md 2, 28). Views built on
other views are followed down to the tables. An error when a principal may read the view, a
warning otherwise (nobody can read it yet).

Bad::

    CREATE VIEW public.customer_contacts AS SELECT full_name, phone FROM public.customer;
    GRANT SELECT ON public.customer_contacts TO crm_rls_agency;

Good::

    CREATE VIEW public.customer_contacts WITH (security_invoker = true) AS
        SELECT full_name, phone FROM public.customer;
"""

from agency_rls.lint.catalog import PREAMBLE, USER_SCHEMA, holders

ID = "view_not_security_invoker"
LEVEL = "error"
TITLE = "View over a protected table without security_invoker"

SQL = f"""{PREAMBLE},
definer_view AS (
    SELECT v.oid, v.relowner,
           pg_catalog.string_agg(DISTINCT d.base::regclass::text, ', ') AS bases
      FROM pg_catalog.pg_class AS v
      JOIN pg_catalog.pg_namespace AS n ON n.oid = v.relnamespace
      JOIN derived_from_protected AS d ON d.oid = v.oid
     WHERE v.relkind = 'v' AND {USER_SCHEMA}
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_options_to_table(v.reloptions) AS o
                        WHERE o.option_name = 'security_invoker'
                          AND pg_catalog.lower(o.option_value) IN ('true', 'on', '1', 'yes'))
     GROUP BY v.oid, v.relowner
)
SELECT CASE WHEN readers.names IS NULL THEN 'warning' END AS level,
       v.oid::regclass::text AS object,
       'view ' || v.oid::regclass::text || ' reads ' || v.bases || ' as its owner '
       || pg_catalog.quote_ident(o.rolname)
       || CASE WHEN o.rolsuper THEN ' (a superuser: every row)'
               WHEN o.rolbypassrls THEN ' (BYPASSRLS: every row)'
               ELSE '' END
       || ', not as the caller'
       || CASE WHEN readers.names IS NOT NULL THEN '; readable by ' || readers.names ELSE '' END AS message,
       'ALTER VIEW ' || v.oid::regclass::text || ' SET (security_invoker = true)' AS remedy
  FROM definer_view AS v
  JOIN pg_catalog.pg_roles AS o ON o.oid = v.relowner
  CROSS JOIN LATERAL (SELECT {holders("pg_catalog.has_any_column_privilege({role}, v.oid, 'SELECT')")} AS names) AS readers
 ORDER BY 2
"""

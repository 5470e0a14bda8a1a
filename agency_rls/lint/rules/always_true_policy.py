"""A permissive policy for principals that admits every row: ``USING (true)``, or an expression that reads no column of its table.

Permissive policies OR together: one that is true for every row opens the whole table to every
role it names, whatever the other policies say. An expression that reads no column of its table
is the same for every row, so whenever it admits one row it admits them all. Policies that name
only roles no principal can reach (the loader, the scope functions' owner) are not reported
(threats.md 12, attack 33). (An expression that uses only a whole-row reference is counted as
reading no column.)

Bad::

    CREATE POLICY agency_read ON public.agency FOR SELECT TO crm_rls_agency USING (true);
    CREATE POLICY agency_read ON public.agency FOR SELECT TO crm_rls_agency
        USING ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL);

Good::

    CREATE POLICY agency_read ON public.agency FOR SELECT TO crm_rls_agency
        USING (id = ANY ((SELECT agency_rls.visible_agency_ids())::bigint[]));
"""

from agency_rls.lint.catalog import PREAMBLE

ID = "always_true_policy"
LEVEL = "error"
TITLE = "Policy that admits every row"

SQL = f"""{PREAMBLE},
policy AS (
    SELECT p.oid, p.polname, p.polrelid, p.polroles,
           pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
           pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr,
           EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                    WHERE d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid = p.oid
                      AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = p.polrelid
                      AND d.refobjsubid > 0) AS reads_a_column
      FROM pg_catalog.pg_policy AS p
     WHERE p.polpermissive
       AND (0::oid = ANY (p.polroles)
            OR EXISTS (SELECT FROM application_reach AS r WHERE r.oid = ANY (p.polroles)))
)
SELECT NULL AS level,
       'policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text AS object,
       'permissive policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text
       || ' for ' || (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ')
                        FROM pg_catalog.unnest(p.polroles) AS r)
       || CASE WHEN NOT p.reads_a_column
               THEN ' reads no column of its table (' || pg_catalog.concat_ws(' / ', p.using_expr, p.check_expr)
                    || '): it admits every row or none'
               ELSE ' is always true' END AS message,
       'replace it with a condition on the row (its scope column against (SELECT agency_rls.<scope function>())),'
       || ' or name only roles no principal reaches' AS remedy
  FROM policy AS p
 WHERE NOT p.reads_a_column
    OR pg_catalog.lower(pg_catalog.btrim(coalesce(p.using_expr, ''), '() ')) = 'true'
    OR pg_catalog.lower(pg_catalog.btrim(coalesce(p.check_expr, ''), '() ')) = 'true'
 ORDER BY 2
"""

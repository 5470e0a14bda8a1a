"""A policy that calls a scope function per row instead of once per statement.

Written as ``(SELECT f())`` a function without arguments runs once per statement (an InitPlan);
written as ``f()`` it runs for every row the policy looks at, which for a SECURITY DEFINER
PL/pgSQL function on a million rows is the difference between milliseconds and minutes, and an
unwrapped call is also never an index condition. Reported for functions of the application's
schemas without arguments and for ``current_setting`` (as Supabase's splinter does). Not for an
IMMUTABLE function without arguments: the planner evaluates it once, while planning, and the plan
carries the result as a constant (agency-rls's ``planned_agency_ids()`` and
``planned_restriction()`` do this on purpose; scope_functions.sql says when that is safe).

Bad::

    CREATE POLICY contract_read_insurer ON public.contract FOR SELECT TO crm_rls_insurer
        USING (insurer_id = agency_rls.insurer_id());

Good::

    CREATE POLICY contract_read_insurer ON public.contract FOR SELECT TO crm_rls_insurer
        USING (insurer_id = (SELECT agency_rls.insurer_id()));
"""

ID = "unwrapped_scope_call"
LEVEL = "warning"
TITLE = "Scope function called per row in a policy"

SQL = """
WITH policy AS (
    SELECT p.oid, p.polname, p.polrelid,
           pg_catalog.concat_ws(' ', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                                pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) AS body
      FROM pg_catalog.pg_policy AS p
),
called AS (
    SELECT p.oid AS policy, f.oid::regprocedure::text AS signature,
           pg_catalog.regexp_replace(
               CASE WHEN f.pronamespace = 'pg_catalog'::regnamespace THEN ''
                    ELSE pg_catalog.quote_ident(n.nspname) || '.' END || pg_catalog.quote_ident(f.proname),
               '([.$^*+?()\\[\\]{}|\\\\])', '\\\\\\1', 'g') || '\\(' AS pattern
      FROM policy AS p
      JOIN pg_catalog.pg_depend AS d
        ON d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid = p.oid
       AND d.refclassid = 'pg_catalog.pg_proc'::regclass
      JOIN pg_catalog.pg_proc AS f ON f.oid = d.refobjid
      JOIN pg_catalog.pg_namespace AS n ON n.oid = f.pronamespace
     WHERE f.pronamespace <> 'pg_catalog'::regnamespace AND f.pronargs = 0
       AND f.provolatile <> 'i'  -- folded into the plan, evaluated once while planning
    UNION ALL
    -- catalog functions are pinned: no dependency is recorded on them, so look for the name
    SELECT p.oid, 'current_setting()', 'current_setting\\('
      FROM policy AS p
)
SELECT NULL AS level,
       'policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text AS object,
       'policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text || ' calls '
       || pg_catalog.string_agg(c.signature, ', ' ORDER BY c.signature)
       || ' for every row (not wrapped in a scalar subquery)' AS message,
       'wrap each call as (SELECT f()), e.g. insurer_id = (SELECT agency_rls.insurer_id())' AS remedy
  FROM policy AS p
  JOIN called AS c ON c.policy = p.oid
 WHERE p.body ~ ('(?<!SELECT )' || c.pattern)
 GROUP BY p.oid, p.polname, p.polrelid
 ORDER BY 2
"""

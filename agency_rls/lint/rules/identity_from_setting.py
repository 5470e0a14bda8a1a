"""Identity read from a setting a client can set: ``current_setting('app.agency_id')`` in a policy or scope function.

Any role may ``SET app.anything`` or call ``set_config`` (custom settings need no privilege), so
a policy that trusts one is spoofable, and an unset one reads as NULL or '' (threats.md 13,
attack 17). The settings a client cannot choose freely are allowed: ``role`` (SET ROLE checks
membership) and ``session_authorization``. Read are the policies' expressions and the source of
every function in a schema whose functions the policies call (PL/pgSQL calls are not recorded
as dependencies, so the whole schema is read).

Bad::

    CREATE POLICY contract_read ON public.contract
        USING (agency_id = current_setting('app.agency_id')::bigint);

Good::

    CREATE POLICY contract_read ON public.contract
        USING (agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[]));
    -- and the function reads the role in force: current_setting('role'), or session_user
"""

ID = "identity_from_setting"
LEVEL = "error"
TITLE = "Identity read from a client-settable setting"
PARAMS = {"trusted_settings": ["role", "session_authorization"]}

SQL = """
WITH policy_text AS (
    SELECT 'policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text AS object,
           pg_catalog.concat_ws(' ', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                                pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) AS body
      FROM pg_catalog.pg_policy AS p
),
scope_schema AS (
    SELECT DISTINCT f.pronamespace
      FROM pg_catalog.pg_depend AS d
      JOIN pg_catalog.pg_proc AS f ON f.oid = d.refobjid
     WHERE d.classid = 'pg_catalog.pg_policy'::regclass
       AND d.refclassid = 'pg_catalog.pg_proc'::regclass
       AND f.pronamespace <> 'pg_catalog'::regnamespace
),
function_text AS (
    SELECT 'function ' || f.oid::regprocedure::text AS object, f.prosrc AS body
      FROM pg_catalog.pg_proc AS f
     WHERE f.pronamespace IN (SELECT pronamespace FROM scope_schema)
),
reads AS (
    SELECT t.object,
           CASE WHEN m.match[1] IS NULL THEN '(a computed name)' ELSE m.match[1] END AS setting
      FROM (SELECT * FROM policy_text UNION ALL SELECT * FROM function_text) AS t
     CROSS JOIN LATERAL pg_catalog.regexp_matches(
               t.body, 'current_setting\\s*\\(\\s*(?:''([^'']*)''|[^''])', 'gi') AS m(match)
)
SELECT NULL AS level,
       r.object,
       r.object || ' reads identity-like setting '
       || pg_catalog.string_agg(DISTINCT pg_catalog.quote_literal(r.setting), ', ')
       || ', which any client can SET or set_config(): spoofable, and NULL or '''' when unset' AS message,
       'identify the caller by the role in force (SET LOCAL ROLE by the backend; current_setting(''role'') '
       || 'or session_user inside SECURITY DEFINER functions), never by a custom setting' AS remedy
  FROM reads AS r
 WHERE r.setting <> ALL (%(trusted_settings)s::text[])
 GROUP BY r.object
 ORDER BY 2
"""

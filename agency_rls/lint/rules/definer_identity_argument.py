"""A SECURITY DEFINER function that takes arguments and that a policy calls or a principal may execute.

A principal can call every function its policies use, with any argument it likes: a definer
function that takes the identity (an agency id, a role name) as an argument answers for
whoever the caller names (threats.md 3, attack 19). Identity must come from the role in force.

Bad::

    CREATE FUNCTION agency_rls.visible_agency_ids(me bigint) RETURNS bigint[] SECURITY DEFINER …;
    CREATE POLICY agency_read ON public.agency
        USING (id = ANY (agency_rls.visible_agency_ids(42)));

Good::

    CREATE FUNCTION agency_rls.visible_agency_ids() RETURNS bigint[] SECURITY DEFINER …
        -- reads the caller from the role in force, inside the function
"""

from agency_rls.lint.catalog import PREAMBLE, holders

ID = "definer_identity_argument"
LEVEL = "error"
TITLE = "SECURITY DEFINER function with arguments callable by principals or policies"

SQL = f"""{PREAMBLE},
policy_call AS (
    SELECT d.refobjid AS proc, pg_catalog.string_agg(DISTINCT
               pg_catalog.quote_ident(pol.polname) || ' ON ' || pol.polrelid::regclass::text, ', ') AS policies
      FROM pg_catalog.pg_depend AS d
      JOIN pg_catalog.pg_policy AS pol ON pol.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_policy'::regclass
       AND d.refclassid = 'pg_catalog.pg_proc'::regclass
     GROUP BY d.refobjid
)
SELECT NULL AS level,
       'function ' || p.oid::regprocedure::text AS object,
       'SECURITY DEFINER function ' || p.oid::regprocedure::text || ' takes arguments and '
       || pg_catalog.concat_ws(' and ',
              'is called by ' || pc.policies,
              'is executable by ' || {holders("pg_catalog.has_function_privilege({role}, p.oid, 'EXECUTE')")})
       || ': a caller can pass another principal''s identity' AS message,
       'take no identity argument: read the caller from the role in force inside the function, and '
       || 'REVOKE EXECUTE ON FUNCTION ' || p.oid::regprocedure::text || ' FROM the principals' AS remedy
  FROM pg_catalog.pg_proc AS p
  LEFT JOIN policy_call AS pc ON pc.proc = p.oid
 WHERE p.prosecdef AND p.pronargs > 0
   AND (pc.proc IS NOT NULL
        OR EXISTS (SELECT FROM application_role AS a
                    WHERE pg_catalog.has_function_privilege(a.oid, p.oid, 'EXECUTE')))
 ORDER BY 2
"""

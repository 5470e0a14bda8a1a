"""Row level security on, but no policy for the principals a table is granted to: they see nothing.

Not a leak (default deny), but a table granted to principals with no policy for them is almost
always a forgotten policy, and the usual "fix" under pressure is to disable row level security
(threats.md 11).

Bad::

    ALTER TABLE public.claim ENABLE ROW LEVEL SECURITY;
    GRANT SELECT ON public.claim TO crm_rls_agency;   -- and no CREATE POLICY

Good::

    CREATE POLICY claim_read ON public.claim FOR SELECT TO crm_rls_agency
        USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()));
"""

from agency_rls.lint.catalog import PREAMBLE, holders

ID = "rls_without_policy"
LEVEL = "warning"
TITLE = "Row level security without a policy for the principals"
_USE = (
    "(pg_catalog.has_any_column_privilege({role}, t.oid, 'SELECT, INSERT, UPDATE')"
    " OR pg_catalog.has_table_privilege({role}, t.oid, 'DELETE'))"
)

SQL = f"""{PREAMBLE},
granted AS (
    SELECT t.oid, {holders(_USE)} AS roles
      FROM protected_table AS t
     WHERE t.relrowsecurity
)
SELECT NULL AS level,
       g.oid::regclass::text AS object,
       g.oid::regclass::text || ' has row level security on and is granted to ' || g.roles
       || ', but no policy applies to them (or to PUBLIC): they see nothing' AS message,
       'CREATE POLICY … ON ' || g.oid::regclass::text
       || ' TO <group role> USING (…), or revoke the grant if principals must not use the table' AS remedy
  FROM granted AS g
 WHERE g.roles IS NOT NULL AND NOT EXISTS (
        SELECT FROM pg_catalog.pg_policy AS p
         WHERE p.polrelid = g.oid
           AND (0::oid = ANY (p.polroles)
                OR EXISTS (SELECT FROM application_reach AS r WHERE r.oid = ANY (p.polroles))))
 ORDER BY 2
"""

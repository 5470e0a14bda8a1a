"""More than one permissive policy for a role and command on a table that needs a restrictive guard, and no guard.

Permissive policies OR together, so each new one widens what a role sees; the project puts the
rule every row must pass (the entrustment: the caller's insurers) in a RESTRICTIVE policy, which
ANDs with all of them (threats.md 12, attack 32). A guard is expected on a table that has an
``insurer_id`` column (its rows belong to an insurer) or that already has a restrictive policy
for some role. Reported: a role (or PUBLIC) and command with two or more permissive policies and
no restrictive policy for that role (or PUBLIC) and command. Roles no principal reaches are
skipped. Tables whose rows belong to no insurer (``customer``, ``notice_receipt``) may have
several permissive policies, as the project's do.

Bad::

    CREATE POLICY contract_read_handled ON public.contract AS PERMISSIVE FOR SELECT TO crm_rls_agency USING (…);
    CREATE POLICY contract_read_supervised ON public.contract AS PERMISSIVE FOR SELECT TO crm_rls_agency USING (…);

Good::

    CREATE POLICY contract_entrustment_guard ON public.contract AS RESTRICTIVE FOR ALL TO crm_rls_agency
        USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));
"""

from agency_rls.lint.catalog import PREAMBLE

ID = "permissive_without_guard"
LEVEL = "error"
TITLE = "Several permissive policies without a restrictive guard"
PARAMS = {"guard_column": "insurer_id"}

SQL = f"""{PREAMBLE},
policy_role_command AS (
    SELECT p.polrelid, p.polname, p.polpermissive, r.role, cmd.command
      FROM pg_catalog.pg_policy AS p
     CROSS JOIN LATERAL pg_catalog.unnest(p.polroles) AS r(role)
     CROSS JOIN LATERAL pg_catalog.unnest(
               CASE p.polcmd WHEN '*' THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']
                             WHEN 'r' THEN ARRAY['SELECT'] WHEN 'a' THEN ARRAY['INSERT']
                             WHEN 'w' THEN ARRAY['UPDATE'] WHEN 'd' THEN ARRAY['DELETE'] END) AS cmd(command)
),
guard_expected AS (
    SELECT c.oid
      FROM pg_catalog.pg_class AS c
     WHERE c.relrowsecurity
       AND (EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                     WHERE a.attrelid = c.oid AND a.attname = %(guard_column)s AND NOT a.attisdropped)
            OR EXISTS (SELECT FROM pg_catalog.pg_policy AS p WHERE p.polrelid = c.oid AND NOT p.polpermissive))
)
SELECT NULL AS level,
       prc.polrelid::regclass::text AS object,
       prc.polrelid::regclass::text || ': ' || pg_catalog.count(*) || ' permissive policies ('
       || pg_catalog.string_agg(pg_catalog.quote_ident(prc.polname), ', ' ORDER BY prc.polname) || ') for '
       || CASE WHEN prc.role = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(prc.role)) END
       || ' ' || prc.command || ' and no restrictive guard: any one of them widens what the role sees' AS message,
       'CREATE POLICY <table>_guard ON ' || prc.polrelid::regclass::text || ' AS RESTRICTIVE FOR ALL TO '
       || CASE WHEN prc.role = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(prc.role)) END
       || ' USING (<the rule every row must pass>)' AS remedy
  FROM policy_role_command AS prc
 WHERE prc.polpermissive
   AND prc.polrelid IN (SELECT oid FROM guard_expected)
   AND (prc.role = 0 OR prc.role IN (SELECT oid FROM application_reach))
   AND NOT EXISTS (SELECT FROM policy_role_command AS g
                    WHERE g.polrelid = prc.polrelid AND NOT g.polpermissive
                      AND g.command = prc.command AND g.role IN (prc.role, 0))
 GROUP BY prc.polrelid, prc.role, prc.command
HAVING pg_catalog.count(*) > 1
 ORDER BY 2, 3
"""

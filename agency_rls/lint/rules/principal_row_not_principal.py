"""A ``principal`` row naming a role that is not a principal role of this database.

Every policy trusts ``principal.role_name``: a row naming a group or management role (which
principals can SET ROLE to), another database's role, or any role provisioning did not create
for exactly this mapping would hand that role a scope. The scope functions ignore such rows and
the insert trigger refuses most, so a finding here means a trigger was bypassed (a data-only
restore, replica mode) or a role was changed by hand. A row whose role does not exist yet is a
warning: run ``agency-rls provision``. The rule needs to read every principal row: as a
superuser, or a member of the loader role; otherwise it says so.

Bad::

    INSERT INTO public.principal (role_name, kind, agency_id) VALUES ('crm_rls_agency', 'agency', 7);

Good::

    INSERT INTO public.principal (role_name, kind, agency_id) VALUES ('crm_agency_s1', 'agency', 7);
    -- then: agency-rls provision
"""

ID = "principal_row_not_principal"
LEVEL = "error"
TITLE = "Principal row naming a non-principal role"

SQL = """
WITH reader AS (
    SELECT r.rolsuper OR r.rolbypassrls
           OR coalesce(pg_catalog.pg_has_role(r.oid, pg_catalog.to_regrole(%(loader)s), 'USAGE'), false) AS reads_all
      FROM pg_catalog.pg_roles AS r
     WHERE r.rolname = current_user
),
named AS (
    SELECT p.role_name, p.kind, p.agency_id, p.insurer_id, r.oid AS role_oid,
           pg_catalog.shobj_description(r.oid, 'pg_authid') AS marker,
           EXISTS (SELECT FROM agency_rls.provisioned_principal AS pp
                    WHERE pp.role_name = p.role_name AND pp.kind = p.kind
                      AND pp.agency_id IS NOT DISTINCT FROM p.agency_id
                      AND pp.insurer_id IS NOT DISTINCT FROM p.insurer_id) AS provisioned
      FROM public.principal AS p
      LEFT JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
)
SELECT CASE WHEN n.role_oid IS NULL THEN 'warning' END AS level,
       'principal ' || pg_catalog.quote_literal(n.role_name) AS object,
       'principal row ' || pg_catalog.quote_literal(n.role_name) || ' ('
       || 'kind ' || n.kind || pg_catalog.concat(', agency ' || n.agency_id, ', insurer ' || n.insurer_id) || ') '
       || CASE WHEN n.role_oid IS NULL THEN 'names a role that does not exist yet'
               WHEN n.marker IS DISTINCT FROM %(principal_marker)s
               THEN 'names role ' || pg_catalog.quote_ident(n.role_name) || ', which is not a principal role of this database ('
                    || coalesce('its comment: ' || pg_catalog.quote_literal(n.marker), 'no agency-rls marker') || ')'
               ELSE 'does not match the mapping agency-rls provision created its role for' END AS message,
       CASE WHEN n.role_oid IS NULL THEN 'agency-rls provision'
            ELSE 'DELETE the row; if it is a real principal, insert it under a new role name and run agency-rls provision'
       END AS remedy
  FROM named AS n
 WHERE n.role_oid IS NULL OR n.marker IS DISTINCT FROM %(principal_marker)s OR NOT n.provisioned
UNION ALL
SELECT 'warning', 'public.principal',
       'lint cannot read every principal row as ' || pg_catalog.quote_ident(current_user)
       || ' (row level security is forced): principal rows were not checked',
       'run agency-rls lint as a superuser or as a member of ' || pg_catalog.quote_ident(%(loader)s)
  FROM reader
 WHERE NOT reader.reads_all
 ORDER BY 2
"""

"""Objects owned by a principal, group or the backend role; default privileges; role settings.

An owner skips policies unless they are forced and can grant its object onward; large objects
have no row level security at all; default privileges a principal holds hand it (or give away)
every future object of some schema; role settings a principal gave itself (``ALTER ROLE … SET``)
follow it into every session (threats.md 1, 14, attack 27). ``agency-rls provision`` warns of the
objects and resets the settings; this rule finds what appeared since. Temporary objects, which die
with their session, are not reported.

Bad::

    SET ROLE crm_agency_w11;
    SELECT lo_create(0);
    ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;
    ALTER ROLE crm_agency_w11 SET search_path = evil, public;

Good::

    REASSIGN OWNED BY crm_agency_w11 TO crm_rls_owner;  -- or DROP OWNED BY, after review
    ALTER ROLE crm_agency_w11 RESET ALL;
"""

from agency_rls.lint.catalog import PREAMBLE

ID = "principal_owned_objects"
LEVEL = "error"
TITLE = "Objects, default privileges or role settings of principals"

SQL = f"""{PREAMBLE},
here AS (
    SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()
),
owned AS (
    SELECT a.rolname,
           pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) AS what,
           d.classid = 'pg_catalog.pg_default_acl'::regclass AS default_privileges,
           d.deptype
      FROM pg_catalog.pg_shdepend AS d
      JOIN application_role AS a ON a.oid = d.refobjid
     WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass
       AND (d.dbid = 0 OR d.dbid = (SELECT oid FROM here))
       AND (d.deptype = 'o' OR (d.deptype = 'a' AND d.classid = 'pg_catalog.pg_default_acl'::regclass))
       AND coalesce(CASE WHEN d.dbid <> 0
                         THEN (pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema END, '')
           !~ '^pg_temp_'
)
SELECT CASE WHEN o.default_privileges AND o.deptype = 'a' THEN 'warning' END AS level,
       'role ' || pg_catalog.quote_ident(o.rolname) AS object,
       'role ' || pg_catalog.quote_ident(o.rolname)
       || CASE WHEN o.deptype = 'o' THEN ' owns ' ELSE ' is granted privileges by ' END || o.what AS message,
       CASE WHEN o.deptype = 'o'
            THEN 'REASSIGN OWNED BY ' || pg_catalog.quote_ident(o.rolname)
                 || ' TO <the owner role> (or DROP OWNED BY after review), in this database'
            ELSE 'ALTER DEFAULT PRIVILEGES … REVOKE … FROM ' || pg_catalog.quote_ident(o.rolname)
       END AS remedy
  FROM owned AS o
UNION ALL
SELECT 'warning',
       'role ' || pg_catalog.quote_ident(a.rolname),
       'role ' || pg_catalog.quote_ident(a.rolname) || ' has role settings '
       || pg_catalog.array_to_string(s.setconfig, ', ')
       || CASE WHEN s.setdatabase = 0 THEN ' (every database)' ELSE ' in this database' END,
       'ALTER ROLE ' || pg_catalog.quote_ident(a.rolname) || ' '
       || CASE WHEN s.setdatabase = 0 THEN '' ELSE 'IN DATABASE ' || pg_catalog.quote_ident(pg_catalog.current_database()) || ' ' END
       || 'RESET ALL (agency-rls provision does this)'
  FROM pg_catalog.pg_db_role_setting AS s
  JOIN application_role AS a ON a.oid = s.setrole
 WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM here))
   -- the backend's own setting from the definition (roles.sql: its sessions never JIT-compile)
   AND NOT (a.rolname = %(backend)s AND s.setdatabase = 0 AND s.setconfig = %(backend_settings)s::text[])
 ORDER BY 2, 3
"""

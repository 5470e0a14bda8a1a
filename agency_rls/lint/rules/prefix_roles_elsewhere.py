"""A role of this database's prefix that another database uses.

Roles are cluster-wide and databases are not: each prefix belongs to one database, whose name
its roles' marker comments carry. A role of the prefix whose marker names another database, or
that owns, is granted or is named by objects in another database (pg_shdepend), or has role
settings there, serves two databases: the other database's grants and policies reach this
database's principals, and ``downgrade`` or ``provision --prune`` here breaks the other one.

Bad::

    -- in database crm_staging, migrated with the same --role-prefix crm_ as crm
    GRANT SELECT ON public.contract TO crm_agency_w11;

Good::

    agency-rls migrate --database-url postgresql://dba@db/crm_staging --role-prefix stg_
"""

ID = "prefix_roles_elsewhere"
LEVEL = "error"
TITLE = "Roles of this database's prefix used by another database"

SQL = """
WITH ours AS (
    SELECT r.oid, r.rolname::text AS rolname, pg_catalog.shobj_description(r.oid, 'pg_authid') AS marker
      FROM pg_catalog.pg_roles AS r
     WHERE r.rolname IN (%(owner)s, %(helper)s, %(backend)s, %(agency_group)s, %(agency_writer_group)s,
                         %(insurer_group)s, %(loader)s)
        OR pg_catalog.shobj_description(r.oid, 'pg_authid') IN (%(principal_marker)s, %(management_marker)s)
        OR (%(prefix)s <> '' AND pg_catalog.starts_with(r.rolname, %(prefix)s)
            AND pg_catalog.shobj_description(r.oid, 'pg_authid') LIKE 'agency-rls:%%')
        -- members of this database's group roles are its principals, whatever their comment says
        OR r.oid IN (SELECT m.member
                       FROM pg_catalog.pg_auth_members AS m
                       JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
                      WHERE g.rolname IN (%(agency_group)s, %(agency_writer_group)s, %(insurer_group)s))
),
elsewhere AS (
    SELECT o.rolname, 'its marker comment says ' || pg_catalog.quote_literal(o.marker) AS why
      FROM ours AS o
     WHERE o.marker LIKE 'agency-rls:%%'
       AND o.marker NOT IN (%(principal_marker)s, %(management_marker)s)
    UNION ALL
    SELECT o.rolname,
           CASE d.deptype WHEN 'o' THEN 'it owns ' WHEN 'a' THEN 'it is granted privileges on '
                          ELSE 'it is named by ' END
           || pg_catalog.count(*) || ' object(s) in database ' || pg_catalog.quote_ident(db.datname)
      FROM ours AS o
      JOIN pg_catalog.pg_shdepend AS d
        ON d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = o.oid
      JOIN pg_catalog.pg_database AS db ON db.oid = d.dbid
     WHERE db.datname <> pg_catalog.current_database()
     GROUP BY o.rolname, d.deptype, db.datname
    UNION ALL
    SELECT o.rolname, 'it has role settings in database ' || pg_catalog.quote_ident(db.datname)
      FROM ours AS o
      JOIN pg_catalog.pg_db_role_setting AS s ON s.setrole = o.oid
      JOIN pg_catalog.pg_database AS db ON db.oid = s.setdatabase
     WHERE db.datname <> pg_catalog.current_database()
)
SELECT NULL AS level,
       'role ' || pg_catalog.quote_ident(e.rolname) AS object,
       'role ' || pg_catalog.quote_ident(e.rolname) || ' of prefix ' || pg_catalog.quote_literal(%(prefix)s)
       || ' is used by another database: ' || pg_catalog.string_agg(e.why, '; ' ORDER BY e.why) AS message,
       'give each database its own --role-prefix; remove what the other database grants to or made with '
       || pg_catalog.quote_ident(e.rolname) || ' (REVOKE, REASSIGN OWNED / DROP OWNED there)' AS remedy
  FROM elsewhere AS e
 GROUP BY e.rolname
 ORDER BY 2
"""

"""Catalog fragments the rules share: who the application roles are, what a protected table is.

Rules are plain SQL; these fragments are spliced into them (``PREAMBLE`` opens a ``WITH RECURSIVE``
list, so a rule continues it with ``, its_own_cte AS (…) SELECT …``). The runner sets
``search_path = pg_catalog, pg_temp`` so that ``oid::regclass::text`` and ``::regprocedure::text``
print schema-qualified names, and no object of the linted database can shadow a catalog function.
``%`` is doubled because the queries take parameters.
"""

from __future__ import annotations

#: Column names that hold personal data (a table with one needs row level security even before
#: anything is granted on it). Matched against pg_attribute.attname.
PERSONAL_COLUMN_PATTERN = (
    r"^(full_name(_kana)?|beneficiary_name|address|phone|fax|e?mail|email_address|birth_?date"
    r"|date_of_birth|gender|policyholder_id|insured_id)$"
    r"|_(name_kana|address|phone|fax|email|birth_?date)$"
)

#: Schemas that are the server's, not the application's.
USER_SCHEMA = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"

PREAMBLE = """
WITH RECURSIVE
-- The roles principals act as: every principal role of this database (its marker comment, set by
-- agency-rls provision), the group roles policies name, and the backend role.
application_role AS (
    SELECT r.oid, r.rolname::text AS rolname
      FROM pg_catalog.pg_roles AS r
     WHERE r.rolname IN (%(backend)s, %(agency_group)s, %(agency_writer_group)s, %(insurer_group)s)
        OR pg_catalog.shobj_description(r.oid, 'pg_authid') = %(principal_marker)s
),
-- Every role an application role is a member of, directly or through others (it may SET ROLE to
-- it or inherit its privileges), with the path from the application role to it.
application_reach (app_oid, app_name, oid, path) AS (
    SELECT a.oid, a.rolname, a.oid, ARRAY[a.rolname]
      FROM application_role AS a
    UNION ALL
    SELECT reach.app_oid, reach.app_name, m.roleid, reach.path || r.rolname::text
      FROM application_reach AS reach
      JOIN pg_catalog.pg_auth_members AS m ON m.member = reach.oid
      JOIN pg_catalog.pg_roles AS r ON r.oid = m.roleid
     WHERE r.rolname::text <> ALL (reach.path)
),
-- Tables whose rows need row level security: it is enabled on them, or they hold personal data.
protected_table AS (
    SELECT c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity
      FROM pg_catalog.pg_class AS c
      JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND (c.relrowsecurity
            OR EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                          AND a.attname ~ %(personal_column_pattern)s))
),
-- Relations built over protected tables, through any depth of views: (relation, protected table).
derived_from_protected (oid, base) AS (
    SELECT rw.ev_class, d.refobjid
      FROM pg_catalog.pg_depend AS d
      JOIN pg_catalog.pg_rewrite AS rw ON rw.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
       AND d.refclassid = 'pg_catalog.pg_class'::regclass
       AND d.refobjid IN (SELECT oid FROM protected_table)
       AND rw.ev_class <> d.refobjid
    UNION
    SELECT rw.ev_class, derived.base
      FROM derived_from_protected AS derived
      JOIN pg_catalog.pg_depend AS d
        ON d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = derived.oid
       AND d.classid = 'pg_catalog.pg_rewrite'::regclass
      JOIN pg_catalog.pg_rewrite AS rw ON rw.oid = d.objid
     WHERE rw.ev_class <> derived.oid
)"""


def holders(check: str) -> str:
    """SQL text: who among the application roles passes ``check``, for a message; NULL if nobody.

    ``check`` is a privilege test with ``{role}`` where the role goes, e.g.
    ``pg_catalog.has_table_privilege({role}, c.oid, 'TRUNCATE')``. PUBLIC is named alone when it
    passes (everyone does then); otherwise the roles that pass without getting it from another
    application role they belong to (the group, not each of its hundred principals).
    """
    public = check.format(role="'public'")
    own = check.format(role="a.oid")
    inherited = check.format(role="g.oid")
    return f"""(CASE WHEN {public} THEN 'PUBLIC' ELSE (
        SELECT pg_catalog.string_agg(a.rolname, ', ' ORDER BY a.rolname)
          FROM application_role AS a
         WHERE {own}
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members AS m
                             JOIN application_role AS g ON g.oid = m.roleid
                            WHERE m.member = a.oid AND {inherited})) END)"""

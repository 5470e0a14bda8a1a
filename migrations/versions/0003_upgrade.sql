-- agency-rls revision 0003: hardening (recorded change from 0002 to rls_policies/sql at 0003).
--
-- 1. A role prefix belongs to exactly one database. Roles are cluster-wide: before this
--    revision a second database migrated with the same prefix adopted the first one's roles.
--    Every role of the prefix now carries a marker that names its database
--    ('agency-rls:management database=<db>', 'agency-rls:principal database=<db>'); other
--    databases refuse to adopt, alter or drop it. A prefix already shared is refused here.
-- 2. A principal row may only name a role that does not exist yet, or one provisioned for
--    exactly its mapping (agency_rls.provisioned_principal), in canonical lower case; the scope
--    functions honour a row only when its role was provisioned for this database and mapping.
-- 3. Provisioning serialises on a lock of agency_rls.provision_lock, which principals cannot
--    take (the advisory lock it used before could be held by anyone).

DO $claim$
DECLARE
    management CONSTANT text[] := ARRAY[{{owner_name}}, {{helper_name}}, {{backend_name}}, {{agency_group_name}},
                                        {{agency_writer_group_name}}, {{insurer_group_name}}];
    groups CONSTANT text[] := ARRAY[{{agency_group_name}}, {{agency_writer_group_name}}, {{insurer_group_name}}];
    management_marker CONSTANT text := 'agency-rls:management database=' || pg_catalog.current_database();
    principal_marker CONSTANT text := 'agency-rls:principal database=' || pg_catalog.current_database();
    others text;
    victim record;
BEGIN
    -- Another database migrated with this prefix has tables owned by the owner role and functions
    -- owned by the helper there (no principal can make objects those roles own).
    SELECT pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(db.datname), ', ') INTO others
      FROM pg_catalog.pg_shdepend AS d
      JOIN pg_catalog.pg_roles AS r ON r.oid = d.refobjid
                                   AND d.refclassid = 'pg_catalog.pg_authid'::regclass
      JOIN pg_catalog.pg_database AS db ON db.oid = d.dbid
     WHERE r.rolname IN ({{owner_name}}, {{helper_name}})
       AND d.deptype = 'o'
       AND db.datname <> pg_catalog.current_database();
    IF others IS NOT NULL THEN
        RAISE EXCEPTION 'agency-rls: role prefix % is shared with database %; a prefix must belong to one database',
            pg_catalog.quote_literal({{prefix_literal}}), others
            USING HINT = 'downgrade the other database to base (or dump it and restore it under another --role-prefix), then migrate again',
                  ERRCODE = 'duplicate_object';
    END IF;
    FOR victim IN SELECT r.rolname FROM pg_catalog.pg_roles AS r
                   WHERE r.rolname = ANY (management)
                     AND pg_catalog.shobj_description(r.oid, 'pg_authid') = 'agency-rls:management'
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', victim.rolname, management_marker);
    END LOOP;
    FOR victim IN SELECT DISTINCT m.rolname
                    FROM pg_catalog.pg_auth_members AS am
                    JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
                    JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
                   WHERE g.rolname = ANY (groups)
                     AND pg_catalog.shobj_description(m.oid, 'pg_authid') = 'agency-rls:principal'
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', victim.rolname, principal_marker);
    END LOOP;
END
$claim$;

-- Provisioning serialises on a lock of this table (SHARE UPDATE EXCLUSIVE, which conflicts with
-- itself). Principals have no privilege on it, so they cannot take that lock or any lock that
-- conflicts with it: a PREPAREd statement naming it holds only ACCESS SHARE, and every other
-- way to lock it checks privileges first. (An advisory lock would not do: any role can take one.)
CREATE TABLE agency_rls.provision_lock ();
ALTER TABLE agency_rls.provision_lock OWNER TO {{owner}};
REVOKE ALL ON agency_rls.provision_lock FROM PUBLIC;
COMMENT ON TABLE agency_rls.provision_lock IS 'agency-rls: agency-rls provision locks this table; it holds no rows';

-- agency-rls: what each principal role was provisioned for.
--
-- agency-rls provision records here, for every principal role it creates, the mapping of the
-- principal row it created the role for. The scope functions honour a principal row only when
-- it matches this record, and a principal row naming a role that exists is accepted only when
-- it matches too: a reload of the same principal rows works, but a row that would hand an
-- existing role another scope (a group or management role, another database's role, or a live
-- principal remapped by DELETE + INSERT, even in one statement) is refused. To remap a
-- principal: delete its row, run 'agency-rls provision --prune' (which drops the role and its
-- record), insert the new row, provision.
CREATE TABLE agency_rls.provisioned_principal (
    role_name  text PRIMARY KEY,
    kind       text NOT NULL,
    agency_id  bigint,
    insurer_id bigint
);
ALTER TABLE agency_rls.provisioned_principal OWNER TO {{owner}};
REVOKE ALL ON agency_rls.provisioned_principal FROM PUBLIC;
GRANT SELECT ON agency_rls.provisioned_principal TO {{helper}};
COMMENT ON TABLE agency_rls.provisioned_principal IS 'agency-rls: the mapping each principal role was provisioned for (written by agency-rls provision)';

-- Principal roles provisioned before this revision: their current principal rows are the
-- mappings they were provisioned for.
INSERT INTO agency_rls.provisioned_principal (role_name, kind, agency_id, insurer_id)
SELECT p.role_name, p.kind, p.agency_id, p.insurer_id
  FROM public.principal AS p
  JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
 WHERE pg_catalog.shobj_description(r.oid, 'pg_authid')
       = 'agency-rls:principal database=' || pg_catalog.current_database();

-- The caller's principal row: kind, agency, insurer (for an agency principal: its restriction).
-- No row for a role that is not a principal, so every scope below is empty: default deny.
-- A row counts only when provisioning created its role for this database (the role's marker
-- comment names it) and for this very mapping (agency_rls.provisioned_principal): a row naming
-- a group or management role (which every principal can SET ROLE to), another database's role,
-- a role nobody provisioned, or a principal remapped behind provisioning's back grants nothing.
CREATE OR REPLACE FUNCTION agency_rls.acting_principal(OUT kind text, OUT agency_id bigint, OUT insurer_id bigint)
    RETURNS SETOF record ROWS 1
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.kind, p.agency_id, p.insurer_id
      FROM public.principal AS p
      JOIN agency_rls.provisioned_principal AS pp
        ON pp.role_name = p.role_name
       AND pp.kind = p.kind
       AND pp.agency_id IS NOT DISTINCT FROM p.agency_id
       AND pp.insurer_id IS NOT DISTINCT FROM p.insurer_id
      JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
     WHERE p.role_name = agency_rls.acting_role()
       AND pg_catalog.shobj_description(r.oid, 'pg_authid')
           = 'agency-rls:principal database=' || pg_catalog.current_database();
END
$$;

-- A new principal row names a role that does not exist yet (provision creates it), or a role
-- provisioned for exactly this mapping. Names are canonical: lower-case ASCII letters, digits and
-- _ (unquoted SQL folds case, so 'Agency_S1' and 'agency_s1' would be two principals and the
-- wrong one is entered; look-alike and invisible characters read as another name), at most 63
-- bytes (longer names are truncated by PostgreSQL), no pg_; no case-insensitive twin of a row.
-- SECURITY DEFINER (owned by {{helper}}) so that the checks see every principal row and the
-- provisioning record.
CREATE FUNCTION agency_rls.principal_row_names_a_new_role() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.role_name IS NULL
       OR NEW.role_name !~ '^[a-z_][a-z0-9_]*$'
       OR pg_catalog.octet_length(NEW.role_name) > 63
       OR NEW.role_name LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'agency-rls: principal role name % is not canonical', pg_catalog.quote_literal(NEW.role_name)
            USING HINT = 'use lower-case ASCII letters, digits and _ (at most 63, not starting with a digit or pg_)',
                  ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT FROM public.principal AS p
                WHERE pg_catalog.lower(p.role_name) = NEW.role_name
                  AND p.role_name <> NEW.role_name) THEN
        RAISE EXCEPTION 'agency-rls: principal % collides with an existing principal', pg_catalog.quote_ident(NEW.role_name)
            USING HINT = 'principal role names must differ in more than case',
                  ERRCODE = 'unique_violation';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = NEW.role_name)
       AND NOT EXISTS (SELECT FROM agency_rls.provisioned_principal AS pp
                        WHERE pp.role_name = NEW.role_name
                          AND pp.kind = NEW.kind
                          AND pp.agency_id IS NOT DISTINCT FROM NEW.agency_id
                          AND pp.insurer_id IS NOT DISTINCT FROM NEW.insurer_id) THEN
        RAISE EXCEPTION 'agency-rls: role % already exists and was not provisioned for this principal row',
                pg_catalog.quote_ident(NEW.role_name)
            USING HINT = 'to remap a principal: delete its row, run agency-rls provision --prune (drops the role), insert the new row, run agency-rls provision',
                  ERRCODE = 'duplicate_object';
    END IF;
    RETURN NEW;
END
$$;
ALTER FUNCTION agency_rls.principal_row_names_a_new_role() OWNER TO {{helper}};

CREATE TRIGGER principal_row_names_a_new_role
    BEFORE INSERT ON public.principal
    FOR EACH ROW
    EXECUTE FUNCTION agency_rls.principal_row_names_a_new_role();
REVOKE ALL ON FUNCTION agency_rls.principal_row_names_a_new_role() FROM PUBLIC;

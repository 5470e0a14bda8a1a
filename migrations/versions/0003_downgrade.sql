-- agency-rls revision 0003, downgrade: back to revision 0002.
--
-- What principals made for themselves (large objects, default privileges, for themselves or for
-- a group role they can SET ROLE to) is dropped first, so that the roles can be dropped later
-- (revision 0002's downgrade drops them). Policies and grants naming the group roles stay.

DROP TRIGGER principal_row_names_a_new_role ON public.principal;
DROP FUNCTION agency_rls.principal_row_names_a_new_role();

CREATE OR REPLACE FUNCTION agency_rls.acting_principal(OUT kind text, OUT agency_id bigint, OUT insurer_id bigint)
    RETURNS SETOF record ROWS 1
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.kind, p.agency_id, p.insurer_id
      FROM public.principal AS p
     WHERE p.role_name = agency_rls.acting_role();
END
$$;

DROP TABLE agency_rls.provision_lock;
DROP TABLE agency_rls.provisioned_principal;

DO $owned$
DECLARE
    groups CONSTANT text[] := ARRAY[{{agency_group_name}}, {{agency_writer_group_name}}, {{insurer_group_name}}];
    -- Roles whose privileges must survive (policies and grants name them): no DROP OWNED for them.
    kept CONSTANT text[] := groups || ARRAY[{{backend_name}}];
    management_marker CONSTANT text := 'agency-rls:management database=' || pg_catalog.current_database();
    principal_marker CONSTANT text := 'agency-rls:principal database=' || pg_catalog.current_database();
    victim record;
    grantee record;
    kind text;
    scope text;
    elsewhere text;
BEGIN
    -- What this database's roles own or are granted in OTHER databases (a LOGIN principal can
    -- connect there and create a large object, or grant one to a group role): it keeps the roles
    -- from being dropped, and only a session in that database can remove it. Refuse, naming it.
    SELECT pg_catalog.string_agg(pg_catalog.format('in database %I: DROP OWNED BY %s;', x.datname, x.roles), ' ')
      INTO elsewhere
      FROM (SELECT db.datname, pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(r.rolname), ', ') AS roles
              FROM pg_catalog.pg_shdepend AS d
              JOIN pg_catalog.pg_roles AS r ON r.oid = d.refobjid
                                           AND d.refclassid = 'pg_catalog.pg_authid'::regclass
              JOIN pg_catalog.pg_database AS db ON db.oid = d.dbid
             WHERE db.datname <> pg_catalog.current_database()
               AND (r.rolname = ANY (ARRAY[{{owner_name}}, {{helper_name}}] || kept)
                    OR pg_catalog.shobj_description(r.oid, 'pg_authid') = principal_marker)
             GROUP BY db.datname) AS x;
    IF elsewhere IS NOT NULL THEN
        RAISE EXCEPTION 'agency-rls: roles of this database own or are granted objects in other databases, so they cannot be dropped: %', elsewhere
            USING HINT = 'connect to each database named and run the DROP OWNED BY shown (or REVOKE what was granted), then downgrade again; REVOKE CONNECT on other databases FROM PUBLIC keeps principals out of them',
                  ERRCODE = 'dependent_objects_still_exist';
    END IF;
    FOR victim IN SELECT DISTINCT m.rolname
                    FROM pg_catalog.pg_auth_members AS am
                    JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
                    JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
                   WHERE g.rolname = ANY (groups)
                     AND pg_catalog.shobj_description(m.oid, 'pg_authid') = principal_marker
    LOOP
        EXECUTE pg_catalog.format('DROP OWNED BY %I', victim.rolname);
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', victim.rolname, 'agency-rls:principal');
    END LOOP;
    PERFORM pg_catalog.lo_unlink(lo.oid)
       FROM pg_catalog.pg_largeobject_metadata AS lo
       JOIN pg_catalog.pg_roles AS r ON r.oid = lo.lomowner
      WHERE r.rolname = ANY (kept);
    -- A pg_default_acl entry disappears when its privileges equal the built-in default: none in
    -- a schema; the owner's, plus PUBLIC's EXECUTE on functions and USAGE on types, globally.
    FOR victim IN SELECT a.defaclrole::pg_catalog.regrole::text AS owner, a.defaclnamespace,
                         a.defaclobjtype, a.defaclacl
                    FROM pg_catalog.pg_default_acl AS a
                    JOIN pg_catalog.pg_roles AS r ON r.oid = a.defaclrole
                   WHERE r.rolname = ANY (kept)
    LOOP
        kind := CASE victim.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                     WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END;
        scope := CASE WHEN victim.defaclnamespace = 0 THEN ''
                      ELSE 'IN SCHEMA ' || victim.defaclnamespace::pg_catalog.regnamespace::text END;
        FOR grantee IN SELECT DISTINCT acl.grantee FROM pg_catalog.aclexplode(victim.defaclacl) AS acl LOOP
            EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %s %s REVOKE ALL ON %s FROM %s',
                victim.owner, scope, kind,
                CASE WHEN grantee.grantee = 0 THEN 'PUBLIC' ELSE grantee.grantee::pg_catalog.regrole::text END);
        END LOOP;
        IF victim.defaclnamespace = 0 THEN
            EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT ALL ON %s TO %s',
                victim.owner, kind, victim.owner);
            IF kind IN ('FUNCTIONS', 'TYPES') THEN
                EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT %s ON %s TO PUBLIC',
                    victim.owner, CASE kind WHEN 'FUNCTIONS' THEN 'EXECUTE' ELSE 'USAGE' END, kind);
            END IF;
        END IF;
    END LOOP;
    FOR victim IN SELECT r.rolname FROM pg_catalog.pg_roles AS r
                   WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') = management_marker
                     AND r.rolname = ANY (ARRAY[{{owner_name}}, {{helper_name}}] || kept)
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', victim.rolname, 'agency-rls:management');
    END LOOP;
END
$owned$;

-- agency-rls: remove everything the security migration created, leaving the tables as
-- plain tables owned by the migrating role. Principal roles this database provisioned
-- (members of its group roles, marked 'agency-rls:principal database=<this database>') and the
-- management roles are dropped, after what they own in this database (large objects, default
-- privileges a principal set for itself or for a group role it can SET ROLE to) is dropped. What
-- they own in another database stops the teardown with the commands that remove it there.

DROP TRIGGER IF EXISTS principal_mapping_is_immutable ON public.principal;
DROP TRIGGER IF EXISTS principal_row_names_a_new_role ON public.principal;

DO $policies$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT schemaname, tablename, policyname FROM pg_catalog.pg_policies
              WHERE schemaname = 'public'
                AND tablename IN ('agency', 'supervision', 'entrustment', 'customer', 'contract',
                                  'contract_handler', 'notice', 'notice_receipt', 'principal')
    LOOP
        EXECUTE pg_catalog.format('DROP POLICY %I ON %I.%I', p.policyname, p.schemaname, p.tablename);
    END LOOP;
END
$policies$;

ALTER TABLE public.agency           NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.supervision      NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.entrustment      NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.customer         NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract         NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract_handler NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice           NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice_receipt   NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.principal        NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;

REVOKE ALL ON public.insurer, public.agency, public.supervision, public.entrustment,
              public.customer, public.contract, public.contract_handler, public.notice,
              public.notice_receipt, public.principal
    FROM PUBLIC, {{helper}}, {{agency_group}}, {{agency_writer_group}}, {{insurer_group}}, {{loader}};

ALTER TABLE public.insurer          OWNER TO CURRENT_USER;
ALTER TABLE public.agency           OWNER TO CURRENT_USER;
ALTER TABLE public.supervision      OWNER TO CURRENT_USER;
ALTER TABLE public.entrustment      OWNER TO CURRENT_USER;
ALTER TABLE public.customer         OWNER TO CURRENT_USER;
ALTER TABLE public.contract         OWNER TO CURRENT_USER;
ALTER TABLE public.contract_handler OWNER TO CURRENT_USER;
ALTER TABLE public.notice           OWNER TO CURRENT_USER;
ALTER TABLE public.notice_receipt   OWNER TO CURRENT_USER;
ALTER TABLE public.principal        OWNER TO CURRENT_USER;

DROP SCHEMA agency_rls CASCADE;

-- The handler links copied onto rows (scope_columns.sql); their triggers and refresh functions
-- went with the schema.
DROP INDEX public.notice_addressee_created_idx;
-- The principal twin check's index (principal_guard.sql).
DROP INDEX public.principal_role_name_lower_idx;
ALTER TABLE public.contract DROP COLUMN handler_agency_ids, DROP COLUMN handler_windows;
ALTER TABLE public.customer
    DROP COLUMN handler_agency_ids, DROP COLUMN handler_insurer_ids, DROP COLUMN handler_windows,
    DROP COLUMN party_insurer_ids;

DO $roles$
DECLARE
    groups CONSTANT text[] := ARRAY[{{agency_group_name}}, {{agency_writer_group_name}}, {{insurer_group_name}}];
    management CONSTANT text[] := ARRAY[{{backend_name}}, {{agency_group_name}}, {{agency_writer_group_name}},
                                        {{insurer_group_name}}, {{loader_name}},
                                        {{helper_name}}, {{owner_name}}];
    superuser CONSTANT boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER);
    principal_marker CONSTANT text := 'agency-rls:principal database=' || pg_catalog.current_database();
    management_marker CONSTANT text := 'agency-rls:management database=' || pg_catalog.current_database();
    victim record;
    elsewhere text;
BEGIN
    -- What this database's roles own or are granted in OTHER databases (a LOGIN principal can
    -- connect there and create a large object, or grant one to a group role): it keeps the roles
    -- from being dropped, and only a session in that database can remove it. Refuse, naming it.
    SELECT pg_catalog.string_agg(pg_catalog.format(
               CASE WHEN superuser THEN 'in database %1$I: DROP OWNED BY %2$s;'
                    -- DROP OWNED needs the roles' privileges; a CREATEROLE DBA grants them to itself
                    ELSE 'in database %1$I: GRANT %2$s TO CURRENT_USER; DROP OWNED BY %2$s;' END,
               x.datname, x.roles), ' ')
      INTO elsewhere
      FROM (SELECT db.datname, pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(r.rolname), ', ') AS roles
              FROM pg_catalog.pg_shdepend AS d
              JOIN pg_catalog.pg_roles AS r ON r.oid = d.refobjid
                                           AND d.refclassid = 'pg_catalog.pg_authid'::regclass
              JOIN pg_catalog.pg_database AS db ON db.oid = d.dbid
             WHERE db.datname <> pg_catalog.current_database()
               AND (r.rolname = ANY (management)
                    OR pg_catalog.shobj_description(r.oid, 'pg_authid') = principal_marker)
             GROUP BY db.datname) AS x;
    IF elsewhere IS NOT NULL THEN
        RAISE EXCEPTION 'agency-rls: roles of this database own or are granted objects in other databases, so they cannot be dropped: %', elsewhere
            USING HINT = 'connect to each database named and run the DROP OWNED BY shown (or REVOKE what was granted), then downgrade again; REVOKE CONNECT on other databases FROM PUBLIC keeps principals out of them',
                  ERRCODE = 'dependent_objects_still_exist';
    END IF;
    -- What principals, the groups and the backend own here (nothing, unless a principal made it):
    -- large objects, default privileges. Policies and grants naming them are gone already.
    FOR victim IN SELECT DISTINCT m.rolname
               FROM pg_catalog.pg_auth_members AS am
               JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
               JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
              WHERE g.rolname = ANY (groups)
                AND pg_catalog.shobj_description(m.oid, 'pg_authid') = principal_marker
              UNION
             SELECT r.rolname FROM pg_catalog.pg_roles AS r
              WHERE r.rolname = ANY (groups || ARRAY[{{backend_name}}, {{loader_name}}])
                AND pg_catalog.shobj_description(r.oid, 'pg_authid') = management_marker
    LOOP
        IF NOT superuser THEN  -- DROP OWNED needs the role's privileges (a CREATEROLE DBA may grant them)
            EXECUTE pg_catalog.format('GRANT %I TO CURRENT_USER', victim.rolname);
        END IF;
        EXECUTE pg_catalog.format('DROP OWNED BY %I', victim.rolname);
    END LOOP;
    FOR victim IN SELECT DISTINCT m.rolname
               FROM pg_catalog.pg_auth_members AS am
               JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
               JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
              WHERE g.rolname = ANY (groups)
                AND pg_catalog.shobj_description(m.oid, 'pg_authid') = principal_marker
    LOOP
        EXECUTE pg_catalog.format('DROP ROLE %I', victim.rolname);
    END LOOP;
    FOR victim IN SELECT rolname FROM pg_catalog.pg_roles
              WHERE rolname = ANY (management)
                AND pg_catalog.shobj_description(oid, 'pg_authid') = management_marker
              ORDER BY pg_catalog.array_position(management, rolname::text)
    LOOP
        EXECUTE pg_catalog.format('DROP ROLE %I', victim.rolname);
    END LOOP;
END
$roles$;

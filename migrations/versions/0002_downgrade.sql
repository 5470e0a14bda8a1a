-- agency-rls revision 0002, downgrade (recorded copy of rls_policies/sql/teardown.sql).

-- agency-rls: remove everything the security migration created, leaving the tables as
-- plain tables owned by the migrating role. Principal roles this database provisioned
-- (members of its group roles, marked 'agency-rls:principal') and the management roles are
-- dropped unless another database still uses them.

DROP TRIGGER IF EXISTS principal_mapping_is_immutable ON public.principal;

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
    FROM PUBLIC, {{helper}}, {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};

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

DO $roles$
DECLARE
    groups CONSTANT text[] := ARRAY[{{agency_group_name}}, {{agency_writer_group_name}}, {{insurer_group_name}}];
    management CONSTANT text[] := ARRAY[{{backend_name}}, {{agency_group_name}}, {{agency_writer_group_name}},
                                        {{insurer_group_name}},
                                        {{helper_name}}, {{owner_name}}];
    victim record;
BEGIN
    -- Still used by another database (same role prefix)? Then leave every role in place.
    IF EXISTS (SELECT FROM pg_catalog.pg_shdepend AS d
                 JOIN pg_catalog.pg_roles AS mr ON d.refobjid = mr.oid
                                               AND d.refclassid = 'pg_catalog.pg_authid'::regclass
                WHERE mr.rolname = ANY (management)
                  AND d.dbid <> (SELECT oid FROM pg_catalog.pg_database
                                  WHERE datname = pg_catalog.current_database()))
    THEN
        RAISE NOTICE 'agency-rls: management roles are still used by another database; roles kept';
        RETURN;
    END IF;
    FOR victim IN SELECT DISTINCT m.rolname
               FROM pg_catalog.pg_auth_members AS am
               JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
               JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
              WHERE g.rolname = ANY (groups)
                AND pg_catalog.shobj_description(m.oid, 'pg_authid') = 'agency-rls:principal'
    LOOP
        EXECUTE pg_catalog.format('DROP ROLE %I', victim.rolname);
    END LOOP;
    FOR victim IN SELECT rolname FROM pg_catalog.pg_roles
              WHERE rolname = ANY (management)
                AND pg_catalog.shobj_description(oid, 'pg_authid') = 'agency-rls:management'
              ORDER BY pg_catalog.array_position(management, rolname::text)
    LOOP
        EXECUTE pg_catalog.format('DROP ROLE %I', victim.rolname);
    END LOOP;
END
$roles$;

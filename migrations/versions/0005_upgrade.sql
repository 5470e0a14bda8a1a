-- agency-rls revision 0005: a loader role (recorded change from 0004 to rls_policies/sql at 0005).
--
-- Loads and maintenance (provision's sequence and derived-column repairs) needed a superuser:
-- row level security is forced on every table. {{loader}} is NOLOGIN; policies open every row to
-- it, to read and write; the DBA and ETL logins join it.

DO $loader$
DECLARE
    marker CONSTANT text := 'agency-rls:management database=' || pg_catalog.current_database();
    existing pg_catalog.pg_roles%ROWTYPE;
BEGIN
    SELECT * INTO existing FROM pg_catalog.pg_roles WHERE rolname = {{loader_name}};
    IF NOT FOUND THEN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN NOINHERIT', {{loader_name}});
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', {{loader_name}}, marker);
    ELSIF pg_catalog.shobj_description(existing.oid, 'pg_authid') IS DISTINCT FROM marker
          OR existing.rolsuper OR existing.rolcreaterole OR existing.rolcreatedb
          OR existing.rolreplication OR existing.rolbypassrls THEN
        RAISE EXCEPTION 'agency-rls: role % exists and is not an agency-rls management role of this database',
            pg_catalog.quote_ident({{loader_name}})
            USING HINT = 'drop that role, or migrate this database under another role prefix';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('GRANT %I TO CURRENT_USER', {{loader_name}});
    END IF;
END
$loader$;

-- Loads and maintenance -----------------------------------------------------------------------
-- {{loader}} reads and writes every row (NOLOGIN; the DBA and ETL logins join it): what loaders
-- got from SUPERUSER, without BYPASSRLS and only on these tables.
CREATE POLICY loader_all ON public.agency
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.supervision
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.entrustment
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.customer
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.contract
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.contract_handler
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.notice
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.notice_receipt
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);
CREATE POLICY loader_all ON public.principal
    AS PERMISSIVE FOR ALL TO {{loader}} USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
    ON public.insurer, public.agency, public.supervision, public.entrustment, public.customer,
       public.contract, public.contract_handler, public.notice, public.notice_receipt, public.principal
    TO {{loader}};

-- Privileges nobody here granted: the installer's default privileges (ALTER DEFAULT PRIVILEGES,
-- common on managed services) give a table or identity sequence to some role or PUBLIC the moment
-- revision 0001 creates it. TRUNCATE, REFERENCES, TRIGGER and writes ignore or bypass row level
-- security, and a sequence's last_value counts hidden rows: everything but this definition's own
-- grants is revoked.
DO $foreign_grants$
DECLARE
    ours CONSTANT text[] := ARRAY[{{owner_name}}, {{helper_name}}, {{backend_name}}, {{agency_group_name}},
                                  {{agency_writer_group_name}}, {{insurer_group_name}}, {{loader_name}}];
    tables CONSTANT text[] := ARRAY['insurer', 'agency', 'supervision', 'entrustment', 'customer', 'contract',
                                    'contract_handler', 'notice', 'notice_receipt', 'principal'];
    item record;
BEGIN
    FOR item IN
        SELECT DISTINCT c.oid::regclass::text AS object, c.relkind,
               CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END AS grantee
          FROM pg_catalog.pg_class AS c
          LEFT JOIN pg_catalog.pg_depend AS seq
            ON c.relkind = 'S' AND seq.classid = 'pg_catalog.pg_class'::regclass AND seq.objid = c.oid
           AND seq.refclassid = 'pg_catalog.pg_class'::regclass AND seq.deptype IN ('a', 'i')
          LEFT JOIN pg_catalog.pg_class AS owner_table ON owner_table.oid = seq.refobjid
          CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
          LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = acl.grantee
         WHERE c.relnamespace = 'public'::regnamespace
           AND (c.relname = ANY (tables) OR owner_table.relname = ANY (tables))
           AND acl.grantee <> c.relowner
           AND NOT (acl.grantee <> 0 AND r.rolname = ANY (ours))
           AND NOT (acl.grantee = 0 AND c.relname = 'insurer' AND acl.privilege_type = 'SELECT')
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s',
            CASE item.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, item.object, item.grantee);
    END LOOP;
    FOR item IN
        SELECT DISTINCT c.oid::regclass::text AS object, pg_catalog.quote_ident(a.attname) AS col,
               CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END AS grantee
          FROM pg_catalog.pg_class AS c
          JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attacl IS NOT NULL
          CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) AS acl
          LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = acl.grantee
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (tables)
           AND NOT (acl.grantee <> 0 AND r.rolname = ANY (ours))
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL (%s) ON TABLE %s FROM %s', item.col, item.object, item.grantee);
    END LOOP;
END
$foreign_grants$;

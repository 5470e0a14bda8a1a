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

-- agency-rls: ownership and privileges.
--
-- Principals get their privileges only through {{agency_group}} / {{insurer_group}}.
-- Reading is SELECT on every table (the policies decide which rows); the only writes are
-- the spec's: a prospect customer and contact columns for agencies, and notice receipts.
-- Column lists leave out id (principals never choose one) and registered_by_agency_id on
-- UPDATE. No DELETE, TRUNCATE, REFERENCES or TRIGGER for anyone, no CREATE on any schema.

-- A new owner needs CREATE on the schema unless a superuser hands the object over (a DBA without
-- SUPERUSER): granted for the hand-over only, and revoked right after.
GRANT CREATE ON SCHEMA public TO {{owner}};
ALTER TABLE public.insurer          OWNER TO {{owner}};
ALTER TABLE public.agency           OWNER TO {{owner}};
ALTER TABLE public.supervision      OWNER TO {{owner}};
ALTER TABLE public.entrustment      OWNER TO {{owner}};
ALTER TABLE public.customer         OWNER TO {{owner}};
ALTER TABLE public.contract         OWNER TO {{owner}};
ALTER TABLE public.contract_handler OWNER TO {{owner}};
ALTER TABLE public.notice           OWNER TO {{owner}};
ALTER TABLE public.notice_receipt   OWNER TO {{owner}};
ALTER TABLE public.principal        OWNER TO {{owner}};
REVOKE CREATE ON SCHEMA public FROM {{owner}};

-- The scope functions belong to the helper owner (it reads across scope, policies.sql); nobody else may run them but
-- the principals whose policies call them.
GRANT CREATE ON SCHEMA agency_rls TO {{helper}};
ALTER FUNCTION agency_rls.acting_role()               OWNER TO {{helper}};
ALTER FUNCTION agency_rls.acting_principal()          OWNER TO {{helper}};
ALTER FUNCTION agency_rls.insurer_id()                OWNER TO {{helper}};
ALTER FUNCTION agency_rls.unrestricted_agency_id()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.restricted_agency_id()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.scope_insurer_ids()         OWNER TO {{helper}};
ALTER FUNCTION agency_rls.supervised_agency_ids()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.supervisor_agency_ids()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handling_agency_ids()       OWNER TO {{helper}};
ALTER FUNCTION agency_rls.addressee_agency_ids()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.planned_agency_ids()        OWNER TO {{helper}};
ALTER FUNCTION agency_rls.planned_restriction()       OWNER TO {{helper}};
ALTER FUNCTION agency_rls.planned_insurer_id()        OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_agency_ids()        OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_supervision_ids()   OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_entrustment_ids()   OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_handler_insurer()  OWNER TO {{helper}};
ALTER FUNCTION agency_rls.validity(timestamptz, timestamptz) OWNER TO {{helper}};
ALTER FUNCTION agency_rls.refresh_contract_scope(bigint[]) OWNER TO {{helper}};
ALTER FUNCTION agency_rls.refresh_customer_scope(bigint[]) OWNER TO {{helper}};
ALTER FUNCTION agency_rls.refresh_all_scope_copies() OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_inserted()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_updated()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_deleted()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_truncated()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_inserted()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_updated()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_deleted()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_truncated()   OWNER TO {{helper}};
ALTER FUNCTION agency_rls.customer_rows_inserted()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.customer_rows_updated()     OWNER TO {{helper}};
REVOKE CREATE ON SCHEMA agency_rls FROM {{helper}};

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agency_rls FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.role_prefix() TO PUBLIC;
-- The backend resolves principal names (prefix + code) before it acts as one.
GRANT USAGE ON SCHEMA agency_rls TO {{backend}};
GRANT USAGE ON SCHEMA agency_rls TO {{helper}}, {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};
GRANT EXECUTE ON FUNCTION
    agency_rls.insurer_id(),
    agency_rls.unrestricted_agency_id(),
    agency_rls.restricted_agency_id(),
    agency_rls.scope_insurer_ids(),
    agency_rls.handling_agency_ids(),
    agency_rls.addressee_agency_ids(),
    agency_rls.planned_agency_ids(),
    agency_rls.planned_restriction(),
    agency_rls.planned_insurer_id(),
    agency_rls.visible_agency_ids(),
    agency_rls.visible_supervision_ids(),
    agency_rls.visible_entrustment_ids()
    TO {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};

-- Tables.
REVOKE ALL ON public.insurer, public.agency, public.supervision, public.entrustment,
              public.customer, public.contract, public.contract_handler, public.notice,
              public.notice_receipt, public.principal
    FROM PUBLIC;
GRANT SELECT ON public.insurer TO PUBLIC;
-- The scope functions read across scope (policies.sql opens every row to their owner).
GRANT SELECT ON public.agency, public.supervision, public.entrustment, public.customer,
                public.contract, public.contract_handler, public.notice, public.principal
    TO {{helper}};
GRANT UPDATE (handler_agency_ids, handler_windows) ON public.contract TO {{helper}};
GRANT UPDATE (handler_agency_ids, handler_insurer_ids, handler_windows, party_insurer_ids)
    ON public.customer TO {{helper}};
GRANT SELECT ON public.agency, public.supervision, public.entrustment,
                public.contract, public.contract_handler, public.notice, public.notice_receipt,
                public.principal
    TO {{agency_group}}, {{insurer_group}};
-- customer: every column but the copied links of the customer's contracts (scope_columns.sql),
-- which would tell a viewer about contracts it does not see.
GRANT SELECT (id, full_name, full_name_kana, address, phone, fax, email, birth_date, gender,
              registered_by_agency_id)
    ON public.customer TO {{agency_group}}, {{insurer_group}};
GRANT INSERT (full_name, full_name_kana, address, phone, fax, email, birth_date, gender,
              registered_by_agency_id)
    ON public.customer TO {{agency_writer_group}};
GRANT UPDATE (address, phone, fax, email) ON public.customer TO {{agency_writer_group}};
GRANT INSERT (notice_id, agency_id, read_at) ON public.notice_receipt TO {{agency_writer_group}};
-- Loads and maintenance (policies.sql opens every row to the loader).
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
    ON public.insurer, public.agency, public.supervision, public.entrustment, public.customer,
       public.contract, public.contract_handler, public.notice, public.notice_receipt, public.principal
    TO {{loader}};
-- After a load with triggers off: recompute the copied links (provision runs it).
GRANT USAGE ON SCHEMA agency_rls TO {{loader}};
GRANT EXECUTE ON FUNCTION agency_rls.refresh_all_scope_copies() TO {{loader}};

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

-- A DBA without SUPERUSER joined the helper only to give it its functions (roles.sql).
DO $helper$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM CURRENT_USER', {{helper_name}});
    END IF;
END
$helper$;

-- agency-rls: row level security policies, one block per table.
--
-- Every protected table has row level security ENABLED and FORCED (the owner is bound too).
-- With no policy for a role, a table shows it nothing: default deny. Policies name the group
-- roles they apply to, never PUBLIC. Each scope function is wrapped in (SELECT …) so that it
-- runs once per statement, and the table is filtered by an indexed column.
--
-- Where a row belongs to an insurer (contract, contract_handler, notice), the entrustment guard
-- is RESTRICTIVE: a permissive policy added later can never widen it.

-- insurer: no personal data, readable by every role; no row level security.

-- agency ----------------------------------------------------------------------------------
ALTER TABLE public.agency ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agency FORCE ROW LEVEL SECURITY;
CREATE POLICY agency_read ON public.agency
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.visible_agency_ids())::bigint[]));

-- supervision -----------------------------------------------------------------------------
ALTER TABLE public.supervision ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.supervision FORCE ROW LEVEL SECURITY;
CREATE POLICY supervision_read ON public.supervision
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_supervision_ids())::bigint[]));

-- entrustment -----------------------------------------------------------------------------
ALTER TABLE public.entrustment ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.entrustment FORCE ROW LEVEL SECURITY;
CREATE POLICY entrustment_read ON public.entrustment
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.visible_entrustment_ids())::bigint[]));

-- contract --------------------------------------------------------------------------------
ALTER TABLE public.contract ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract FORCE ROW LEVEL SECURITY;
CREATE POLICY contract_read_handled ON public.contract
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[]));
CREATE POLICY contract_read_insurer ON public.contract
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY contract_entrustment_guard ON public.contract
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- contract_handler: the handler rows of the contracts the caller sees (any agency, any validity).
-- insurer_id is the contract's, kept exact by a trigger (derived_columns.sql).
ALTER TABLE public.contract_handler ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract_handler FORCE ROW LEVEL SECURITY;
CREATE POLICY contract_handler_read_handled ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (contract_id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[]));
CREATE POLICY contract_handler_read_insurer ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY contract_handler_entrustment_guard ON public.contract_handler
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- customer --------------------------------------------------------------------------------
ALTER TABLE public.customer ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.customer FORCE ROW LEVEL SECURITY;
CREATE POLICY customer_read_through_contract ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.contract_customer_ids())::bigint[]));
CREATE POLICY customer_read_prospect ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY customer_insert_prospect ON public.customer
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY customer_update_contact ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING (id = ANY ((SELECT agency_rls.updatable_customer_ids())::bigint[]))
    WITH CHECK (id = ANY ((SELECT agency_rls.updatable_customer_ids())::bigint[]));

-- notice ----------------------------------------------------------------------------------
ALTER TABLE public.notice ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice FORCE ROW LEVEL SECURITY;
CREATE POLICY notice_read_addressed ON public.notice
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));
CREATE POLICY notice_read_insurer ON public.notice
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY notice_entrustment_guard ON public.notice
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- notice_receipt --------------------------------------------------------------------------
ALTER TABLE public.notice_receipt ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice_receipt FORCE ROW LEVEL SECURITY;
CREATE POLICY notice_receipt_read_own ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY notice_receipt_read_restricted ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.restricted_agency_id())
           AND notice_id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));
CREATE POLICY notice_receipt_insert_own ON public.notice_receipt
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (agency_id = (SELECT agency_rls.unrestricted_agency_id())
                AND notice_id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));

-- principal: a principal sees the row naming its own role. current_user is the role in
-- force (policies run as the caller); a role that merely inherits a principal's privileges
-- has another name and sees nothing. (current_user is a "name"; cast once to text so the
-- primary key index applies.)
ALTER TABLE public.principal ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.principal FORCE ROW LEVEL SECURITY;
CREATE POLICY principal_read_own ON public.principal
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (role_name = (SELECT current_user::text));

-- The scope functions' owner reads across scope ----------------------------------------------
-- {{helper}} owns only the SECURITY DEFINER scope functions (and the derived-column trigger);
-- it is NOLOGIN and nobody is its member, so these policies open every row to the functions and
-- to nothing else. SELECT only. (Instead of BYPASSRLS, which a DBA without SUPERUSER cannot grant
-- on PostgreSQL 15, and which would reach every table of the database.)
CREATE POLICY scope_functions_read ON public.agency
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.supervision
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.entrustment
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.customer
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.contract
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.notice
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);
CREATE POLICY scope_functions_read ON public.principal
    AS PERMISSIVE FOR SELECT TO {{helper}} USING (true);

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

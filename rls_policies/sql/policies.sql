-- agency-rls: row level security policies, one block per table.
--
-- Every protected table has row level security ENABLED and FORCED (the owner is bound too).
-- With no policy for a role, a table shows it nothing: default deny. Policies name the group
-- roles they apply to, never PUBLIC. Each scope function is wrapped in (SELECT …) so that it
-- runs once per statement, and the table is filtered by an indexed column: an id or agency column
-- against a small array, or the handler links copied onto the row (scope_columns.sql, a GIN
-- index) against the caller's agencies. A row that depends on another table's visibility (a
-- handler row on its contract, a notice on its contract and customer) asks that table with a
-- per-row EXISTS, so the other table's own policies decide; OFFSET 0 keeps the planner from
-- turning the probe into a hashed SubPlan that would read the caller's whole scope first.
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
-- Handled now by the caller's agency or by an agency it supervises now: the copied links name
-- one of those agencies (the GIN index finds them), and one such link's window holds now().
-- The first half is RESTRICTIVE on purpose, and named to sort first: PostgreSQL applies each
-- restrictive policy at its own security level (in name order) and the permissive ones after
-- them, and only the first level may use an operator that is not LEAKPROOF (array overlap is
-- not) as an index condition. As a permissive policy behind the entrustment guard, the overlap
-- was a filter over every contract of the caller's insurers. The agencies folded into the plan
-- (agency_rls.planned_agency_ids(), scope_functions.sql) let the planner estimate the caller's own
-- share of the table; ORed with the agencies of this statement, so that a plan made earlier never
-- hides a row; the permissive policy decides with the links valid now.
CREATE POLICY contract_agency_handles ON public.contract
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (handler_agency_ids && agency_rls.planned_agency_ids()
           OR handler_agency_ids && (SELECT agency_rls.handling_agency_ids()));
CREATE POLICY contract_read_handled ON public.contract
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (EXISTS (SELECT
                     FROM unnest(handler_agency_ids, handler_windows) AS link (agency_id, valid)
                    WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                      AND link.valid @> now()));
-- Insurer principals: their own contracts. The insurer is folded into the plan and checked
-- against the caller at every statement; a plan folded with no insurer (made before the caller's
-- principal row was visible) asks the statement alone (agency_rls.planned_insurer_id() says why).
CREATE POLICY contract_read_insurer ON public.contract
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = agency_rls.planned_insurer_id()
               AND (SELECT agency_rls.insurer_id()) = agency_rls.planned_insurer_id()
           OR agency_rls.planned_insurer_id() IS NULL
               AND insurer_id = (SELECT agency_rls.insurer_id()));
-- The guard is a per-row check, "(…) IS TRUE" so that it is never an index condition: through
-- the insurer index it would read every contract of the caller's insurers in every statement
-- (a bitmap of hundreds of thousands of rows ANDed into every plan). The rows come from the
-- handler links' GIN index (agencies) or the insurer policy's index.
CREATE POLICY contract_entrustment_guard ON public.contract
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE)
    WITH CHECK ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE);

-- Seconded staff: only the insurer it is restricted to, as an equality the planner sees
-- (agency_rls.planned_restriction(): folded to "true" for every other principal).
CREATE POLICY contract_restricted_insurer ON public.contract
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (agency_rls.planned_restriction() IS NULL OR insurer_id = agency_rls.planned_restriction());

-- contract_handler: the handler rows of the contracts the caller sees (any agency, any validity).
-- insurer_id is the contract's, kept exact by a trigger (derived_columns.sql).
ALTER TABLE public.contract_handler ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract_handler FORCE ROW LEVEL SECURITY;
CREATE POLICY contract_handler_read_handled ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (EXISTS (SELECT FROM public.contract AS c WHERE c.id = contract_handler.contract_id OFFSET 0));
CREATE POLICY contract_handler_read_insurer ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = agency_rls.planned_insurer_id()
               AND (SELECT agency_rls.insurer_id()) = agency_rls.planned_insurer_id()
           OR agency_rls.planned_insurer_id() IS NULL
               AND insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY contract_handler_entrustment_guard ON public.contract_handler
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- customer --------------------------------------------------------------------------------
ALTER TABLE public.customer ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.customer FORCE ROW LEVEL SECURITY;
-- Policyholder or insured of a contract the caller sees: the contract policy's rule, on the
-- links of the customer's contracts copied onto the customer row (each with its insurer, for the
-- entrustment guard). The overlap with the agencies folded into the plan finds the candidates on
-- the GIN index (see contract_agency_handles); each is then decided with the links valid now.
CREATE POLICY customer_read_through_contract ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING ((handler_agency_ids && agency_rls.planned_agency_ids()
            OR handler_agency_ids && (SELECT agency_rls.handling_agency_ids()))
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()));
-- Insurer principals: policyholders and insureds of their contracts (the insurers of a customer's
-- contracts are copied onto the row). An insurer's customers are a large share of the table: with
-- the insurer folded into the plan (as on contract) the planner reads that share from pg_stats
-- instead of assuming 1% and driving joins from this side.
CREATE POLICY customer_read_insurer ON public.customer
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (party_insurer_ids @> ARRAY[agency_rls.planned_insurer_id()]
               AND (SELECT agency_rls.insurer_id()) = agency_rls.planned_insurer_id()
           OR agency_rls.planned_insurer_id() IS NULL
               AND party_insurer_ids @> ARRAY[(SELECT agency_rls.insurer_id())]);
CREATE POLICY customer_read_prospect ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY customer_insert_prospect ON public.customer
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));
-- Contact columns (column grants) of the customers it sees: through a contract, or its prospects.
CREATE POLICY customer_update_contact ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL
           AND (handler_agency_ids && agency_rls.planned_agency_ids()
                OR handler_agency_ids && (SELECT agency_rls.handling_agency_ids()))
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()))
    WITH CHECK ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL
           AND (handler_agency_ids && agency_rls.planned_agency_ids()
                OR handler_agency_ids && (SELECT agency_rls.handling_agency_ids()))
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()));
CREATE POLICY customer_update_prospect ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()))
    WITH CHECK (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));

-- notice ----------------------------------------------------------------------------------
ALTER TABLE public.notice ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice FORCE ROW LEVEL SECURITY;
-- Addressed to the caller's agency or to an agency supervising it now, and the contract and
-- customer it names (if any) are visible to the caller: asked of those tables, whose policies
-- decide (the customer's include the caller's own prospects).
CREATE POLICY notice_read_addressed ON public.notice
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (addressee_agency_id = ANY ((SELECT agency_rls.addressee_agency_ids())::bigint[])
           AND (contract_id IS NULL
                OR EXISTS (SELECT FROM public.contract AS c WHERE c.id = notice.contract_id OFFSET 0))
           AND (customer_id IS NULL
                OR EXISTS (SELECT FROM public.customer AS cu WHERE cu.id = notice.customer_id OFFSET 0)));
CREATE POLICY notice_read_insurer ON public.notice
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = agency_rls.planned_insurer_id()
               AND (SELECT agency_rls.insurer_id()) = agency_rls.planned_insurer_id()
           OR agency_rls.planned_insurer_id() IS NULL
               AND insurer_id = (SELECT agency_rls.insurer_id()));
-- The guard is a per-row check, "(…) IS TRUE" so that it is never an index condition: through
-- the insurer index it would read every notice of the caller's insurers in every statement
-- (a bitmap of hundreds of thousands of rows ANDed into every plan). The rows come from the
-- addressee index (agencies) or the insurer policy's index.
CREATE POLICY notice_entrustment_guard ON public.notice
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE)
    WITH CHECK ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE);

-- Seconded staff: as on contract.
CREATE POLICY notice_restricted_insurer ON public.notice
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (agency_rls.planned_restriction() IS NULL OR insurer_id = agency_rls.planned_restriction());

-- notice_receipt --------------------------------------------------------------------------
ALTER TABLE public.notice_receipt ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice_receipt FORCE ROW LEVEL SECURITY;
CREATE POLICY notice_receipt_read_own ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY notice_receipt_read_restricted ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.restricted_agency_id())
           AND EXISTS (SELECT FROM public.notice AS n WHERE n.id = notice_receipt.notice_id OFFSET 0));
CREATE POLICY notice_receipt_insert_own ON public.notice_receipt
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (agency_id = (SELECT agency_rls.unrestricted_agency_id())
                AND EXISTS (SELECT FROM public.notice AS n WHERE n.id = notice_receipt.notice_id OFFSET 0));

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
-- ... and the triggers it owns rewrite the copied handler links (scope_columns.sql; column grants
-- limit it to those columns).
CREATE POLICY scope_copies_refresh ON public.contract
    AS PERMISSIVE FOR UPDATE TO {{helper}} USING (true) WITH CHECK (true);
CREATE POLICY scope_copies_refresh ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{helper}} USING (true) WITH CHECK (true);

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

-- agency-rls revision 0007, downgrade: the caller's agencies as an InitPlan again (revision 0006).
-- (provision refreshes the copies through agency_rls.refresh_all_scope_copies(): at 0006 it asks
-- for `agency-rls migrate` first.)

DROP POLICY contract_restricted_insurer ON public.contract;
DROP POLICY notice_restricted_insurer ON public.notice;
DROP POLICY contract_agency_handles ON public.contract;
DROP POLICY customer_read_through_contract ON public.customer;
DROP POLICY customer_update_contact ON public.customer;

-- Handled now by the caller's agency or by an agency it supervises now: the copied links name
-- one of those agencies (the GIN index finds them), and one such link's window holds now().
-- The first half is RESTRICTIVE on purpose, and named to sort first: PostgreSQL applies each
-- restrictive policy at its own security level (in name order) and the permissive ones after
-- them, and only the first level may use an operator that is not LEAKPROOF (array overlap is
-- not) as an index condition. As a permissive policy behind the entrustment guard, the overlap
-- was a filter over every contract of the caller's insurers.
CREATE POLICY contract_agency_handles ON public.contract
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (handler_agency_ids && (SELECT agency_rls.handling_agency_ids()));

-- Policyholder or insured of a contract the caller sees: the contract policy's rule, on the
-- links of the customer's contracts copied onto the customer row (each with its insurer, for the
-- entrustment guard).
CREATE POLICY customer_read_through_contract ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (handler_agency_ids && (SELECT agency_rls.handling_agency_ids())
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()));

-- Contact columns (column grants) of the customers it sees: through a contract, or its prospects.
CREATE POLICY customer_update_contact ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL
           AND handler_agency_ids && (SELECT agency_rls.handling_agency_ids())
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()))
    WITH CHECK ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL
           AND handler_agency_ids && (SELECT agency_rls.handling_agency_ids())
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()));

REVOKE USAGE ON SCHEMA agency_rls FROM {{loader}};
ALTER ROLE {{backend}} RESET jit;
DROP FUNCTION agency_rls.planned_agency_ids();
DROP FUNCTION agency_rls.planned_restriction();
DROP FUNCTION agency_rls.refresh_all_scope_copies();

-- agency-rls revision 0008 (downgrade): insurer principals planned for their own insurer
--
-- Written by `agency-rls revision` from the difference between the definition recorded at the
-- previous revision and rls_policies/sql/, and checked to move one to the other on scratch
-- databases. Review it; data a change needs (back-filling a new column, say) is not generated.
-- Role names are placeholders (owner, owner_name … in double braces), filled in with the database's
-- role prefix when the revision runs. Once the revision is released, this file never changes.

-- Taking the management roles (a DBA without SUPERUSER)
-- A DBA without SUPERUSER (managed PostgreSQL) acts through the management roles it created, as
-- roles.sql does: it joins the owner, the helper and the loader, and leaves the helper at the end.
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('GRANT %I, %I, %I TO CURRENT_USER',
                                  {{owner_name}}, {{helper_name}}, {{loader_name}});
    END IF;
END
$members$;

-- Policies that change or go
DROP POLICY contract_read_insurer ON public.contract;
DROP POLICY contract_handler_read_insurer ON public.contract_handler;
DROP POLICY customer_read_insurer ON public.customer;
DROP POLICY notice_read_insurer ON public.notice;

-- Functions that go, or whose result or arguments change
DROP FUNCTION agency_rls.planned_insurer_id();

-- Policies
CREATE POLICY contract_read_insurer ON public.contract
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((insurer_id = ( SELECT agency_rls.insurer_id() AS insurer_id)));
CREATE POLICY contract_handler_read_insurer ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((insurer_id = ( SELECT agency_rls.insurer_id() AS insurer_id)));
CREATE POLICY notice_read_insurer ON public.notice
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((insurer_id = ( SELECT agency_rls.insurer_id() AS insurer_id)));
CREATE POLICY customer_read_insurer ON public.customer
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (((party_insurer_ids && ( SELECT agency_rls.scope_insurer_ids() AS scope_insurer_ids)) IS TRUE));

-- Leaving the helper again (a DBA without SUPERUSER)
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM CURRENT_USER', {{helper_name}});
    END IF;
END
$members$;

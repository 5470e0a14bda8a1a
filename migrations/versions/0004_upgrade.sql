-- agency-rls revision 0004: the scope functions' owner reads across scope through SELECT
-- policies that name it alone, and is no longer BYPASSRLS (no role of the project bypasses row
-- level security; a DBA without SUPERUSER can create every role).

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

ALTER ROLE {{helper}} NOBYPASSRLS;

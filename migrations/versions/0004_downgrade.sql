-- agency-rls revision 0004, downgrade: back to a BYPASSRLS owner of the scope functions.

ALTER ROLE {{helper}} BYPASSRLS;
DROP POLICY scope_functions_read ON public.agency;
DROP POLICY scope_functions_read ON public.supervision;
DROP POLICY scope_functions_read ON public.entrustment;
DROP POLICY scope_functions_read ON public.customer;
DROP POLICY scope_functions_read ON public.contract;
DROP POLICY scope_functions_read ON public.contract_handler;
DROP POLICY scope_functions_read ON public.notice;
DROP POLICY scope_functions_read ON public.principal;

-- agency-rls revision 0005, downgrade: no loader role (loads need a superuser again).

DROP POLICY loader_all ON public.agency;
DROP POLICY loader_all ON public.supervision;
DROP POLICY loader_all ON public.entrustment;
DROP POLICY loader_all ON public.customer;
DROP POLICY loader_all ON public.contract;
DROP POLICY loader_all ON public.contract_handler;
DROP POLICY loader_all ON public.notice;
DROP POLICY loader_all ON public.notice_receipt;
DROP POLICY loader_all ON public.principal;
REVOKE ALL
    ON public.insurer, public.agency, public.supervision, public.entrustment, public.customer,
       public.contract, public.contract_handler, public.notice, public.notice_receipt, public.principal
    FROM {{loader}};
DROP OWNED BY {{loader}};
DROP ROLE {{loader}};

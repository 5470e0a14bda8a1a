-- agency-rls revision 0001, downgrade: drop the domain tables (their data goes with them).
DROP TABLE public.notice_receipt;
DROP TABLE public.notice;
DROP TABLE public.contract_handler;
DROP TABLE public.contract;
DROP TABLE public.customer;
DROP TABLE public.entrustment;
DROP TABLE public.supervision;
DROP TABLE public.principal;
DROP TABLE public.agency;
DROP TABLE public.insurer;

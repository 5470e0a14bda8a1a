-- agency-rls revision 0008 (upgrade): insurer principals planned for their own insurer
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

-- Functions
CREATE OR REPLACE FUNCTION agency_rls.planned_insurer_id()
 RETURNS bigint
 LANGUAGE plpgsql
 IMMUTABLE PARALLEL RESTRICTED SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    RETURN (
        SELECT me.insurer_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'insurer'
    );
END
$function$;


-- Policies
CREATE POLICY contract_read_insurer ON public.contract
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((((insurer_id = agency_rls.planned_insurer_id()) AND (( SELECT agency_rls.insurer_id() AS insurer_id) = agency_rls.planned_insurer_id())) OR ((agency_rls.planned_insurer_id() IS NULL) AND (insurer_id = ( SELECT agency_rls.insurer_id() AS insurer_id)))));
CREATE POLICY contract_handler_read_insurer ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((((insurer_id = agency_rls.planned_insurer_id()) AND (( SELECT agency_rls.insurer_id() AS insurer_id) = agency_rls.planned_insurer_id())) OR ((agency_rls.planned_insurer_id() IS NULL) AND (insurer_id = ( SELECT agency_rls.insurer_id() AS insurer_id)))));
CREATE POLICY customer_read_insurer ON public.customer
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((((party_insurer_ids @> ARRAY[agency_rls.planned_insurer_id()]) AND (( SELECT agency_rls.insurer_id() AS insurer_id) = agency_rls.planned_insurer_id())) OR ((agency_rls.planned_insurer_id() IS NULL) AND (party_insurer_ids @> ARRAY[( SELECT agency_rls.insurer_id() AS insurer_id)]))));
CREATE POLICY notice_read_insurer ON public.notice
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((((insurer_id = agency_rls.planned_insurer_id()) AND (( SELECT agency_rls.insurer_id() AS insurer_id) = agency_rls.planned_insurer_id())) OR ((agency_rls.planned_insurer_id() IS NULL) AND (insurer_id = ( SELECT agency_rls.insurer_id() AS insurer_id)))));

-- Owners
GRANT CREATE ON SCHEMA agency_rls TO {{helper}};
ALTER FUNCTION agency_rls.planned_insurer_id() OWNER TO {{helper}};
REVOKE CREATE ON SCHEMA agency_rls FROM {{helper}};

-- Privileges
REVOKE EXECUTE ON FUNCTION agency_rls.planned_insurer_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.planned_insurer_id() TO {{agency_group}};
GRANT EXECUTE ON FUNCTION agency_rls.planned_insurer_id() TO {{agency_writer_group}};
GRANT EXECUTE ON FUNCTION agency_rls.planned_insurer_id() TO {{insurer_group}};

-- Leaving the helper again (a DBA without SUPERUSER)
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM CURRENT_USER', {{helper_name}});
    END IF;
END
$members$;

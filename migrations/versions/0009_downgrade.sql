-- agency-rls revision 0009 (downgrade): scope refresh in PL/pgSQL and the principal twin check on an index
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

-- Indexes that change or go
DROP INDEX public.principal_role_name_lower_idx;

-- Functions
CREATE OR REPLACE FUNCTION agency_rls.refresh_contract_scope(contract_ids bigint[])
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
BEGIN ATOMIC
 SELECT c.id
    FROM public.contract c
   WHERE (c.id = ANY (refresh_contract_scope.contract_ids))
   ORDER BY c.id
  FOR NO KEY UPDATE OF c;
 UPDATE public.contract c SET handler_agency_ids = fresh.agency_ids, handler_windows = fresh.windows
    FROM ( SELECT target.id,
             COALESCE(array_agg(h.agency_id ORDER BY h.id) FILTER (WHERE (h.id IS NOT NULL)), '{}'::bigint[]) AS agency_ids,
             COALESCE(array_agg(agency_rls.validity(h.valid_from, h.valid_to) ORDER BY h.id) FILTER (WHERE (h.id IS NOT NULL)), '{}'::tstzrange[]) AS windows
            FROM (( SELECT DISTINCT u.id
                    FROM unnest(refresh_contract_scope.contract_ids) u(id)) target
              LEFT JOIN public.contract_handler h ON ((h.contract_id = target.id)))
           GROUP BY target.id) fresh
   WHERE ((c.id = fresh.id) AND ((c.handler_agency_ids IS DISTINCT FROM fresh.agency_ids) OR (c.handler_windows IS DISTINCT FROM fresh.windows)));
END;

CREATE OR REPLACE FUNCTION agency_rls.refresh_customer_scope(customer_ids bigint[])
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
BEGIN ATOMIC
 SELECT cu.id
    FROM public.customer cu
   WHERE (cu.id = ANY (refresh_customer_scope.customer_ids))
   ORDER BY cu.id
  FOR NO KEY UPDATE OF cu;
 UPDATE public.customer cu SET handler_agency_ids = fresh.agency_ids, handler_insurer_ids = fresh.insurer_ids, handler_windows = fresh.windows, party_insurer_ids = fresh.party_insurer_ids
    FROM ( SELECT target.id,
             COALESCE(array_agg(link.agency_id ORDER BY party.contract_id, link.n) FILTER (WHERE (link.agency_id IS NOT NULL)), '{}'::bigint[]) AS agency_ids,
             COALESCE(array_agg(party.insurer_id ORDER BY party.contract_id, link.n) FILTER (WHERE (link.agency_id IS NOT NULL)), '{}'::bigint[]) AS insurer_ids,
             COALESCE(array_agg(link.valid ORDER BY party.contract_id, link.n) FILTER (WHERE (link.agency_id IS NOT NULL)), '{}'::tstzrange[]) AS windows,
             COALESCE(array_agg(DISTINCT party.insurer_id) FILTER (WHERE (party.insurer_id IS NOT NULL)), '{}'::bigint[]) AS party_insurer_ids
            FROM ((( SELECT DISTINCT u.id
                    FROM unnest(refresh_customer_scope.customer_ids) u(id)) target
              LEFT JOIN LATERAL ( SELECT c.id AS contract_id,
                     c.insurer_id,
                     c.handler_agency_ids,
                     c.handler_windows
                    FROM public.contract c
                   WHERE (c.policyholder_id = target.id)
                 UNION ALL
                  SELECT c.id,
                     c.insurer_id,
                     c.handler_agency_ids,
                     c.handler_windows
                    FROM public.contract c
                   WHERE ((c.insured_id = target.id) AND (c.policyholder_id IS DISTINCT FROM target.id))) party ON (true))
              LEFT JOIN LATERAL UNNEST(party.handler_agency_ids, party.handler_windows) WITH ORDINALITY link(agency_id, valid, n) ON (true))
           GROUP BY target.id) fresh
   WHERE ((cu.id = fresh.id) AND ((((cu.handler_agency_ids IS DISTINCT FROM fresh.agency_ids) OR (cu.handler_insurer_ids IS DISTINCT FROM fresh.insurer_ids)) OR (cu.handler_windows IS DISTINCT FROM fresh.windows)) OR (cu.party_insurer_ids IS DISTINCT FROM fresh.party_insurer_ids)));
END;


-- Leaving the helper again (a DBA without SUPERUSER)
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM CURRENT_USER', {{helper_name}});
    END IF;
END
$members$;

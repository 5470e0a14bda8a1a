-- agency-rls revision 0009 (upgrade): scope refresh in PL/pgSQL and the principal twin check on an index
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

-- Functions
CREATE OR REPLACE FUNCTION agency_rls.refresh_contract_scope(contract_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    -- Lock the rows first, read after: under READ COMMITTED the next statement takes a new
    -- snapshot, so a concurrent writer of these rows that committed while we waited is seen.
    -- (Read first and the UPDATE, after waiting, would write a value computed without it.)
    PERFORM c.id FROM public.contract AS c WHERE c.id = ANY (contract_ids) ORDER BY c.id FOR NO KEY UPDATE;
    UPDATE public.contract AS c
       SET handler_agency_ids = fresh.agency_ids,
           handler_windows = fresh.windows
      FROM (SELECT target.id,
                   coalesce(array_agg(h.agency_id ORDER BY h.id) FILTER (WHERE h.id IS NOT NULL),
                            '{}') AS agency_ids,
                   coalesce(array_agg(agency_rls.validity(h.valid_from, h.valid_to) ORDER BY h.id)
                                FILTER (WHERE h.id IS NOT NULL),
                            '{}') AS windows
              FROM (SELECT DISTINCT u.id FROM unnest(contract_ids) AS u (id)) AS target
              LEFT JOIN public.contract_handler AS h ON h.contract_id = target.id
             GROUP BY target.id) AS fresh
     WHERE c.id = fresh.id
       AND (c.handler_agency_ids, c.handler_windows) IS DISTINCT FROM (fresh.agency_ids, fresh.windows);
END
$function$;

CREATE OR REPLACE FUNCTION agency_rls.refresh_customer_scope(customer_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    -- Lock the rows first, read after: under READ COMMITTED the next statement takes a new
    -- snapshot, so a concurrent writer of these rows that committed while we waited is seen.
    -- (Read first and the UPDATE, after waiting, would write a value computed without it.)
    PERFORM cu.id FROM public.customer AS cu WHERE cu.id = ANY (customer_ids) ORDER BY cu.id FOR NO KEY UPDATE;
    UPDATE public.customer AS cu
       SET handler_agency_ids = fresh.agency_ids,
           handler_insurer_ids = fresh.insurer_ids,
           handler_windows = fresh.windows,
           party_insurer_ids = fresh.party_insurer_ids
      FROM (SELECT target.id,
                   coalesce(array_agg(link.agency_id ORDER BY party.contract_id, link.n)
                                FILTER (WHERE link.agency_id IS NOT NULL), '{}') AS agency_ids,
                   coalesce(array_agg(party.insurer_id ORDER BY party.contract_id, link.n)
                                FILTER (WHERE link.agency_id IS NOT NULL), '{}') AS insurer_ids,
                   coalesce(array_agg(link.valid ORDER BY party.contract_id, link.n)
                                FILTER (WHERE link.agency_id IS NOT NULL), '{}') AS windows,
                   coalesce(array_agg(DISTINCT party.insurer_id)
                                FILTER (WHERE party.insurer_id IS NOT NULL), '{}') AS party_insurer_ids
              FROM (SELECT DISTINCT u.id FROM unnest(customer_ids) AS u (id)) AS target
              LEFT JOIN LATERAL (
                    SELECT c.id AS contract_id, c.insurer_id, c.handler_agency_ids, c.handler_windows
                      FROM public.contract AS c WHERE c.policyholder_id = target.id
                    UNION ALL
                    SELECT c.id, c.insurer_id, c.handler_agency_ids, c.handler_windows
                      FROM public.contract AS c
                     WHERE c.insured_id = target.id AND c.policyholder_id IS DISTINCT FROM target.id
                   ) AS party ON true
              LEFT JOIN LATERAL unnest(party.handler_agency_ids, party.handler_windows)
                        WITH ORDINALITY AS link (agency_id, valid, n) ON true
             GROUP BY target.id) AS fresh
     WHERE cu.id = fresh.id
       AND (cu.handler_agency_ids, cu.handler_insurer_ids, cu.handler_windows, cu.party_insurer_ids)
           IS DISTINCT FROM (fresh.agency_ids, fresh.insurer_ids, fresh.windows, fresh.party_insurer_ids);
END
$function$;


-- Indexes
CREATE INDEX principal_role_name_lower_idx ON public.principal USING btree (lower(role_name));

-- Leaving the helper again (a DBA without SUPERUSER)
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM CURRENT_USER', {{helper_name}});
    END IF;
END
$members$;

-- agency-rls revision 0007: the caller's agencies and restriction folded into the plan; one refresh
-- of the copies.
--
-- Until 0006 the caller's agencies reached the contract and customer policies as an InitPlan,
-- which the planner cannot see: it assumed 1% of the rows for every principal. From here the GIN
-- overlap on the copied handler links also compares them with agency_rls.planned_agency_ids(),
-- evaluated once while planning (ORed with the agencies of the statement, so that a plan made
-- earlier never hides a row; its comment says why the rest is safe), and seconded staff plan with
-- their insurer as an equality (agency_rls.planned_restriction()). The set-based refresh of every
-- copy moves from provision's Python into the database (agency_rls.refresh_all_scope_copies()),
-- so that there is one implementation, and the backend's sessions do not JIT-compile. Nothing
-- about what a principal may see changes.

-- The backend's sessions never compile queries to machine code. The planner charges a policy's
-- per-row checks, so a principal with a large scope gets plan costs above jit_above_cost even when
-- the plan reads a few hundred buffers: compiling took 180 ms for a 7 ms page of 50 contracts of
-- the largest agency (1,000,000 contracts). Principals act through the backend's sessions
-- (SET LOCAL ROLE), which keep this setting; RESET ALL at check-in returns to it.
ALTER ROLE {{backend}} SET jit = off;

GRANT CREATE ON SCHEMA agency_rls TO {{helper}};

-- The caller's agencies as the planner sees them: its own agency and every agency it supervises
-- now or will (supervision rows that have not ended), folded into the plan as a constant. Why:
-- with the caller's agencies hidden in an InitPlan the planner assumed 1% of the rows for every
-- principal, the smallest and the largest alike; with a constant it reads the per-agency
-- frequencies of the copied handler links (pg_stats) and plans for this caller.
--
-- Declared IMMUTABLE so that the planner evaluates it once, while planning; it is not immutable
-- (it reads the caller's role and supervision), and it is safe only because of how it is used:
--   - for estimates and candidates, never as the only gate: every policy that uses it ORs it with
--     the same overlap on handling_agency_ids(), evaluated at each statement, and ANDs the rule
--     (a link valid now for one of those agencies). A plan folded for another time (a supervision
--     added since, a snapshot older than it) or another caller (a SECURITY DEFINER function run
--     by several principals in one session) finds its rows through the second arm; the folded
--     one can only add candidates that the rule then refuses;
--   - PostgreSQL re-plans a cached statement on a table with row level security when the
--     current role differs from the role it was planned for, so estimates follow the caller.
-- Empty for insurers and non-principals (an overlap with an empty array is false).
CREATE FUNCTION agency_rls.planned_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS MATERIALIZED (
            SELECT me.agency_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'agency'
        )
        SELECT coalesce(array_agg(DISTINCT seen.id ORDER BY seen.id), '{}')
          FROM (
                SELECT me.agency_id AS id
                  FROM me
                UNION ALL
                SELECT s.working_agency_id
                  FROM me
                  JOIN public.supervision AS s ON s.supervising_agency_id = me.agency_id
                 WHERE s.valid_to IS NULL OR now() < s.valid_to
               ) AS seen
    );
END
$$;

-- A restricted principal's insurer (seconded staff of one insurer), folded into the plan like
-- planned_agency_ids(); NULL for everyone else. The policies write
--     planned_restriction() IS NULL OR insurer_id = planned_restriction()
-- which the planner folds to "true" for everyone else and to "insurer_id = <N>" for the
-- restricted principal: an equality it can estimate and combine with the GIN index, where the
-- GIN index alone returns the agency's rows of every insurer. It only narrows (the entrustment
-- guard already holds the principal to N), and a principal's restriction never changes in place
-- (principal_guard.sql), so no plan it was folded into can go stale.
CREATE FUNCTION agency_rls.planned_restriction() RETURNS bigint
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT me.insurer_id
          FROM agency_rls.acting_principal() AS me
         WHERE me.kind = 'agency' AND me.insurer_id IS NOT NULL
    );
END
$$;

-- Recompute every copy, set-based (one aggregate over the handler rows, one over the contracts'
-- parties): seconds per million contracts. For loads with triggers off (session_replication_role
-- = replica), which leave the copies stale; provision runs it (agency_rls.rls_policies.maintenance)
-- as a member of the loader role. Only rows whose copy differs are written.
CREATE FUNCTION agency_rls.refresh_all_scope_copies() RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE public.contract AS c
       SET handler_agency_ids = fresh.agency_ids,
           handler_windows = fresh.windows
      FROM (SELECT c2.id,
                   coalesce(links.agency_ids, '{}') AS agency_ids,
                   coalesce(links.windows, '{}') AS windows
              FROM public.contract AS c2
              LEFT JOIN (SELECT h.contract_id,
                                array_agg(h.agency_id ORDER BY h.id) AS agency_ids,
                                array_agg(agency_rls.validity(h.valid_from, h.valid_to) ORDER BY h.id) AS windows
                           FROM public.contract_handler AS h
                          GROUP BY h.contract_id) AS links
                ON links.contract_id = c2.id) AS fresh
     WHERE c.id = fresh.id
       AND (c.handler_agency_ids, c.handler_windows) IS DISTINCT FROM (fresh.agency_ids, fresh.windows);
    UPDATE public.customer AS cu
       SET handler_agency_ids = fresh.agency_ids,
           handler_insurer_ids = fresh.insurer_ids,
           handler_windows = fresh.windows,
           party_insurer_ids = fresh.party_insurer_ids
      FROM (SELECT cu2.id,
                   coalesce(links.agency_ids, '{}') AS agency_ids,
                   coalesce(links.insurer_ids, '{}') AS insurer_ids,
                   coalesce(links.windows, '{}') AS windows,
                   coalesce(links.party_insurer_ids, '{}') AS party_insurer_ids
              FROM public.customer AS cu2
              LEFT JOIN (SELECT party.customer_id,
                                array_agg(link.agency_id ORDER BY party.contract_id, link.n)
                                    FILTER (WHERE link.agency_id IS NOT NULL) AS agency_ids,
                                array_agg(party.insurer_id ORDER BY party.contract_id, link.n)
                                    FILTER (WHERE link.agency_id IS NOT NULL) AS insurer_ids,
                                array_agg(link.valid ORDER BY party.contract_id, link.n)
                                    FILTER (WHERE link.agency_id IS NOT NULL) AS windows,
                                array_agg(DISTINCT party.insurer_id) AS party_insurer_ids
                           FROM (SELECT c.policyholder_id AS customer_id, c.id AS contract_id, c.insurer_id,
                                        c.handler_agency_ids, c.handler_windows
                                   FROM public.contract AS c
                                  WHERE c.policyholder_id IS NOT NULL
                                 UNION ALL
                                 SELECT c.insured_id, c.id, c.insurer_id, c.handler_agency_ids, c.handler_windows
                                   FROM public.contract AS c
                                  WHERE c.insured_id IS NOT NULL
                                    AND c.insured_id IS DISTINCT FROM c.policyholder_id) AS party
                           LEFT JOIN LATERAL unnest(party.handler_agency_ids, party.handler_windows)
                                     WITH ORDINALITY AS link (agency_id, valid, n) ON true
                          GROUP BY party.customer_id) AS links
                ON links.customer_id = cu2.id) AS fresh
     WHERE cu.id = fresh.id
       AND (cu.handler_agency_ids, cu.handler_insurer_ids, cu.handler_windows, cu.party_insurer_ids)
           IS DISTINCT FROM (fresh.agency_ids, fresh.insurer_ids, fresh.windows, fresh.party_insurer_ids);
END;

ALTER FUNCTION agency_rls.planned_agency_ids()        OWNER TO {{helper}};
ALTER FUNCTION agency_rls.planned_restriction()       OWNER TO {{helper}};
ALTER FUNCTION agency_rls.refresh_all_scope_copies()  OWNER TO {{helper}};
REVOKE CREATE ON SCHEMA agency_rls FROM {{helper}};
REVOKE ALL ON FUNCTION agency_rls.planned_agency_ids(), agency_rls.planned_restriction(),
                       agency_rls.refresh_all_scope_copies()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.planned_agency_ids(), agency_rls.planned_restriction()
    TO {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};
GRANT USAGE ON SCHEMA agency_rls TO {{loader}};
GRANT EXECUTE ON FUNCTION agency_rls.refresh_all_scope_copies() TO {{loader}};

DROP POLICY contract_agency_handles ON public.contract;
DROP POLICY customer_read_through_contract ON public.customer;
DROP POLICY customer_update_contact ON public.customer;

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

-- Seconded staff: only the insurer it is restricted to, as an equality the planner sees
-- (agency_rls.planned_restriction(): folded to "true" for every other principal).
CREATE POLICY contract_restricted_insurer ON public.contract
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (agency_rls.planned_restriction() IS NULL OR insurer_id = agency_rls.planned_restriction());

-- Seconded staff: as on contract.
CREATE POLICY notice_restricted_insurer ON public.notice
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (agency_rls.planned_restriction() IS NULL OR insurer_id = agency_rls.planned_restriction());

-- agency-rls: who handles a row, copied onto the row, so that a policy is an index condition.
--
-- Why: a policy cannot drive a join. "Contracts handled by my agency or an agency I supervise"
-- written as a set the policy filters by (id = ANY (array of visible ids)) builds the caller's
-- whole scope in every statement (0.5 s for an agency with 100,000 contracts, whatever the query
-- asks for); written as a subquery it turns into a scan of the whole table for a small agency.
-- Copying each contract's handler links onto the contract row turns the rule into
--     handler_agency_ids && <my agency and the agencies I supervise now>
-- which a GIN index answers for counts and lists, and which costs nothing on a row that an
-- index on the user's own condition (policy number, id) already found.
--
-- What is copied is the links, never a decision: every link with its validity window, whatever
-- the window. The policy re-checks the window of the caller's links at every statement, so an
-- ended handler link, supervision or entrustment stops access at the next statement, with no job
-- to run; supervision and entrustment are not copied at all (they are read per statement, once).
--
--   contract.handler_agency_ids[i], handler_windows[i]   one element per contract_handler row of
--                                                       the contract (agency, [valid_from, valid_to))
--   customer.handler_agency_ids[i], handler_insurer_ids[i], handler_windows[i]
--                                                       one element per handler row of each contract
--                                                       the customer is policyholder or insured of
--                                                       (with that contract's insurer)
--   customer.party_insurer_ids                          insurers of those contracts (insurer principals)
--
-- Kept exact in the writing transaction by statement-level triggers (one UPDATE per statement,
-- so a COPY of millions of rows costs one set-based refresh). A value a loader writes into these
-- columns is recomputed. Loads with triggers off (session_replication_role = replica) are
-- repaired by provision (agency_rls.rls_policies.maintenance). Principals never read the customer
-- columns (column privileges, grants.sql): they would tell a viewer about the customer's other
-- contracts. On contract they repeat the handler rows, which a viewer of the contract sees anyway.

ALTER TABLE public.contract
    ADD COLUMN handler_agency_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN handler_windows tstzrange[] NOT NULL DEFAULT '{}';
ALTER TABLE public.customer
    ADD COLUMN handler_agency_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN handler_insurer_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN handler_windows tstzrange[] NOT NULL DEFAULT '{}',
    ADD COLUMN party_insurer_ids bigint[] NOT NULL DEFAULT '{}';

CREATE INDEX contract_handler_agency_ids_idx ON public.contract USING gin (handler_agency_ids);
CREATE INDEX customer_handler_agency_ids_idx ON public.customer USING gin (handler_agency_ids);
-- The notice feed: newest first per addressee.
CREATE INDEX notice_addressee_created_idx ON public.notice (addressee_agency_id, created_at, id);

-- A link's validity as a range: [valid_from, valid_to), unbounded above when valid_to is null;
-- empty when it ends before it starts (such a link is never valid).
CREATE FUNCTION agency_rls.validity(valid_from timestamptz, valid_to timestamptz) RETURNS tstzrange
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN valid_to <= valid_from THEN 'empty'::tstzrange
                ELSE pg_catalog.tstzrange(valid_from, valid_to, '[)') END;

-- Recompute the copies of the given contracts from contract_handler. Rows already exact are not
-- written. The contract trigger below then refreshes the customers of the contracts it changed.
--
-- PL/pgSQL, not LANGUAGE sql: PostgreSQL 15 plans the statements of a SQL function that it cannot
-- inline again at every call, and the triggers call these two on every write statement (planning
-- their lock and UPDATE statements was most of the 1.6-2 ms fixed cost per write statement that
-- `agency-rls bench-writes` measured at revision 0007). PL/pgSQL keeps each statement's plan for
-- the session. plan_cache_mode = force_generic_plan: with the default mode the plan cache still
-- planned every call afresh (a custom plan for a 1-element array is estimated cheaper than the
-- generic plan, which assumes 10 elements), and saved little. The generic plan is the one a
-- 10,000-element batch gets anyway: one primary-key (or contract_handler.contract_id, policyholder,
-- insured) index lookup per element, no table scan; its cost grows with the array, never with the
-- table. Measured on 1,000,000 contracts: revision 0009 in BENCHMARKS.md.
CREATE FUNCTION agency_rls.refresh_contract_scope(contract_ids bigint[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
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
$$;

-- Recompute the copies of the given customers from the contracts they are party to.
-- PL/pgSQL with generic plans, for the reasons given at refresh_contract_scope.
CREATE FUNCTION agency_rls.refresh_customer_scope(customer_ids bigint[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
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

-- contract_handler changed: refresh the contracts whose links changed.
CREATE FUNCTION agency_rls.handler_rows_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_contract_scope(ARRAY(SELECT DISTINCT n.contract_id FROM new_rows AS n));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.handler_rows_updated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_contract_scope(ARRAY(
        SELECT n.contract_id FROM new_rows AS n
        UNION
        SELECT o.contract_id FROM old_rows AS o));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.handler_rows_deleted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_contract_scope(ARRAY(SELECT DISTINCT o.contract_id FROM old_rows AS o));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.handler_rows_truncated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_contract_scope(ARRAY(
        SELECT c.id FROM public.contract AS c
         WHERE c.handler_agency_ids <> '{}' OR c.handler_windows <> '{}'));
    RETURN NULL;
END
$$;

CREATE TRIGGER contract_scope_after_insert AFTER INSERT ON public.contract_handler
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.handler_rows_inserted();
CREATE TRIGGER contract_scope_after_update AFTER UPDATE ON public.contract_handler
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.handler_rows_updated();
CREATE TRIGGER contract_scope_after_delete AFTER DELETE ON public.contract_handler
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.handler_rows_deleted();
CREATE TRIGGER contract_scope_after_truncate AFTER TRUNCATE ON public.contract_handler
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.handler_rows_truncated();

-- contract changed: a new or removed contract, a changed policyholder, insured or insurer, or
-- changed handler links change its customers' copies. A value written into the copies by anyone
-- but the refresh (trigger depth 1: the statement was not issued by a trigger) is recomputed.
CREATE FUNCTION agency_rls.contract_rows_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_contract_scope(ARRAY(
        SELECT n.id FROM new_rows AS n WHERE n.handler_agency_ids <> '{}' OR n.handler_windows <> '{}'));
    PERFORM agency_rls.refresh_customer_scope(ARRAY(
        SELECT n.policyholder_id FROM new_rows AS n WHERE n.policyholder_id IS NOT NULL
        UNION
        SELECT n.insured_id FROM new_rows AS n WHERE n.insured_id IS NOT NULL));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.contract_rows_updated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.pg_trigger_depth() = 1 THEN
        PERFORM agency_rls.refresh_contract_scope(ARRAY(
            SELECT n.id FROM new_rows AS n LEFT JOIN old_rows AS o ON o.id = n.id
             WHERE (n.handler_agency_ids, n.handler_windows) IS DISTINCT FROM (o.handler_agency_ids, o.handler_windows)));
    END IF;
    PERFORM agency_rls.refresh_customer_scope(ARRAY(
        SELECT DISTINCT party.id
          FROM new_rows AS n
          FULL JOIN old_rows AS o ON o.id = n.id
         CROSS JOIN LATERAL (VALUES (n.policyholder_id), (n.insured_id), (o.policyholder_id), (o.insured_id))
               AS party (id)
         WHERE party.id IS NOT NULL
           AND (n.insurer_id, n.policyholder_id, n.insured_id, n.handler_agency_ids, n.handler_windows)
               IS DISTINCT FROM (o.insurer_id, o.policyholder_id, o.insured_id, o.handler_agency_ids, o.handler_windows)));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.contract_rows_deleted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_customer_scope(ARRAY(
        SELECT o.policyholder_id FROM old_rows AS o WHERE o.policyholder_id IS NOT NULL
        UNION
        SELECT o.insured_id FROM old_rows AS o WHERE o.insured_id IS NOT NULL));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.contract_rows_truncated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_customer_scope(ARRAY(
        SELECT cu.id FROM public.customer AS cu
         WHERE (cu.handler_agency_ids, cu.handler_insurer_ids, cu.handler_windows, cu.party_insurer_ids)
               IS DISTINCT FROM ('{}', '{}', '{}', '{}')));
    RETURN NULL;
END
$$;

CREATE TRIGGER customer_scope_after_insert AFTER INSERT ON public.contract
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.contract_rows_inserted();
CREATE TRIGGER customer_scope_after_update AFTER UPDATE ON public.contract
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.contract_rows_updated();
CREATE TRIGGER customer_scope_after_delete AFTER DELETE ON public.contract
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.contract_rows_deleted();
CREATE TRIGGER customer_scope_after_truncate AFTER TRUNCATE ON public.contract
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.contract_rows_truncated();

-- customer written directly: a new customer is party to no contract yet (the keys refer to it),
-- so its copies are empty; a value written into the copies is recomputed.
CREATE FUNCTION agency_rls.customer_rows_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM agency_rls.refresh_customer_scope(ARRAY(
        SELECT n.id FROM new_rows AS n
         WHERE (n.handler_agency_ids, n.handler_insurer_ids, n.handler_windows, n.party_insurer_ids)
               IS DISTINCT FROM ('{}', '{}', '{}', '{}')));
    RETURN NULL;
END
$$;

CREATE FUNCTION agency_rls.customer_rows_updated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.pg_trigger_depth() = 1 THEN
        PERFORM agency_rls.refresh_customer_scope(ARRAY(
            SELECT n.id FROM new_rows AS n
              LEFT JOIN old_rows AS o ON o.id = n.id
             WHERE (n.handler_agency_ids, n.handler_insurer_ids, n.handler_windows, n.party_insurer_ids)
                   IS DISTINCT FROM (o.handler_agency_ids, o.handler_insurer_ids, o.handler_windows, o.party_insurer_ids)));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER customer_scope_after_insert AFTER INSERT ON public.customer
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.customer_rows_inserted();
CREATE TRIGGER customer_scope_after_update AFTER UPDATE ON public.customer
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agency_rls.customer_rows_updated();

-- Rows loaded before this definition.
SELECT agency_rls.refresh_contract_scope(ARRAY(SELECT DISTINCT h.contract_id FROM public.contract_handler AS h));
SELECT agency_rls.refresh_customer_scope(ARRAY(
    SELECT c.policyholder_id FROM public.contract AS c WHERE c.policyholder_id IS NOT NULL
    UNION
    SELECT c.insured_id FROM public.contract AS c WHERE c.insured_id IS NOT NULL));

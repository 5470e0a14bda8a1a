-- agency-rls revision 0006: policies whose cost does not grow with the caller's scope.
--
-- Until 0005, every statement on contract, customer or notice first built the array of every id
-- the caller may see (0.5 s for an agency with 100,000 contracts, whatever the query asked for;
-- the notice feed of the largest agency never finished). From here, each contract and customer
-- row carries its handler links (agency, window; for customers also the contract's insurer),
-- kept exact by statement-level triggers, and the policies compare them on a GIN index with the
-- caller's agency and the agencies it supervises, re-checking each link's window at every
-- statement. Handler rows, notices and receipts ask the contract, customer and notice policies
-- per row. Nothing about what a principal may see changes.

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
CREATE FUNCTION agency_rls.refresh_contract_scope(contract_ids bigint[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    -- Lock the rows first, read after: under READ COMMITTED the next statement takes a new
    -- snapshot, so a concurrent writer of these rows that committed while we waited is seen.
    -- (Read first and the UPDATE, after waiting, would write a value computed without it.)
    SELECT c.id FROM public.contract AS c WHERE c.id = ANY (contract_ids) ORDER BY c.id FOR NO KEY UPDATE;
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
END;

-- Recompute the copies of the given customers from the contracts they are party to.
CREATE FUNCTION agency_rls.refresh_customer_scope(customer_ids bigint[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    -- Lock the rows first, read after: under READ COMMITTED the next statement takes a new
    -- snapshot, so a concurrent writer of these rows that committed while we waited is seen.
    -- (Read first and the UPDATE, after waiting, would write a value computed without it.)
    SELECT cu.id FROM public.customer AS cu WHERE cu.id = ANY (customer_ids) ORDER BY cu.id FOR NO KEY UPDATE;
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

-- Agencies whose handler links count for the caller: its own agency and the agencies it
-- currently supervises (supervision is not transitive). Each function here resolves the caller
-- once (acting_principal); every policy calls it once per statement, so this is the fixed cost
-- of row level security on a point lookup. Empty for insurers and non-principals.
-- The contract and customer policies compare it with the handler links copied onto each row
-- (scope_columns.sql) and re-check each link's window; the entrustment guard adds
-- "only the viewer's own entrustment counts".
CREATE FUNCTION agency_rls.handling_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS MATERIALIZED (
            SELECT me.agency_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'agency'
        )
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}')
          FROM (
                SELECT me.agency_id AS id
                  FROM me
                UNION ALL
                SELECT s.working_agency_id
                  FROM me
                  JOIN public.supervision AS s ON s.supervising_agency_id = me.agency_id
                 WHERE s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
               ) AS seen
    );
END
$$;

-- Addressees whose notices reach the caller: its own agency and the agencies currently
-- supervising it (notices flow down only). Empty for insurers and non-principals.
CREATE FUNCTION agency_rls.addressee_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS MATERIALIZED (
            SELECT me.agency_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'agency'
        )
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}')
          FROM (
                SELECT me.agency_id AS id
                  FROM me
                UNION ALL
                SELECT s.supervising_agency_id
                  FROM me
                  JOIN public.supervision AS s ON s.working_agency_id = me.agency_id
                 WHERE s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
               ) AS seen
    );
END
$$;

-- The caller resolved with one index probe per catalog (no shobj_description, whose SQL body looks
-- pg_authid up by name in every call), and once per scope function.
CREATE OR REPLACE FUNCTION agency_rls.acting_principal(OUT kind text, OUT agency_id bigint, OUT insurer_id bigint)
    RETURNS SETOF record ROWS 1
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.kind, p.agency_id, p.insurer_id
      FROM public.principal AS p
      JOIN agency_rls.provisioned_principal AS pp
        ON pp.role_name = p.role_name
       AND pp.kind = p.kind
       AND pp.agency_id IS NOT DISTINCT FROM p.agency_id
       AND pp.insurer_id IS NOT DISTINCT FROM p.insurer_id
      JOIN pg_catalog.pg_shdescription AS marker
        ON marker.objoid = pg_catalog.to_regrole(p.role_name)
       AND marker.classoid = 'pg_catalog.pg_authid'::regclass
     WHERE p.role_name = agency_rls.acting_role()
       AND marker.description = 'agency-rls:principal database=' || pg_catalog.current_database();
END
$$;

CREATE OR REPLACE FUNCTION agency_rls.scope_insurer_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS MATERIALIZED (
            SELECT me.kind, me.agency_id, me.insurer_id FROM agency_rls.acting_principal() AS me
        )
        SELECT coalesce(array_agg(DISTINCT scope.insurer_id), '{}')
          FROM (
                SELECT e.insurer_id
                  FROM me
                  JOIN public.entrustment AS e
                    ON e.agency_id = me.agency_id
                   AND (me.insurer_id IS NULL OR e.insurer_id = me.insurer_id)
                 WHERE me.kind = 'agency'
                   AND e.valid_from <= now() AND (e.valid_to IS NULL OR now() < e.valid_to)
                UNION ALL
                SELECT me.insurer_id
                  FROM me
                 WHERE me.kind = 'insurer'
               ) AS scope
    );
END
$$;

GRANT CREATE ON SCHEMA agency_rls TO {{helper}};
ALTER FUNCTION agency_rls.handling_agency_ids()       OWNER TO {{helper}};
ALTER FUNCTION agency_rls.addressee_agency_ids()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.validity(timestamptz, timestamptz) OWNER TO {{helper}};
ALTER FUNCTION agency_rls.refresh_contract_scope(bigint[]) OWNER TO {{helper}};
ALTER FUNCTION agency_rls.refresh_customer_scope(bigint[]) OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_inserted()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_updated()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_deleted()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.handler_rows_truncated()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_inserted()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_updated()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_deleted()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_rows_truncated()   OWNER TO {{helper}};
ALTER FUNCTION agency_rls.customer_rows_inserted()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.customer_rows_updated()     OWNER TO {{helper}};
REVOKE CREATE ON SCHEMA agency_rls FROM {{helper}};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agency_rls FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.role_prefix() TO PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.handling_agency_ids(), agency_rls.addressee_agency_ids()
    TO {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};

GRANT UPDATE (handler_agency_ids, handler_windows) ON public.contract TO {{helper}};
GRANT UPDATE (handler_agency_ids, handler_insurer_ids, handler_windows, party_insurer_ids)
    ON public.customer TO {{helper}};
-- customer: every column but the copied links of the customer's contracts, which would tell a
-- viewer about contracts it does not see.
REVOKE SELECT ON public.customer FROM {{agency_group}}, {{insurer_group}};
GRANT SELECT (id, full_name, full_name_kana, address, phone, fax, email, birth_date, gender,
              registered_by_agency_id)
    ON public.customer TO {{agency_group}}, {{insurer_group}};

DROP POLICY contract_read_handled ON public.contract;
DROP POLICY contract_handler_read_handled ON public.contract_handler;
DROP POLICY customer_read_through_contract ON public.customer;
DROP POLICY customer_update_contact ON public.customer;
DROP POLICY notice_read_addressed ON public.notice;
DROP POLICY notice_receipt_read_restricted ON public.notice_receipt;
DROP POLICY notice_receipt_insert_own ON public.notice_receipt;

-- Handled now by the caller's agency or by an agency it supervises now: the copied links name
-- one of those agencies (the GIN index finds them), and one such link's window holds now().
-- The first half is RESTRICTIVE on purpose, and named to sort first: PostgreSQL applies each
-- restrictive policy at its own security level (in name order) and the permissive ones after
-- them, and only the first level may use an operator that is not LEAKPROOF (array overlap is
-- not) as an index condition. As a permissive policy behind the entrustment guard, the overlap
-- was a filter over every contract of the caller's insurers.
CREATE POLICY contract_agency_handles ON public.contract
    AS RESTRICTIVE FOR SELECT TO {{agency_group}}
    USING (handler_agency_ids && (SELECT agency_rls.handling_agency_ids()));
CREATE POLICY contract_read_handled ON public.contract
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (EXISTS (SELECT
                     FROM unnest(handler_agency_ids, handler_windows) AS link (agency_id, valid)
                    WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                      AND link.valid @> now()));

CREATE POLICY contract_handler_read_handled ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (EXISTS (SELECT FROM public.contract AS c WHERE c.id = contract_handler.contract_id OFFSET 0));

-- Policyholder or insured of a contract the caller sees: the contract policy's rule, on the
-- links of the customer's contracts copied onto the customer row (each with its insurer, for the
-- entrustment guard).
CREATE POLICY customer_read_through_contract ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (handler_agency_ids && (SELECT agency_rls.handling_agency_ids())
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()));
-- Insurer principals: a per-row check, "(…) IS TRUE" so that it is never an index condition. An
-- insurer's customers are a large share of the table (the planner cannot know how large: it
-- assumed 1% and drove joins from this side, reading every customer of the insurer to show 50
-- contracts); as a filter, the contract side or the customer's key leads.
CREATE POLICY customer_read_insurer ON public.customer
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING ((party_insurer_ids && (SELECT agency_rls.scope_insurer_ids())) IS TRUE);

-- Contact columns (column grants) of the customers it sees: through a contract, or its prospects.
CREATE POLICY customer_update_contact ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL
           AND handler_agency_ids && (SELECT agency_rls.handling_agency_ids())
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()))
    WITH CHECK ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL
           AND handler_agency_ids && (SELECT agency_rls.handling_agency_ids())
           AND EXISTS (SELECT
                         FROM unnest(handler_agency_ids, handler_insurer_ids, handler_windows)
                              AS link (agency_id, insurer_id, valid)
                        WHERE link.agency_id = ANY ((SELECT agency_rls.handling_agency_ids())::bigint[])
                          AND link.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
                          AND link.valid @> now()));
CREATE POLICY customer_update_prospect ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()))
    WITH CHECK (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));

-- Addressed to the caller's agency or to an agency supervising it now, and the contract and
-- customer it names (if any) are visible to the caller: asked of those tables, whose policies
-- decide (the customer's include the caller's own prospects).
CREATE POLICY notice_read_addressed ON public.notice
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (addressee_agency_id = ANY ((SELECT agency_rls.addressee_agency_ids())::bigint[])
           AND (contract_id IS NULL
                OR EXISTS (SELECT FROM public.contract AS c WHERE c.id = notice.contract_id OFFSET 0))
           AND (customer_id IS NULL
                OR EXISTS (SELECT FROM public.customer AS cu WHERE cu.id = notice.customer_id OFFSET 0)));

CREATE POLICY notice_receipt_read_restricted ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.restricted_agency_id())
           AND EXISTS (SELECT FROM public.notice AS n WHERE n.id = notice_receipt.notice_id OFFSET 0));
CREATE POLICY notice_receipt_insert_own ON public.notice_receipt
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (agency_id = (SELECT agency_rls.unrestricted_agency_id())
                AND EXISTS (SELECT FROM public.notice AS n WHERE n.id = notice_receipt.notice_id OFFSET 0));

-- ... and the triggers it owns rewrite the copied handler links (scope_columns.sql; column grants
-- limit it to those columns).
CREATE POLICY scope_copies_refresh ON public.contract
    AS PERMISSIVE FOR UPDATE TO {{helper}} USING (true) WITH CHECK (true);
CREATE POLICY scope_copies_refresh ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{helper}} USING (true) WITH CHECK (true);

DROP POLICY contract_entrustment_guard ON public.contract;
-- The guard is a per-row check, "(…) IS TRUE" so that it is never an index condition: through
-- the insurer index it would read every contract of the caller's insurers in every statement
-- (a bitmap of hundreds of thousands of rows ANDed with the the handler links' GIN index (agencies) or the insurer policy's index). The rows come from the handler links' GIN index (agencies) or the insurer policy's index.
CREATE POLICY contract_entrustment_guard ON public.contract
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE)
    WITH CHECK ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE);

DROP POLICY notice_entrustment_guard ON public.notice;
-- The guard is a per-row check, "(…) IS TRUE" so that it is never an index condition: through
-- the insurer index it would read every notice of the caller's insurers in every statement
-- (a bitmap of hundreds of thousands of rows ANDed with the the addressee index (agencies) or the insurer policy's index). The rows come from the addressee index (agencies) or the insurer policy's index.
CREATE POLICY notice_entrustment_guard ON public.notice
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE)
    WITH CHECK ((insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])) IS TRUE);

DROP FUNCTION agency_rls.visible_notice_ids();
DROP FUNCTION agency_rls.updatable_customer_ids();
DROP FUNCTION agency_rls.contract_customer_ids();
DROP FUNCTION agency_rls.visible_contract_ids();

-- Rows loaded before this revision.
SELECT agency_rls.refresh_contract_scope(ARRAY(SELECT DISTINCT h.contract_id FROM public.contract_handler AS h));
SELECT agency_rls.refresh_customer_scope(ARRAY(
    SELECT c.policyholder_id FROM public.contract AS c WHERE c.policyholder_id IS NOT NULL
    UNION
    SELECT c.insured_id FROM public.contract AS c WHERE c.insured_id IS NOT NULL));

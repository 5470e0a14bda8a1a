-- agency-rls: scope functions, the rules of scope-rules.md as SQL.
--
-- Why SECURITY DEFINER: a rule on one table reads others (a contract is visible through
-- contract_handler, entrustment and supervision); reading them under the caller's own row
-- security would recurse between policies. These functions are owned by {{helper}}, a NOLOGIN
-- role that nobody is a member of and that SELECT policies naming it alone let read every row
-- (policies.sql; no role needs BYPASSRLS), so they read across scope; everything they
-- return is about the caller only.
--
-- Why identity is not an argument: a principal can call any function a policy uses, with any
-- argument it likes. No function here takes an argument. Identity is the role in force for
-- the caller: the role set by SET [LOCAL] ROLE (PostgreSQL checked membership for it), or
-- the session user when no role was set. Inside a SECURITY DEFINER function current_user is
-- the owner, so the caller's role is read from the 'role' setting, which SET ROLE maintains
-- and which a client cannot set without the same membership check.
--
-- Why arrays: each policy wraps its function in (SELECT …), so the scope is computed once
-- per statement (an InitPlan) and the table is filtered by "id = ANY (…)" on an index.
--
-- Why PL/pgSQL around plain queries: PL/pgSQL keeps each query's plan for the session, while a
-- SQL-language function that cannot be inlined (SECURITY DEFINER, SET) is planned again in every
-- statement that calls it; the scope queries are the same for every caller, so one plan serves all.
--
-- "Valid now" is valid_from <= now() AND (valid_to IS NULL OR now() < valid_to), now() being
-- the transaction's time; it is evaluated at every statement, so an ended link stops access
-- at once.

-- The role in force for the caller (see above). Not a SECURITY DEFINER function itself: it is
-- called from inside the scope functions, where current_user would be {{helper}}.
CREATE FUNCTION agency_rls.acting_role() RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE pg_catalog.current_setting('role')
               WHEN 'none' THEN pg_catalog.session_user()::text
               ELSE pg_catalog.current_setting('role')
           END;
END
$$;

-- The caller's principal row: kind, agency, insurer (for an agency principal: its restriction).
-- No row for a role that is not a principal, so every scope below is empty: default deny.
-- A row counts only when provisioning created its role for this database (the role's marker
-- comment names it) and for this very mapping (agency_rls.provisioned_principal): a row naming
-- a group or management role (which every principal can SET ROLE to), another database's role,
-- a role nobody provisioned, or a principal remapped behind provisioning's back grants nothing.
CREATE FUNCTION agency_rls.acting_principal(OUT kind text, OUT agency_id bigint, OUT insurer_id bigint)
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
      JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
     WHERE p.role_name = agency_rls.acting_role()
       AND pg_catalog.shobj_description(r.oid, 'pg_authid')
           = 'agency-rls:principal database=' || pg_catalog.current_database();
END
$$;

-- Insurer principal: the insurer it works for. NULL for everyone else.
CREATE FUNCTION agency_rls.insurer_id() RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT me.insurer_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'insurer'
    );
END
$$;

-- Unrestricted agency principal: its agency (the only principals that may write). NULL otherwise.
CREATE FUNCTION agency_rls.unrestricted_agency_id() RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT me.agency_id
          FROM agency_rls.acting_principal() AS me
         WHERE me.kind = 'agency' AND me.insurer_id IS NULL
    );
END
$$;

-- Restricted agency principal (seconded staff of one insurer): its agency. NULL otherwise.
CREATE FUNCTION agency_rls.restricted_agency_id() RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT me.agency_id
          FROM agency_rls.acting_principal() AS me
         WHERE me.kind = 'agency' AND me.insurer_id IS NOT NULL
    );
END
$$;

-- The entrustment guard: insurers whose contracts and notices the caller may see at all.
--   agency A:            insurers with a valid entrustment of A (only the viewer's own counts);
--   restricted to N:     the same, intersected with {N};
--   insurer I:           {I}.
CREATE FUNCTION agency_rls.scope_insurer_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT scope.insurer_id), '{}')
          FROM (
                SELECT e.insurer_id
                  FROM agency_rls.acting_principal() AS me
                  JOIN public.entrustment AS e
                    ON e.agency_id = me.agency_id
                   AND (me.insurer_id IS NULL OR e.insurer_id = me.insurer_id)
                 WHERE me.kind = 'agency'
                   AND e.valid_from <= now() AND (e.valid_to IS NULL OR now() < e.valid_to)
                UNION ALL
                SELECT me.insurer_id
                  FROM agency_rls.acting_principal() AS me
                 WHERE me.kind = 'insurer'
               ) AS scope
    );
END
$$;

-- Agencies currently supervised by the caller's agency (supervision is not transitive).
CREATE FUNCTION agency_rls.supervised_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT s.working_agency_id), '{}')
          FROM agency_rls.acting_principal() AS me
          JOIN public.supervision AS s ON s.supervising_agency_id = me.agency_id
         WHERE me.kind = 'agency'
           AND s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
    );
END
$$;

-- Agencies currently supervising the caller's agency.
CREATE FUNCTION agency_rls.supervisor_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT s.supervising_agency_id), '{}')
          FROM agency_rls.acting_principal() AS me
          JOIN public.supervision AS s ON s.working_agency_id = me.agency_id
         WHERE me.kind = 'agency'
           AND s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)
    );
END
$$;

-- Contracts: agency A sees C iff entrusted(A, C.insurer) and C is handled, now, by A or by an
-- agency A currently supervises (only the viewer's own entrustment counts; supervision is not
-- transitive). Insurer I sees the contracts with insurer_id = I, whatever their source. (The
-- contract policy for insurers filters on insurer_id directly; this set serves contract_handler
-- and customers.)
CREATE FUNCTION agency_rls.visible_contract_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS MATERIALIZED (
            SELECT me.kind, me.agency_id, me.insurer_id FROM agency_rls.acting_principal() AS me
        ), handlers AS (
            SELECT me.agency_id FROM me WHERE me.kind = 'agency'
            UNION
            SELECT unnest(agency_rls.supervised_agency_ids())
        ), seen AS (
            SELECT h.contract_id AS id
              FROM public.contract_handler AS h
              JOIN public.contract AS c ON c.id = h.contract_id
             WHERE h.agency_id IN (SELECT handlers.agency_id FROM handlers)
               AND h.valid_from <= now() AND (h.valid_to IS NULL OR now() < h.valid_to)
               AND c.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
            UNION ALL
            SELECT c.id
              FROM me
              JOIN public.contract AS c ON c.insurer_id = me.insurer_id
             WHERE me.kind = 'insurer'
        )
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}') FROM seen
    );
END
$$;

-- Customers through contracts: policyholder or insured of a contract the caller sees.
-- (Prospects, registered_by_agency_id, are a policy of their own on customer.)
CREATE FUNCTION agency_rls.contract_customer_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT person.id), '{}')
          FROM public.contract AS c
         CROSS JOIN LATERAL (VALUES (c.policyholder_id), (c.insured_id)) AS person (id)
         WHERE c.id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[])
           AND person.id IS NOT NULL
    );
END
$$;

-- Customers an unrestricted agency may update (contact columns only, by column grant):
-- the customers it sees.
CREATE FUNCTION agency_rls.updatable_customer_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}')
          FROM (
                SELECT unnest(agency_rls.contract_customer_ids()) AS id
                UNION ALL
                SELECT cu.id FROM public.customer AS cu
                 WHERE cu.registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id())
               ) AS seen
         WHERE agency_rls.unrestricted_agency_id() IS NOT NULL
    );
END
$$;

-- Notices (agency principals): A sees N iff entrusted(A, N.insurer), N is addressed to A or to
-- an agency currently supervising A (notices flow down only), and the contract and customer
-- N names, if any, are visible to A.
CREATE FUNCTION agency_rls.visible_notice_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH me AS (
            SELECT me.agency_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'agency'
        ), addressees AS (
            SELECT me.agency_id FROM me
            UNION
            SELECT unnest(agency_rls.supervisor_agency_ids())
        ), contracts AS (
            SELECT agency_rls.visible_contract_ids() AS ids
        ), customers AS (
            SELECT agency_rls.contract_customer_ids() AS ids
        )
        SELECT coalesce(array_agg(n.id), '{}')
          FROM public.notice AS n, contracts, customers
         WHERE n.addressee_agency_id IN (SELECT addressees.agency_id FROM addressees)
           AND n.insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[])
           AND (n.contract_id IS NULL OR n.contract_id = ANY (contracts.ids))
           AND (n.customer_id IS NULL
                OR n.customer_id = ANY (customers.ids)
                OR EXISTS (SELECT FROM public.customer AS cu
                            WHERE cu.id = n.customer_id
                              AND cu.registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id())))
    );
END
$$;

-- Agency rows:
--   agency A:       A, its current supervisors, the agencies it currently supervises;
--   restricted:     its own agency only;
--   insurer I:      the agencies I currently entrusts.
CREATE FUNCTION agency_rls.visible_agency_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}')
          FROM (
                SELECT me.agency_id AS id
                  FROM agency_rls.acting_principal() AS me
                 WHERE me.kind = 'agency'
                UNION ALL
                SELECT unnest(agency_rls.supervisor_agency_ids() || agency_rls.supervised_agency_ids())
                 WHERE agency_rls.unrestricted_agency_id() IS NOT NULL
                UNION ALL
                SELECT e.agency_id
                  FROM public.entrustment AS e
                 WHERE e.insurer_id = (SELECT agency_rls.insurer_id())
                   AND e.valid_from <= now() AND (e.valid_to IS NULL OR now() < e.valid_to)
               ) AS seen
    );
END
$$;

-- Supervision rows (unrestricted agency principals only): its own, whatever their validity,
-- and those of every agency it currently supervises.
CREATE FUNCTION agency_rls.visible_supervision_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH agencies AS (
            SELECT agency_rls.unrestricted_agency_id() AS id
            UNION
            SELECT unnest(agency_rls.supervised_agency_ids())
             WHERE agency_rls.unrestricted_agency_id() IS NOT NULL
        )
        SELECT coalesce(array_agg(DISTINCT s.id), '{}')
          FROM public.supervision AS s
         WHERE s.supervising_agency_id IN (SELECT agencies.id FROM agencies)
            OR s.working_agency_id IN (SELECT agencies.id FROM agencies)
    );
END
$$;

-- Entrustment rows:
--   agency A:       its own, whatever their validity, and those of the agencies it currently supervises;
--   restricted (N): its agency's entrustments from N;
--   insurer I:      the valid entrustments from I.
CREATE FUNCTION agency_rls.visible_entrustment_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        WITH agencies AS (
            SELECT agency_rls.unrestricted_agency_id() AS id
            UNION
            SELECT unnest(agency_rls.supervised_agency_ids())
             WHERE agency_rls.unrestricted_agency_id() IS NOT NULL
        )
        SELECT coalesce(array_agg(DISTINCT seen.id), '{}')
          FROM (
                SELECT e.id
                  FROM public.entrustment AS e
                 WHERE e.agency_id IN (SELECT agencies.id FROM agencies)
                UNION ALL
                SELECT e.id
                  FROM agency_rls.acting_principal() AS me
                  JOIN public.entrustment AS e
                    ON e.agency_id = me.agency_id AND e.insurer_id = me.insurer_id
                 WHERE me.kind = 'agency'
                UNION ALL
                SELECT e.id
                  FROM public.entrustment AS e
                 WHERE e.insurer_id = (SELECT agency_rls.insurer_id())
                   AND e.valid_from <= now() AND (e.valid_to IS NULL OR now() < e.valid_to)
               ) AS seen
    );
END
$$;

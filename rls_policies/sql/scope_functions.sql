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
-- Why small arrays: each policy wraps its function in (SELECT …), so it runs once per statement
-- (an InitPlan). What these functions return is small whatever the caller's scope: its agency
-- and the agencies it supervises, the insurers that entrust it. The rows themselves carry who
-- handles them (scope_columns.sql); a policy compares the two on an index. No function here
-- builds the set of rows a caller sees: that set grows with the agency, and building it in every
-- statement made the largest agency's point lookups cost half a second.
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
      JOIN pg_catalog.pg_shdescription AS marker
        ON marker.objoid = pg_catalog.to_regrole(p.role_name)
       AND marker.classoid = 'pg_catalog.pg_authid'::regclass
     WHERE p.role_name = agency_rls.acting_role()
       AND marker.description = 'agency-rls:principal database=' || pg_catalog.current_database();
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

-- An insurer principal's insurer, folded into the plan like planned_agency_ids(); NULL for
-- everyone else. The insurer policies write
--     insurer_id = planned_insurer_id() AND (SELECT insurer_id()) = planned_insurer_id()
--     OR planned_insurer_id() IS NULL AND insurer_id = (SELECT insurer_id())
-- The first half is an equality with a constant, so the planner reads the insurer's share of the
-- table from pg_stats (two thirds of the contracts for the largest insurer, where it assumed one
-- twentieth and ran the newest-contracts page as a parallel plan that read 17 times the
-- buffers); the second half compares the folded value with the caller at every statement (a
-- one-time filter), so a plan folded for another caller returns nothing, never another insurer's
-- rows. A principal's mapping never changes in place (principal_guard.sql: remapping drops the
-- role, and a new role is planned afresh), so a plan folded for a principal goes stale only in
-- one way: folded while the principal row was not visible (a REPEATABLE READ snapshot taken before
-- provisioning, a reload of the principal rows), it carries NULL. Nothing re-plans a cached plan
-- when a principal row appears, so that plan would return nothing for the life of the session:
-- the second line, folded to "false" whenever an insurer is, then decides with the statement's
-- own insurer (the policy before 0008; NULL for everyone but insurer principals, so nothing).
CREATE FUNCTION agency_rls.planned_insurer_id() RETURNS bigint
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT me.insurer_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'insurer'
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

-- agency-rls revision 0002 (recorded copy of rls_policies/sql at this revision).

-- ==== roles.sql ====
-- agency-rls: management roles and the helper schema.
--
-- Roles are cluster-wide, so each one carries the marker comment 'agency-rls:management';
-- a role of the same name that lacks the marker, or that is a superuser, BYPASSRLS (other
-- than the helper owner), CREATEROLE or predefined role, is never adopted.
--
--   {{owner}}          NOLOGIN, owns the tables; FORCE row level security applies to it too.
--   {{helper}}         NOLOGIN BYPASSRLS, owns only the SECURITY DEFINER scope functions;
--                      nobody is granted membership in it.
--   {{backend}}        LOGIN NOINHERIT: member of every principal role, sees nothing itself;
--                      acts for a principal with SET LOCAL ROLE.
--   {{agency_group}}   NOLOGIN group of every agency principal; policies name it.
--   {{agency_writer_group}}  NOLOGIN group of the unrestricted agency principals, the only
--                      ones granted any write (restricted principals' writes fail with an error).
--   {{insurer_group}}  NOLOGIN group of every insurer principal; policies name it.

DO $roles$
DECLARE
    wanted CONSTANT text[][] := ARRAY[
        [{{owner_name}},         'NOLOGIN NOINHERIT'],
        [{{helper_name}},        'NOLOGIN NOINHERIT BYPASSRLS'],
        [{{backend_name}},       'LOGIN NOINHERIT'],
        [{{agency_group_name}},  'NOLOGIN NOINHERIT'],
        [{{agency_writer_group_name}}, 'NOLOGIN NOINHERIT'],
        [{{insurer_group_name}}, 'NOLOGIN NOINHERIT']
    ];
    i int;
    existing pg_catalog.pg_roles%ROWTYPE;
BEGIN
    FOR i IN 1 .. pg_catalog.array_length(wanted, 1) LOOP
        SELECT * INTO existing FROM pg_catalog.pg_roles WHERE rolname = wanted[i][1];
        IF NOT FOUND THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I %s', wanted[i][1], wanted[i][2]);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', wanted[i][1], 'agency-rls:management');
        ELSIF pg_catalog.shobj_description(existing.oid, 'pg_authid')
                  IS DISTINCT FROM 'agency-rls:management'
              OR existing.rolsuper OR existing.rolcreaterole OR existing.rolcreatedb
              OR existing.rolreplication
              OR (existing.rolbypassrls AND wanted[i][1] <> {{helper_name}})
              OR existing.rolname LIKE 'pg\_%' THEN
            RAISE EXCEPTION 'agency-rls: role % exists and is not an agency-rls management role',
                pg_catalog.quote_ident(wanted[i][1])
                USING HINT = 'choose another role prefix, or drop that role';
        END IF;
    END LOOP;
END
$roles$;

CREATE SCHEMA agency_rls AUTHORIZATION {{owner}};
COMMENT ON SCHEMA agency_rls IS 'agency-rls: scope functions used by row level security policies';

-- The role prefix, stored so that every command (provision, demo, tests) agrees on names.
CREATE FUNCTION agency_rls.role_prefix() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN {{prefix_literal}};
ALTER FUNCTION agency_rls.role_prefix() OWNER TO {{owner}};

-- ==== scope_functions.sql ====
-- agency-rls: scope functions, the rules of scope-rules.md as SQL.
--
-- Why SECURITY DEFINER: a rule on one table reads others (a contract is visible through
-- contract_handler, entrustment and supervision); reading them under the caller's own row
-- security would recurse between policies. These functions are owned by {{helper}}, a NOLOGIN
-- BYPASSRLS role that nobody is a member of, so they read across scope; everything they
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
CREATE FUNCTION agency_rls.acting_principal(OUT kind text, OUT agency_id bigint, OUT insurer_id bigint)
    RETURNS SETOF record ROWS 1
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.kind, p.agency_id, p.insurer_id
      FROM public.principal AS p
     WHERE p.role_name = agency_rls.acting_role();
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

-- ==== principal_guard.sql ====
-- agency-rls: a principal's mapping never changes in place.
--
-- role_name -> (kind, agency, insurer) is what every policy trusts; changing it in place would
-- silently hand one role another's scope. To remap, delete the principal and insert a new one.
CREATE FUNCTION agency_rls.principal_mapping_is_immutable() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'agency-rls: principal % cannot be remapped in place', pg_catalog.quote_ident(OLD.role_name)
        USING HINT = 'delete the principal row and insert a new one, then run agency-rls provision',
              ERRCODE = 'integrity_constraint_violation';
END
$$;
ALTER FUNCTION agency_rls.principal_mapping_is_immutable() OWNER TO {{owner}};

CREATE TRIGGER principal_mapping_is_immutable
    BEFORE UPDATE OF role_name, kind, agency_id, insurer_id ON public.principal
    FOR EACH ROW
    WHEN (OLD.role_name IS DISTINCT FROM NEW.role_name
          OR OLD.kind IS DISTINCT FROM NEW.kind
          OR OLD.agency_id IS DISTINCT FROM NEW.agency_id
          OR OLD.insurer_id IS DISTINCT FROM NEW.insurer_id)
    EXECUTE FUNCTION agency_rls.principal_mapping_is_immutable();

-- ==== derived_columns.sql ====
-- agency-rls: derived columns the policies filter on, kept exact by triggers.
--
-- contract_handler.insurer_id is the handled contract's insurer. Loaders never supply it: the
-- trigger copies it on every insert and on every change of contract_id, and the key
-- (contract_id, insurer_id) -> contract (id, insurer_id) ON UPDATE CASCADE carries a change of
-- the contract's insurer to its handler rows. The function is SECURITY DEFINER (owned by
-- {{helper}}) because it must read contract whoever writes the handler row.

CREATE FUNCTION agency_rls.contract_handler_insurer() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.insurer_id := (SELECT c.insurer_id FROM public.contract AS c WHERE c.id = NEW.contract_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER contract_handler_insurer
    BEFORE INSERT OR UPDATE OF contract_id, insurer_id ON public.contract_handler
    FOR EACH ROW
    EXECUTE FUNCTION agency_rls.contract_handler_insurer();

-- Rows loaded while the schema was below this revision.
UPDATE public.contract_handler AS h
   SET insurer_id = c.insurer_id
  FROM public.contract AS c
 WHERE c.id = h.contract_id
   AND h.insurer_id IS DISTINCT FROM c.insurer_id;

-- ==== policies.sql ====
-- agency-rls: row level security policies, one block per table.
--
-- Every protected table has row level security ENABLED and FORCED (the owner is bound too).
-- With no policy for a role, a table shows it nothing: default deny. Policies name the group
-- roles they apply to, never PUBLIC. Each scope function is wrapped in (SELECT …) so that it
-- runs once per statement, and the table is filtered by an indexed column.
--
-- Where a row belongs to an insurer (contract, contract_handler, notice), the entrustment guard
-- is RESTRICTIVE: a permissive policy added later can never widen it.

-- insurer: no personal data, readable by every role; no row level security.

-- agency ----------------------------------------------------------------------------------
ALTER TABLE public.agency ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agency FORCE ROW LEVEL SECURITY;
CREATE POLICY agency_read ON public.agency
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.visible_agency_ids())::bigint[]));

-- supervision -----------------------------------------------------------------------------
ALTER TABLE public.supervision ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.supervision FORCE ROW LEVEL SECURITY;
CREATE POLICY supervision_read ON public.supervision
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_supervision_ids())::bigint[]));

-- entrustment -----------------------------------------------------------------------------
ALTER TABLE public.entrustment ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.entrustment FORCE ROW LEVEL SECURITY;
CREATE POLICY entrustment_read ON public.entrustment
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.visible_entrustment_ids())::bigint[]));

-- contract --------------------------------------------------------------------------------
ALTER TABLE public.contract ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract FORCE ROW LEVEL SECURITY;
CREATE POLICY contract_read_handled ON public.contract
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[]));
CREATE POLICY contract_read_insurer ON public.contract
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY contract_entrustment_guard ON public.contract
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- contract_handler: the handler rows of the contracts the caller sees (any agency, any validity).
-- insurer_id is the contract's, kept exact by a trigger (derived_columns.sql).
ALTER TABLE public.contract_handler ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contract_handler FORCE ROW LEVEL SECURITY;
CREATE POLICY contract_handler_read_handled ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (contract_id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[]));
CREATE POLICY contract_handler_read_insurer ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY contract_handler_entrustment_guard ON public.contract_handler
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- customer --------------------------------------------------------------------------------
ALTER TABLE public.customer ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.customer FORCE ROW LEVEL SECURITY;
CREATE POLICY customer_read_through_contract ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.contract_customer_ids())::bigint[]));
CREATE POLICY customer_read_prospect ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY customer_insert_prospect ON public.customer
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (registered_by_agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY customer_update_contact ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING (id = ANY ((SELECT agency_rls.updatable_customer_ids())::bigint[]))
    WITH CHECK (id = ANY ((SELECT agency_rls.updatable_customer_ids())::bigint[]));

-- notice ----------------------------------------------------------------------------------
ALTER TABLE public.notice ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice FORCE ROW LEVEL SECURITY;
CREATE POLICY notice_read_addressed ON public.notice
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));
CREATE POLICY notice_read_insurer ON public.notice
    AS PERMISSIVE FOR SELECT TO {{insurer_group}}
    USING (insurer_id = (SELECT agency_rls.insurer_id()));
CREATE POLICY notice_entrustment_guard ON public.notice
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

-- notice_receipt --------------------------------------------------------------------------
ALTER TABLE public.notice_receipt ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notice_receipt FORCE ROW LEVEL SECURITY;
CREATE POLICY notice_receipt_read_own ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()));
CREATE POLICY notice_receipt_read_restricted ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.restricted_agency_id())
           AND notice_id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));
CREATE POLICY notice_receipt_insert_own ON public.notice_receipt
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (agency_id = (SELECT agency_rls.unrestricted_agency_id())
                AND notice_id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));

-- principal: a principal sees the row naming its own role. current_user is the role in
-- force (policies run as the caller); a role that merely inherits a principal's privileges
-- has another name and sees nothing. (current_user is a "name"; cast once to text so the
-- primary key index applies.)
ALTER TABLE public.principal ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.principal FORCE ROW LEVEL SECURITY;
CREATE POLICY principal_read_own ON public.principal
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (role_name = (SELECT current_user::text));

-- ==== grants.sql ====
-- agency-rls: ownership and privileges.
--
-- Principals get their privileges only through {{agency_group}} / {{insurer_group}}.
-- Reading is SELECT on every table (the policies decide which rows); the only writes are
-- the spec's: a prospect customer and contact columns for agencies, and notice receipts.
-- Column lists leave out id (principals never choose one) and registered_by_agency_id on
-- UPDATE. No DELETE, TRUNCATE, REFERENCES or TRIGGER for anyone, no CREATE on any schema.

ALTER TABLE public.insurer          OWNER TO {{owner}};
ALTER TABLE public.agency           OWNER TO {{owner}};
ALTER TABLE public.supervision      OWNER TO {{owner}};
ALTER TABLE public.entrustment      OWNER TO {{owner}};
ALTER TABLE public.customer         OWNER TO {{owner}};
ALTER TABLE public.contract         OWNER TO {{owner}};
ALTER TABLE public.contract_handler OWNER TO {{owner}};
ALTER TABLE public.notice           OWNER TO {{owner}};
ALTER TABLE public.notice_receipt   OWNER TO {{owner}};
ALTER TABLE public.principal        OWNER TO {{owner}};

-- The scope functions belong to the BYPASSRLS helper owner; nobody else may run them but
-- the principals whose policies call them.
ALTER FUNCTION agency_rls.acting_role()               OWNER TO {{helper}};
ALTER FUNCTION agency_rls.acting_principal()          OWNER TO {{helper}};
ALTER FUNCTION agency_rls.insurer_id()                OWNER TO {{helper}};
ALTER FUNCTION agency_rls.unrestricted_agency_id()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.restricted_agency_id()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.scope_insurer_ids()         OWNER TO {{helper}};
ALTER FUNCTION agency_rls.supervised_agency_ids()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.supervisor_agency_ids()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_contract_ids()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_customer_ids()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.updatable_customer_ids()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_notice_ids()        OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_agency_ids()        OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_supervision_ids()   OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_entrustment_ids()   OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_handler_insurer()  OWNER TO {{helper}};

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agency_rls FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.role_prefix() TO PUBLIC;
-- The backend resolves principal names (prefix + code) before it acts as one.
GRANT USAGE ON SCHEMA agency_rls TO {{backend}};
GRANT USAGE ON SCHEMA agency_rls TO {{helper}}, {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};
GRANT EXECUTE ON FUNCTION
    agency_rls.insurer_id(),
    agency_rls.unrestricted_agency_id(),
    agency_rls.restricted_agency_id(),
    agency_rls.scope_insurer_ids(),
    agency_rls.visible_contract_ids(),
    agency_rls.contract_customer_ids(),
    agency_rls.updatable_customer_ids(),
    agency_rls.visible_notice_ids(),
    agency_rls.visible_agency_ids(),
    agency_rls.visible_supervision_ids(),
    agency_rls.visible_entrustment_ids()
    TO {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};

-- Tables.
REVOKE ALL ON public.insurer, public.agency, public.supervision, public.entrustment,
              public.customer, public.contract, public.contract_handler, public.notice,
              public.notice_receipt, public.principal
    FROM PUBLIC;
GRANT SELECT ON public.insurer TO PUBLIC;
-- The scope functions read across scope (their owner bypasses row level security).
GRANT SELECT ON public.agency, public.supervision, public.entrustment, public.customer,
                public.contract, public.contract_handler, public.notice, public.principal
    TO {{helper}};
GRANT SELECT ON public.agency, public.supervision, public.entrustment, public.customer,
                public.contract, public.contract_handler, public.notice, public.notice_receipt,
                public.principal
    TO {{agency_group}}, {{insurer_group}};
GRANT INSERT (full_name, full_name_kana, address, phone, fax, email, birth_date, gender,
              registered_by_agency_id)
    ON public.customer TO {{agency_writer_group}};
GRANT UPDATE (address, phone, fax, email) ON public.customer TO {{agency_writer_group}};
GRANT INSERT (notice_id, agency_id, read_at) ON public.notice_receipt TO {{agency_writer_group}};

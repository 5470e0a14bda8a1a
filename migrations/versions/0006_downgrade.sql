-- agency-rls revision 0006, downgrade: back to the scope arrays of revision 0005.

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
      JOIN pg_catalog.pg_roles AS r ON r.rolname = p.role_name
     WHERE p.role_name = agency_rls.acting_role()
       AND pg_catalog.shobj_description(r.oid, 'pg_authid')
           = 'agency-rls:principal database=' || pg_catalog.current_database();
END
$$;

CREATE OR REPLACE FUNCTION agency_rls.scope_insurer_ids() RETURNS bigint[]
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

GRANT CREATE ON SCHEMA agency_rls TO {{helper}};
ALTER FUNCTION agency_rls.visible_contract_ids()      OWNER TO {{helper}};
ALTER FUNCTION agency_rls.contract_customer_ids()     OWNER TO {{helper}};
ALTER FUNCTION agency_rls.updatable_customer_ids()    OWNER TO {{helper}};
ALTER FUNCTION agency_rls.visible_notice_ids()        OWNER TO {{helper}};
REVOKE CREATE ON SCHEMA agency_rls FROM {{helper}};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agency_rls FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agency_rls.role_prefix() TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    agency_rls.visible_contract_ids(),
    agency_rls.contract_customer_ids(),
    agency_rls.updatable_customer_ids(),
    agency_rls.visible_notice_ids()
    TO {{agency_group}}, {{agency_writer_group}}, {{insurer_group}};

DROP POLICY contract_read_handled ON public.contract;
DROP POLICY contract_agency_handles ON public.contract;
DROP POLICY contract_handler_read_handled ON public.contract_handler;
DROP POLICY customer_read_through_contract ON public.customer;
DROP POLICY customer_read_insurer ON public.customer;
DROP POLICY customer_update_contact ON public.customer;
DROP POLICY customer_update_prospect ON public.customer;
DROP POLICY notice_read_addressed ON public.notice;
DROP POLICY notice_receipt_read_restricted ON public.notice_receipt;
DROP POLICY notice_receipt_insert_own ON public.notice_receipt;
DROP POLICY scope_copies_refresh ON public.contract;
DROP POLICY scope_copies_refresh ON public.customer;

CREATE POLICY contract_read_handled ON public.contract
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[]));
CREATE POLICY contract_handler_read_handled ON public.contract_handler
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (contract_id = ANY ((SELECT agency_rls.visible_contract_ids())::bigint[]));
CREATE POLICY customer_read_through_contract ON public.customer
    AS PERMISSIVE FOR SELECT TO {{agency_group}}, {{insurer_group}}
    USING (id = ANY ((SELECT agency_rls.contract_customer_ids())::bigint[]));
CREATE POLICY customer_update_contact ON public.customer
    AS PERMISSIVE FOR UPDATE TO {{agency_writer_group}}
    USING (id = ANY ((SELECT agency_rls.updatable_customer_ids())::bigint[]))
    WITH CHECK (id = ANY ((SELECT agency_rls.updatable_customer_ids())::bigint[]));
CREATE POLICY notice_read_addressed ON public.notice
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));
CREATE POLICY notice_receipt_read_restricted ON public.notice_receipt
    AS PERMISSIVE FOR SELECT TO {{agency_group}}
    USING (agency_id = (SELECT agency_rls.restricted_agency_id())
           AND notice_id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));
CREATE POLICY notice_receipt_insert_own ON public.notice_receipt
    AS PERMISSIVE FOR INSERT TO {{agency_writer_group}}
    WITH CHECK (agency_id = (SELECT agency_rls.unrestricted_agency_id())
                AND notice_id = ANY ((SELECT agency_rls.visible_notice_ids())::bigint[]));

DROP POLICY contract_entrustment_guard ON public.contract;
CREATE POLICY contract_entrustment_guard ON public.contract
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

DROP POLICY notice_entrustment_guard ON public.notice;
CREATE POLICY notice_entrustment_guard ON public.notice
    AS RESTRICTIVE FOR ALL TO {{agency_group}}, {{insurer_group}}
    USING (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]))
    WITH CHECK (insurer_id = ANY ((SELECT agency_rls.scope_insurer_ids())::bigint[]));

REVOKE SELECT (id, full_name, full_name_kana, address, phone, fax, email, birth_date, gender,
               registered_by_agency_id)
    ON public.customer FROM {{agency_group}}, {{insurer_group}};
GRANT SELECT ON public.customer TO {{agency_group}}, {{insurer_group}};

DROP TRIGGER customer_scope_after_insert ON public.customer;
DROP TRIGGER customer_scope_after_update ON public.customer;
DROP TRIGGER customer_scope_after_insert ON public.contract;
DROP TRIGGER customer_scope_after_update ON public.contract;
DROP TRIGGER customer_scope_after_delete ON public.contract;
DROP TRIGGER customer_scope_after_truncate ON public.contract;
DROP TRIGGER contract_scope_after_insert ON public.contract_handler;
DROP TRIGGER contract_scope_after_update ON public.contract_handler;
DROP TRIGGER contract_scope_after_delete ON public.contract_handler;
DROP TRIGGER contract_scope_after_truncate ON public.contract_handler;
DROP FUNCTION agency_rls.customer_rows_updated();
DROP FUNCTION agency_rls.customer_rows_inserted();
DROP FUNCTION agency_rls.contract_rows_truncated();
DROP FUNCTION agency_rls.contract_rows_deleted();
DROP FUNCTION agency_rls.contract_rows_updated();
DROP FUNCTION agency_rls.contract_rows_inserted();
DROP FUNCTION agency_rls.handler_rows_truncated();
DROP FUNCTION agency_rls.handler_rows_deleted();
DROP FUNCTION agency_rls.handler_rows_updated();
DROP FUNCTION agency_rls.handler_rows_inserted();
DROP FUNCTION agency_rls.refresh_customer_scope(bigint[]);
DROP FUNCTION agency_rls.refresh_contract_scope(bigint[]);
DROP FUNCTION agency_rls.validity(timestamptz, timestamptz);
DROP FUNCTION agency_rls.addressee_agency_ids();
DROP FUNCTION agency_rls.handling_agency_ids();

DROP INDEX public.notice_addressee_created_idx;
ALTER TABLE public.contract DROP COLUMN handler_agency_ids, DROP COLUMN handler_windows;
ALTER TABLE public.customer
    DROP COLUMN handler_agency_ids, DROP COLUMN handler_insurer_ids, DROP COLUMN handler_windows,
    DROP COLUMN party_insurer_ids;

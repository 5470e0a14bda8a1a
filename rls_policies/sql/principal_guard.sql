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

-- agency-rls: what each principal role was provisioned for.
--
-- agency-rls provision records here, for every principal role it creates, the mapping of the
-- principal row it created the role for. The scope functions honour a principal row only when
-- it matches this record, and a principal row naming a role that exists is accepted only when
-- it matches too: a reload of the same principal rows works, but a row that would hand an
-- existing role another scope (a group or management role, another database's role, or a live
-- principal remapped by DELETE + INSERT, even in one statement) is refused. To remap a
-- principal: delete its row, run 'agency-rls provision --prune' (which drops the role and its
-- record), insert the new row, provision.
CREATE TABLE agency_rls.provisioned_principal (
    role_name  text PRIMARY KEY,
    kind       text NOT NULL,
    agency_id  bigint,
    insurer_id bigint
);
ALTER TABLE agency_rls.provisioned_principal OWNER TO {{owner}};
REVOKE ALL ON agency_rls.provisioned_principal FROM PUBLIC;
GRANT SELECT ON agency_rls.provisioned_principal TO {{helper}};
COMMENT ON TABLE agency_rls.provisioned_principal IS 'agency-rls: the mapping each principal role was provisioned for (written by agency-rls provision)';

-- The twin check below looks rows up by lower(role_name): on this index, not by scanning the table
-- for every inserted row (provisioning 10,000 principals took 26 s, quadratic in their number).
CREATE INDEX principal_role_name_lower_idx ON public.principal (pg_catalog.lower(role_name));

-- A new principal row names a role that does not exist yet (provision creates it), or a role
-- provisioned for exactly this mapping. Names are canonical: lower-case ASCII letters, digits and
-- _ (unquoted SQL folds case, so 'Agency_S1' and 'agency_s1' would be two principals and the
-- wrong one is entered; look-alike and invisible characters read as another name), at most 63
-- bytes (longer names are truncated by PostgreSQL), no pg_; no case-insensitive twin of a row.
-- SECURITY DEFINER (owned by {{helper}}) so that the checks see every principal row and the
-- provisioning record.
CREATE FUNCTION agency_rls.principal_row_names_a_new_role() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.role_name IS NULL
       OR NEW.role_name !~ '^[a-z_][a-z0-9_]*$'
       OR pg_catalog.octet_length(NEW.role_name) > 63
       OR NEW.role_name LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'agency-rls: principal role name % is not canonical', pg_catalog.quote_literal(NEW.role_name)
            USING HINT = 'use lower-case ASCII letters, digits and _ (at most 63, not starting with a digit or pg_)',
                  ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT FROM public.principal AS p
                WHERE pg_catalog.lower(p.role_name) = NEW.role_name
                  AND p.role_name <> NEW.role_name) THEN
        RAISE EXCEPTION 'agency-rls: principal % collides with an existing principal', pg_catalog.quote_ident(NEW.role_name)
            USING HINT = 'principal role names must differ in more than case',
                  ERRCODE = 'unique_violation';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = NEW.role_name)
       AND NOT EXISTS (SELECT FROM agency_rls.provisioned_principal AS pp
                        WHERE pp.role_name = NEW.role_name
                          AND pp.kind = NEW.kind
                          AND pp.agency_id IS NOT DISTINCT FROM NEW.agency_id
                          AND pp.insurer_id IS NOT DISTINCT FROM NEW.insurer_id) THEN
        RAISE EXCEPTION 'agency-rls: role % already exists and was not provisioned for this principal row',
                pg_catalog.quote_ident(NEW.role_name)
            USING HINT = 'to remap a principal: delete its row, run agency-rls provision --prune (drops the role), insert the new row, run agency-rls provision',
                  ERRCODE = 'duplicate_object';
    END IF;
    RETURN NEW;
END
$$;
-- A new owner needs CREATE on the schema unless a superuser hands it over: granted for the
-- hand-over only (grants.sql does the same).
GRANT CREATE ON SCHEMA agency_rls TO {{helper}};
ALTER FUNCTION agency_rls.principal_row_names_a_new_role() OWNER TO {{helper}};
REVOKE CREATE ON SCHEMA agency_rls FROM {{helper}};

CREATE TRIGGER principal_row_names_a_new_role
    BEFORE INSERT ON public.principal
    FOR EACH ROW
    EXECUTE FUNCTION agency_rls.principal_row_names_a_new_role();

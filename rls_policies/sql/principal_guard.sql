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

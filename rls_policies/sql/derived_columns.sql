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

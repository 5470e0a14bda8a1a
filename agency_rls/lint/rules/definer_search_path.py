"""A SECURITY DEFINER function without a pinned ``search_path`` ending in ``pg_temp``.

A definer function runs with its owner's rights, and resolves unqualified names through the
caller's ``search_path``: a caller who can create an object in any schema on it (``pg_temp``
always, and it is searched first unless listed) substitutes its own function or operator and
runs it as the owner (threats.md 3, 29).

Bad::

    CREATE FUNCTION agency_rls.insurer_id() RETURNS bigint LANGUAGE sql SECURITY DEFINER
        AS $$ SELECT insurer_id FROM principal WHERE role_name = current_user $$;

Good::

    CREATE FUNCTION agency_rls.insurer_id() RETURNS bigint LANGUAGE sql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$ SELECT p.insurer_id FROM public.principal AS p WHERE … $$;
"""

ID = "definer_search_path"
LEVEL = "error"
TITLE = "SECURITY DEFINER function without a pinned search_path"

SQL = """
WITH definer AS (
    SELECT p.oid,
           (SELECT pg_catalog.substr(setting, pg_catalog.length('search_path=') + 1)
              FROM pg_catalog.unnest(p.proconfig) AS setting
             WHERE setting LIKE 'search\\_path=%%') AS search_path
      FROM pg_catalog.pg_proc AS p
      JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
     WHERE p.prosecdef AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
)
SELECT NULL AS level,
       'function ' || d.oid::regprocedure::text AS object,
       'SECURITY DEFINER function ' || d.oid::regprocedure::text
       || CASE WHEN d.search_path IS NULL THEN ' has no search_path setting: it resolves names through the caller''s'
               ELSE ' sets search_path = ' || d.search_path || ', which does not end in pg_temp (temporary objects are searched first)'
          END AS message,
       'ALTER FUNCTION ' || d.oid::regprocedure::text || ' SET search_path = pg_catalog, <its schema>, pg_temp' AS remedy
  FROM definer AS d
 WHERE d.search_path IS NULL
    OR pg_catalog.btrim(pg_catalog.lower((pg_catalog.regexp_split_to_array(d.search_path, '\\s*,\\s*'))[
           pg_catalog.array_length(pg_catalog.regexp_split_to_array(d.search_path, '\\s*,\\s*'), 1)]), ' "')
       <> 'pg_temp'
 ORDER BY 2
"""

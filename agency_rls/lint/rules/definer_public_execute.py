"""A SECURITY DEFINER function that PUBLIC may execute.

Functions are executable by PUBLIC unless revoked. A definer function runs with its owner's
rights (here: a role that reads every row through policies), so every role in the cluster, not
only the principals whose policies need it, gets those rights on whatever it returns (threats.md
3, 29). Trigger functions are included: revoking costs nothing and keeps the rule simple.

Bad::

    CREATE FUNCTION agency_rls.scope_insurer_ids() … SECURITY DEFINER …;   -- EXECUTE stays with PUBLIC

Good::

    REVOKE ALL ON FUNCTION agency_rls.scope_insurer_ids() FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION agency_rls.scope_insurer_ids() TO crm_rls_agency, crm_rls_insurer;
"""

ID = "definer_public_execute"
LEVEL = "error"
TITLE = "SECURITY DEFINER function executable by PUBLIC"

SQL = """
SELECT NULL AS level,
       'function ' || p.oid::regprocedure::text AS object,
       'SECURITY DEFINER function ' || p.oid::regprocedure::text || ' (owner '
       || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.proowner))
       || ') is executable by PUBLIC: every role runs it with its owner''s rights' AS message,
       'REVOKE ALL ON FUNCTION ' || p.oid::regprocedure::text
       || ' FROM PUBLIC; then GRANT EXECUTE to the roles that need it' AS remedy
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
 WHERE p.prosecdef AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 2
"""

"""A policy that admits rows when the caller's identity is missing (the scope function returns NULL).

A scope function returns NULL (or an empty array) for a role that is not a principal: the
backend before SET ROLE, a role that only inherits a principal's privileges, a principal whose
row is gone. Policies must fail closed then (threats.md 13, attacks 18, 20, 33). Flagged are the
shapes that turn a missing identity into access: ``f() IS NULL`` as an alternative,
``coalesce(f(), <fallback>)``, ``x IS [NOT] DISTINCT FROM f()`` (NULL matches NULL, or everything
else), ``x <> ALL (f())`` (true against an empty array), and a ``current_setting(…, true)``
compared with NULL or ''. The project's own guard, ``(SELECT f()) IS NOT NULL AND …``, is the
fail-closed shape and is not flagged; so is ``f() IS NULL AND col = (SELECT g())`` (or
``col @> ARRAY[(SELECT g())]``), where the arm that a missing ``f()`` opens compares the row with
the statement's identity at once, which a missing identity never matches (agency-rls's insurer
policies fall back so when the insurer folded into the plan is NULL).

Bad::

    CREATE POLICY contract_read_insurer ON public.contract FOR SELECT TO crm_rls_insurer
        USING (agency_rls.insurer_id() IS NULL OR insurer_id = agency_rls.insurer_id());
    CREATE POLICY contract_read_insurer ON public.contract FOR SELECT TO crm_rls_insurer
        USING (insurer_id = coalesce((SELECT agency_rls.insurer_id()), insurer_id));

Good::

    CREATE POLICY contract_read_insurer ON public.contract FOR SELECT TO crm_rls_insurer
        USING (insurer_id = (SELECT agency_rls.insurer_id()));   -- NULL = x is never true
"""

from agency_rls.lint.catalog import PREAMBLE

ID = "admits_missing_identity"
LEVEL = "error"
TITLE = "Policy that admits rows when identity is missing"

#: A call of a function without arguments, optionally wrapped as ``( SELECT f() AS f)`` (how the
#: server prints a scalar subquery), or a current_setting call.
_CALL = r"(\(\s*SELECT\s+)?([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*\(\s*\)(\s+AS\s+[a-z_][a-z0-9_$]*\))?"
_SETTING = r"current_setting\([^()]*\)"
#: ``f() IS NULL`` ANDed with a comparison of a column with the statement's identity, as the server
#: prints it: ``(f() IS NULL) AND (col = ( SELECT g() AS g))`` or ``… AND (col @> ARRAY[( SELECT g() AS g)])``.
_IDENTITY = r"\(\s*SELECT\s+([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*\(\s*\)\s+AS\s+[a-z_][a-z0-9_$]*\)"
PARAMS = {
    "fail_closed_fallback": (
        rf"{_CALL}\s+IS\s+NULL\)\s+AND\s+\([a-z_][a-z0-9_$]*\s+(=\s+{_IDENTITY}|@>\s+ARRAY\[{_IDENTITY}\])\)"
    ),
    "missing_identity_shapes": [
        # f() IS NULL  (not IS NOT NULL)
        rf"({_CALL}|{_SETTING})(::[a-z_\[\] ]+)?\)*\s+IS\s+NULL",
        # coalesce(f(), …)
        rf"coalesce\(\s*\(*\s*({_CALL}|{_SETTING})",
        # … IS [NOT] DISTINCT FROM f()
        rf"IS\s+(NOT\s+)?DISTINCT\s+FROM\s+\(*\s*({_CALL}|{_SETTING})",
        # x <> ALL (f())
        rf"<>\s*ALL\s*\(\s*\(*\s*({_CALL}|{_SETTING})",
        # current_setting(…, true) compared with ''
        r"current_setting\([^()]*,\s*true\)(::[a-z_ ]+)?\)*\s*=\s*''",
    ],
}

SQL = f"""{PREAMBLE},
policy AS (
    SELECT p.polname, p.polrelid,
           pg_catalog.concat_ws(' WITH CHECK ', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                                pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) AS body
      FROM pg_catalog.pg_policy AS p
     WHERE p.polpermissive
       AND (0::oid = ANY (p.polroles)
            OR EXISTS (SELECT FROM application_reach AS r WHERE r.oid = ANY (p.polroles)))
)
SELECT NULL AS level,
       'policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text AS object,
       'policy ' || pg_catalog.quote_ident(p.polname) || ' ON ' || p.polrelid::regclass::text
       || ' admits rows when the caller''s identity is missing: ' || p.body AS message,
       'compare the row''s scope column with the identity directly (NULL never equals anything); guard with '
       || '(SELECT f()) IS NOT NULL AND …, never with f() IS NULL OR … or a coalesce fallback' AS remedy
  FROM policy AS p
 WHERE EXISTS (SELECT FROM pg_catalog.unnest(%(missing_identity_shapes)s::text[]) AS shape
                WHERE pg_catalog.regexp_replace(p.body, %(fail_closed_fallback)s, '', 'gi') ~* shape)
 ORDER BY 2
"""

-- agency-rls: management roles and the helper schema.
--
-- Roles are cluster-wide and databases are not, so a prefix's roles belong to exactly one
-- database: each carries the marker comment 'agency-rls:management database=<that database>'.
-- A role of the same name with another database's marker (the prefix is taken: choose another
-- one), without the marker, or that is a superuser, BYPASSRLS, CREATEROLE or predefined role,
-- is never adopted. No role of the project bypasses row level security.
--
--   {{owner}}          NOLOGIN, owns the tables; FORCE row level security applies to it too.
--   {{helper}}         NOLOGIN, owns only the SECURITY DEFINER scope functions; nobody is
--                      granted membership in it. It reads across scope through SELECT
--                      policies that name it alone (policies.sql), not by BYPASSRLS, so a
--                      DBA without SUPERUSER can create it (managed PostgreSQL).
--   {{backend}}        LOGIN NOINHERIT: member of every principal role, sees nothing itself;
--                      acts for a principal with SET LOCAL ROLE.
--   {{agency_group}}   NOLOGIN group of every agency principal; policies name it.
--   {{agency_writer_group}}  NOLOGIN group of the unrestricted agency principals, the only
--                      ones granted any write (restricted principals' writes fail with an error).
--   {{insurer_group}}  NOLOGIN group of every insurer principal; policies name it.
--   {{loader}}         NOLOGIN; policies open every row of every table to it, to read and write:
--                      loads and maintenance by the DBA (and ETL logins) who join it, instead of
--                      SUPERUSER or BYPASSRLS. Never granted to a principal or the backend.
--
-- A DBA without SUPERUSER (CREATEROLE, owner of the database: managed PostgreSQL) joins the
-- owner, the helper (until grants.sql has given it its functions) and the loader, so that it
-- can hand objects to them and load data; a superuser needs none of that.

DO $roles$
DECLARE
    wanted CONSTANT text[][] := ARRAY[
        [{{owner_name}},         'NOLOGIN NOINHERIT'],
        [{{helper_name}},        'NOLOGIN NOINHERIT'],
        [{{backend_name}},       'LOGIN NOINHERIT'],
        [{{agency_group_name}},  'NOLOGIN NOINHERIT'],
        [{{agency_writer_group_name}}, 'NOLOGIN NOINHERIT'],
        [{{insurer_group_name}}, 'NOLOGIN NOINHERIT'],
        [{{loader_name}},        'NOLOGIN NOINHERIT']
    ];
    marker CONSTANT text := 'agency-rls:management database=' || pg_catalog.current_database();
    found_marker text;
    i int;
    existing pg_catalog.pg_roles%ROWTYPE;
BEGIN
    FOR i IN 1 .. pg_catalog.array_length(wanted, 1) LOOP
        SELECT * INTO existing FROM pg_catalog.pg_roles WHERE rolname = wanted[i][1];
        IF NOT FOUND THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I %s', wanted[i][1], wanted[i][2]);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', wanted[i][1], marker);
            CONTINUE;
        END IF;
        found_marker := pg_catalog.shobj_description(existing.oid, 'pg_authid');
        IF found_marker LIKE 'agency-rls:management%' AND found_marker IS DISTINCT FROM marker THEN
            RAISE EXCEPTION 'agency-rls: role prefix % is taken: role % belongs to %',
                pg_catalog.quote_literal({{prefix_literal}}), pg_catalog.quote_ident(wanted[i][1]),
                CASE WHEN found_marker LIKE 'agency-rls:management database=%'
                     THEN 'database ' || pg_catalog.quote_ident(pg_catalog.substr(found_marker, 32))
                     ELSE 'another database' END
                USING HINT = 'migrate this database with another --role-prefix (a prefix belongs to one database)',
                      ERRCODE = 'duplicate_object';
        ELSIF found_marker IS DISTINCT FROM marker
              OR existing.rolsuper OR existing.rolcreaterole OR existing.rolcreatedb
              OR existing.rolreplication OR existing.rolbypassrls
              OR existing.rolname LIKE 'pg\_%' THEN
            RAISE EXCEPTION 'agency-rls: role % exists and is not an agency-rls management role',
                pg_catalog.quote_ident(wanted[i][1])
                USING HINT = 'choose another role prefix, or drop that role';
        END IF;
    END LOOP;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('GRANT %I, %I, %I TO CURRENT_USER',
                                  {{owner_name}}, {{helper_name}}, {{loader_name}});
    END IF;
END
$roles$;

-- The backend's sessions never compile queries to machine code. The planner charges a policy's
-- per-row checks, so a principal with a large scope gets plan costs above jit_above_cost even when
-- the plan reads a few hundred buffers: compiling took 180 ms for a 7 ms page of 50 contracts of
-- the largest agency (1,000,000 contracts). Principals act through the backend's sessions
-- (SET LOCAL ROLE), which keep this setting; RESET ALL at check-in returns to it.
ALTER ROLE {{backend}} SET jit = off;

CREATE SCHEMA agency_rls AUTHORIZATION {{owner}};
COMMENT ON SCHEMA agency_rls IS 'agency-rls: scope functions used by row level security policies';

-- The role prefix, stored so that every command (provision, demo, tests) agrees on names.
CREATE FUNCTION agency_rls.role_prefix() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN {{prefix_literal}};
ALTER FUNCTION agency_rls.role_prefix() OWNER TO {{owner}};

-- Provisioning serialises on a lock of this table (SHARE UPDATE EXCLUSIVE, which conflicts with
-- itself). Principals have no privilege on it, so they cannot take that lock or any lock that
-- conflicts with it: a PREPAREd statement naming it holds only ACCESS SHARE, and every other
-- way to lock it checks privileges first. (An advisory lock would not do: any role can take one.)
CREATE TABLE agency_rls.provision_lock ();
ALTER TABLE agency_rls.provision_lock OWNER TO {{owner}};
REVOKE ALL ON agency_rls.provision_lock FROM PUBLIC;
COMMENT ON TABLE agency_rls.provision_lock IS 'agency-rls: agency-rls provision locks this table; it holds no rows';

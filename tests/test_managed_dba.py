"""Managed PostgreSQL: a DBA that is NOSUPERUSER, with CREATEROLE and CREATEDB, owning its database.

Amazon RDS and the other managed services give the DBA no SUPERUSER, and on PostgreSQL 15 only a
superuser can create a BYPASSRLS role. Installing from the current definition (the runner does
that for a new database) needs none: the scope functions' owner reads through policies naming it,
and loads go through the loader role the DBA joins.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import ProvisionError, provision
from agency_rls.scripts.cli import app
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from agency_rls.checks.sample_world import PRINCIPALS
from agency_rls.cluster.database import conninfo_url
from tests.support import (
    LOGIN_PASSWORD,
    WALKS_REVISIONS,
    ScratchDatabase,
    World,
    create_database,
    sample_world_on,
    set_test_passwords,
)
from tests.test_hardening import SMALL_WORLD, visible


@pytest.fixture
def managed(server: str) -> Iterator[tuple[ScratchDatabase, str]]:
    """A database owned by a new NOSUPERUSER CREATEROLE CREATEDB login, and that login's conninfo."""
    db = create_database(server, "managed", dba=True)  # the DBA whatever AGENCY_RLS_TEST_AS says
    try:
        yield db, db.conninfo
    finally:
        db.drop()  # also drops leftover roles of the prefix, then the DBA


def test_a_nosuperuser_dba_installs_provisions_and_removes_everything(
    managed: tuple[ScratchDatabase, str],
) -> None:
    db, dba = managed
    with psycopg.connect(dba) as conn:
        assert conn.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (
            False,
            True,
        )
    migrations_runner.upgrade(conninfo_url(dba), "head", role_prefix=db.prefix)
    assert migrations_runner.migrated_revision(conninfo_url(dba)) == migrations_runner.head_revision()
    with psycopg.connect(dba, autocommit=True) as conn:
        conn.execute(SMALL_WORLD)  # a load: the DBA is a member of the loader role
        report = provision(conn, login=True)
        assert len(report.roles_created) == 4
        set_test_passwords(conn, db.prefix)
        powerful = conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND rolname <> %s"
            " AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb)",
            (db.prefix, db.prefix + "dba"),
        ).fetchall()
        assert powerful == []
    backend = psycopg.connect(db.login_conninfo(db.role("rls_backend")))
    try:
        w = World(db=db, backend=backend)
        assert visible(w, "agency_w11", "contract") == [1]
        assert visible(w, "agency_s1", "contract") == [1, 2]
        assert visible(w, "insurer_gw1", "contract") == [2]
        assert visible(w, "agency_w11", "customer") == [1]
    finally:
        backend.close()
    migrations_runner.downgrade(conninfo_url(dba), "base")
    assert db.leftover_roles() == []  # but the DBA
    with db.connect() as conn:
        assert conn.execute(
            "SELECT to_regclass('public.contract'), to_regnamespace('agency_rls')"
        ).fetchone() == (
            None,
            None,
        )


@WALKS_REVISIONS  # fresh_db is the DBA's in DBA mode; the managed DBA's refusal is pinned below
def test_a_new_database_installed_from_the_definition_matches_one_migrated_revision_by_revision(
    fresh_db: ScratchDatabase,
) -> None:
    """The runner's shortcut is the same database as walking every revision (the drift test
    compares catalogs; here: the version stamped, and a plain walk back down works)."""
    fresh_db.migrate()
    assert migrations_runner.migrated_revision(fresh_db.url) == migrations_runner.head_revision()
    migrations_runner.downgrade(fresh_db.url, "0001")  # revision by revision
    migrations_runner.upgrade(fresh_db.url, "head")  # revision by revision (the database is migrated)
    fresh_db.downgrade_base()
    assert fresh_db.leftover_roles() == []


def test_missing_privileges_are_named_up_front_in_one_line(
    managed: tuple[ScratchDatabase, str], server: str
) -> None:
    db, dba = managed
    dba_url = conninfo_url(dba)
    # A login that owns nothing and cannot create roles: the command names both, nothing changes.
    plain = f"{db.prefix}plain"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(plain), sql.Literal(LOGIN_PASSWORD)
            )
        )
    plain_url = conninfo_url(make_conninfo(db.conninfo, user=plain, password=LOGIN_PASSWORD))
    result = CliRunner().invoke(app, ["migrate", "--database-url", plain_url, "--role-prefix", db.prefix])
    assert result.exit_code == 1
    assert result.stderr == (
        f"agency-rls: migrating agency-rls needs CREATEROLE and ownership of database {db.name!r} and CREATE on"
        " schema public (or SUPERUSER);"
        f" {plain!r} lacks it\n"
    )
    assert migrations_runner.migrated_revision(dba_url) is None
    # The DBA installs; walking the recorded revisions is what needs SUPERUSER, and it says so.
    migrations_runner.upgrade(dba_url, "head", role_prefix=db.prefix)
    result = CliRunner().invoke(app, ["downgrade", "0003", "--database-url", dba_url])
    assert result.exit_code == 1
    assert result.stderr.startswith("agency-rls: downgrading to revision 0003 walks the recorded revisions")
    assert "needs SUPERUSER" in result.stderr and len(result.stderr.splitlines()) == 1
    assert migrations_runner.migrated_revision(dba_url) == migrations_runner.head_revision()
    # provision as a CREATEROLE login that is not in the loader role.
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(plain)))
    with psycopg.connect(
        make_conninfo(db.conninfo, user=plain, password=LOGIN_PASSWORD), autocommit=True
    ) as conn:
        with pytest.raises(
            ProvisionError, match="cannot use this database's agency_rls schema: provision needs CREATEROLE"
        ):
            provision(conn)
    with db.connect() as conn:  # member of the owner only: the loader is named
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(db.role("rls_owner")), sql.Identifier(plain))
        )
    with psycopg.connect(
        make_conninfo(db.conninfo, user=plain, password=LOGIN_PASSWORD), autocommit=True
    ) as conn:
        with pytest.raises(ProvisionError, match=f"provision needs membership in '{db.prefix}rls_loader'"):
            provision(conn)
    migrations_runner.downgrade(dba_url, "base")


# --- found by the adversarial review of the managed-PostgreSQL work ---------------------------------


def test_the_installers_default_privileges_are_revoked(
    managed: tuple[ScratchDatabase, str], server: str
) -> None:
    """A DBA's ALTER DEFAULT PRIVILEGES (common on managed services) would hand every new table and
    identity sequence to someone: TRUNCATE and writes bypass row level security, last_value counts
    hidden rows. The definition revokes every grant it did not make."""
    db, dba = managed
    reporter = f"{db.prefix}reporter"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(reporter), sql.Literal(LOGIN_PASSWORD)
            )
        )
    with psycopg.connect(dba, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO {}").format(sql.Identifier(reporter))
        )
        conn.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT, USAGE ON SEQUENCES TO PUBLIC")
    migrations_runner.upgrade(conninfo_url(dba), "head", role_prefix=db.prefix)
    try:
        with psycopg.connect(dba, autocommit=True) as conn:
            leftover = conn.execute(
                """
                SELECT c.relname, acl.grantee::regrole::text, acl.privilege_type
                  FROM pg_class AS c, aclexplode(c.relacl) AS acl
                 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S')
                   AND c.relname <> 'alembic_version'  -- Alembic's, not the definition's
                   AND (acl.grantee = 0 OR acl.grantee = %s::regrole)
                   AND NOT (c.relname = 'insurer' AND acl.grantee = 0 AND acl.privilege_type = 'SELECT')
                """,
                (reporter,),
            ).fetchall()
            assert leftover == []
        with psycopg.connect(db.login_conninfo(reporter), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("TRUNCATE public.contract_handler")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT last_value FROM public.customer_id_seq")
    finally:
        migrations_runner.downgrade(conninfo_url(dba), "base")


def test_the_backend_pool_refuses_the_dba_login(managed: tuple[ScratchDatabase, str]) -> None:
    """The DBA stays a member of the owner and the loader: through the pool it would read every row."""
    from agency_rls.backend import BackendRoleError, PrincipalPool

    db, dba = managed
    migrations_runner.upgrade(conninfo_url(dba), "head", role_prefix=db.prefix)
    try:
        with pytest.raises(BackendRoleError, match="reads around row-level security"):
            with PrincipalPool(dba, min_size=1, max_size=1) as pool:
                with pool.acting_as(agency="S1"):
                    pass
    finally:
        migrations_runner.downgrade(conninfo_url(dba), "base")


def test_plain_alembic_walking_the_revisions_as_the_dba_says_it_needs_superuser(
    managed: tuple[ScratchDatabase, str],
) -> None:
    db, dba = managed
    result = CliRunner().invoke(
        app,
        ["alembic", "--database-url", conninfo_url(dba), "-x", f"role_prefix={db.prefix}", "upgrade", "head"],
    )
    assert result.exit_code == 1
    reason = result.stderr.strip().splitlines()[-1]  # after Alembic's own INFO lines
    assert reason.startswith("agency-rls: going from revision 0000 to 0009 walks revision 0002 and 0004")
    assert "which creates or alters a BYPASSRLS role: it needs SUPERUSER" in reason
    assert migrations_runner.migrated_revision(conninfo_url(dba)) is None


def test_a_principals_open_transaction_cannot_hold_a_migration_and_its_readers_forever(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After it has every table's lock, each further wait of a migration is bounded: a principal's
    open transaction on its own large object makes the downgrade give up, changing nothing."""
    from tests.support import build_world
    from tests.test_hardening import load_small_world

    monkeypatch.setenv("AGENCY_RLS_MIGRATION_LOCK_WAIT", "1")
    db = create_database(server, "bounded")
    try:
        w = build_world(db, load_small_world)
        w.backend.close()
        with psycopg.connect(db.login_conninfo(db.role("agency_w11"))) as principal:
            row = principal.execute("SELECT lo_from_bytea(0, 'x')").fetchone()
            assert row is not None
            principal.commit()
            principal.execute(sql.SQL("COMMENT ON LARGE OBJECT {} IS 'held'").format(sql.Literal(row[0])))
            with pytest.raises(SystemExit, match="a lock the migration needs was not granted in time"):
                migrations_runner.downgrade(db.url, "base")
            principal.rollback()
        assert migrations_runner.migrated_revision(db.url) == migrations_runner.head_revision()
        migrations_runner.downgrade(db.url, "base")
        assert db.leftover_roles() == []
    finally:
        db.drop()


@pytest.mark.parametrize("command", [["demo"], ["check", "--builtin"]])
def test_check_and_demo_on_a_given_server_say_they_need_a_superuser(
    managed: tuple[ScratchDatabase, str], command: list[str]
) -> None:
    """They act as each principal with SET ROLE from the connecting role; as the DBA that would fail
    principal by principal (or print counts of 0). One line, before anything runs, instead."""
    db, dba = managed
    result = CliRunner().invoke(app, [*command, "--database-url", conninfo_url(dba)])
    assert result.exit_code == (3 if command[0] == "check" else 1)  # check: 3, it cannot run
    assert result.stderr == (
        f"agency-rls: {command[0]} --database-url needs SUPERUSER: it acts as each principal with SET ROLE, and"
        f" {db.prefix + 'dba'!r} is not a superuser (without --database-url it runs on a throwaway cluster of"
        " its own)\n"
    )
    assert migrations_runner.migrated_revision(conninfo_url(dba)) is None


# --- issue 8: what a DBA without SUPERUSER leaves behind ------------------------------------------


@pytest.fixture(scope="module")
def dba_world(server: str) -> Iterator[World]:
    """The sample world installed, loaded and provisioned (LOGIN) by a NOSUPERUSER CREATEROLE owner."""
    with sample_world_on(server, "dba_world", dba=True) as built:
        yield built


def test_no_role_the_dba_creates_gets_a_power_over_row_level_security_or_roles(dba_world: World) -> None:
    """Issue 8: no created role is SUPERUSER or BYPASSRLS (nor CREATEROLE, CREATEDB, REPLICATION);
    the DBA joins the table owner and the loader, nothing else it could act as."""
    db = dba_world.db
    assert db.dba is not None
    with db.connect() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (db.dba,)
        powers = {
            name: rest
            for name, *rest in conn.execute(
                "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication"
                " FROM pg_roles WHERE starts_with(rolname, %s)",
                (db.prefix,),
            )
        }
        assert powers.pop(db.dba) == [False, False, True, True, False]
        assert len(powers) == 7 + len(PRINCIPALS)  # the management roles and the sample world's principals
        assert {name: p for name, p in powers.items() if any(p)} == {}
        usable = """
            SELECT g.rolname FROM pg_auth_members AS a JOIN pg_roles AS g ON g.oid = a.roleid
             WHERE a.member = %s::regrole{} ORDER BY 1
        """.format(" AND (a.inherit_option OR a.set_option)" if conn.info.server_version >= 160000 else "")
        assert [row[0] for row in conn.execute(usable, (db.dba,))] == [
            db.role("rls_loader"),
            db.role("rls_owner"),
        ]


def test_admin_option_is_the_dbas_alone_and_the_backend_cannot_pass_a_principal_on(dba_world: World) -> None:
    """PostgreSQL 16 and later give a CREATEROLE creator ADMIN OPTION on every role it creates (without
    their privileges and without SET): the DBA may grant any of them, as the superuser it replaces
    could. No principal, group role or the backend holds ADMIN OPTION on anything, so none of them
    can grant a principal or a group to another role. PostgreSQL 15: nobody holds it; CREATEROLE
    alone lets the DBA grant any role that is not a superuser."""
    db = dba_world.db
    with db.connect() as conn:
        version = conn.info.server_version
        created = {
            row[0]
            for row in conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND rolname <> %s",
                (db.prefix, db.dba),
            )
        }
        admin = conn.execute(
            "SELECT g.rolname, m.rolname FROM pg_auth_members AS a JOIN pg_roles AS g ON g.oid = a.roleid"
            " JOIN pg_roles AS m ON m.oid = a.member WHERE a.admin_option AND starts_with(g.rolname, %s)",
            (db.prefix,),
        ).fetchall()
    if version >= 160000:
        assert {member for _, member in admin} == {db.dba}
        assert {role for role, _ in admin} == created
    else:
        assert admin == []
    w11, nl, group, backend_role = (
        db.role("agency_w11"),
        db.role("insurer_nl"),
        db.role("rls_agency"),
        db.role("rls_backend"),
    )
    grants = [  # a principal (itself too), a group, the loader, the backend itself
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(grantee))
        for granted, grantee in (
            (w11, nl),
            (nl, w11),
            (group, nl),
            (db.role("rls_loader"), w11),
            (backend_role, w11),
            (w11, backend_role),
        )
    ]
    with psycopg.connect(db.login_conninfo(backend_role), autocommit=True) as backend:
        for grant in grants:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                backend.execute(grant)
        backend.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(w11)))  # acting as W11: neither
        for grant in grants:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                backend.execute(grant)
    with dba_world.login_as("agency_w11") as principal:  # a direct login: not even itself
        principal.autocommit = True
        for grant in grants:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                principal.execute(grant)

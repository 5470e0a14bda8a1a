"""Issue 7, what an adversarial review got through; one test (or a few) per class, named after it.

1. A role prefix shared by two databases: roles are cluster-wide, so the second database adopted
   the first one's roles (a login for agency S1 of database A read database B's S1).
2. Principal rows that name something other than a principal role: a group role (every agency
   principal can SET ROLE to it), a live role remapped by DELETE + INSERT, names differing in case.
3. Locks and storage a read-only principal can abuse: the provisioning lock, objects a principal
   owns (large objects, default privileges, role settings) that made downgrade fail.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.definition import read_template, render
from agency_rls.rls_policies.names import ManagementRoles, management_marker, principal_marker
from agency_rls.rls_policies.provision import ProvisionError, provision
from agency_rls.scripts.cli import app
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from tests.support import WALKS_REVISIONS, ScratchDatabase, World, build_world, create_database, triggers_off

SMALL_WORLD = """
INSERT INTO public.insurer (id, code, name, line, kind) VALUES
    (1, 'NL', 'Non-life', 'non_life', 'operator'), (2, 'GW1', 'Gateway 1', 'non_life', 'gateway');
INSERT INTO public.agency (id, code, name) VALUES (1, 'S1', 'Supervising'), (2, 'W11', 'Working');
INSERT INTO public.supervision (supervising_agency_id, working_agency_id, valid_from)
    VALUES (1, 2, now() - interval '1 year');
INSERT INTO public.entrustment (agency_id, insurer_id, valid_from) VALUES
    (1, 1, now() - interval '1 year'), (1, 2, now() - interval '1 year'), (2, 1, now() - interval '1 year');
INSERT INTO public.customer (id, full_name) VALUES (1, 'Ito Kenji'), (2, 'Mori Akira');
INSERT INTO public.contract (id, insurer_id, policy_number, policyholder_id, source) VALUES
    (1, 1, 'NL-1', 1, 'direct'), (2, 2, 'GW1-1', 2, 'gateway');
INSERT INTO public.contract_handler (contract_id, agency_id, valid_from) VALUES
    (1, 2, now() - interval '1 year'), (2, 1, now() - interval '1 year');
"""


def load_small_world(conn: psycopg.Connection, *, prefix: str) -> None:
    """S1 supervises W11; W11 handles NL-1; S1 handles the gateway contract GW1-1."""
    conn.execute(SMALL_WORLD)


@contextmanager
def small_world(server: str, label: str, *, prefix: str | None = None) -> Iterator[World]:
    """A migrated, loaded, provisioned (LOGIN) database; downgraded to base and dropped afterwards."""
    db = create_database(server, label)
    if prefix is not None:
        db.prefix = prefix
    built = None
    try:
        built = build_world(db, load_small_world)
        yield built
    finally:
        if built is not None:
            built.backend.close()
        try:
            if built is not None:
                db.downgrade_base()
        finally:
            db.drop()


def visible(world: World, short: str, table: str) -> list[int]:
    """Ids of ``table`` that principal ``short`` reads, acting as it through the backend role."""
    with world.acting_as(short) as cur:
        cur.execute(sql.SQL("SELECT id FROM public.{} ORDER BY id").format(sql.Identifier(table)))
        return [row[0] for row in cur.fetchall()]


def role_markers(conn: psycopg.Connection, prefix: str) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE starts_with(rolname, %s)",
        (prefix,),
    ).fetchall()
    return dict(rows)


# --- 1. A role prefix shared by two databases -------------------------------------------------


def test_shared_prefix_second_database_is_refused_with_one_line(server: str) -> None:
    """Database B migrated with database A's prefix: refused in one line naming A and the remedy."""
    with small_world(server, "prefix_a") as a:
        b = create_database(server, "prefix_b")
        try:
            result = CliRunner().invoke(app, ["migrate", "--database-url", b.url, "--role-prefix", a.prefix])
            assert result.exit_code == 1
            message = result.stderr.strip()
            assert "\n" not in message
            assert f"role prefix {a.prefix!r} is taken" in message
            assert repr(a.db.name) in message and "--role-prefix" in message
            with b.connect() as conn:  # nothing of the project in B
                assert conn.execute(
                    "SELECT to_regnamespace('agency_rls'), to_regclass('public.contract')"
                ).fetchone() == (
                    None,
                    None,
                )
            # A's principals still read A, and A's roles are still A's.
            assert visible(a, "agency_w11", "contract") == [1]
            with a.admin() as conn:
                markers = role_markers(conn, a.prefix)
            assert markers[a.role("rls_backend")] == management_marker(a.db.name)
            assert markers[a.role("agency_w11")] == principal_marker(a.db.name)
        finally:
            b.drop()


def test_shared_prefix_the_recorded_sql_refuses_too(server: str) -> None:
    """Without the command's pre-check (plain SQL, e.g. the reviewed offline script), the roles
    of another database are refused by the migration itself."""
    with small_world(server, "prefix_sql_a") as a:
        b = create_database(server, "prefix_sql_b")
        try:
            with b.connect() as conn:
                roles_sql = render(read_template("roles.sql"), ManagementRoles(a.prefix))
                with pytest.raises(
                    psycopg.errors.DuplicateObject, match=r"is taken: role .* belongs to database"
                ):
                    conn.execute(roles_sql)
                assert conn.execute("SELECT to_regnamespace('agency_rls')").fetchone() == (None,)
        finally:
            b.drop()


def test_shared_prefix_distinct_prefixes_work_side_by_side_and_prune_never_touches_the_other(
    server: str,
) -> None:
    with small_world(server, "side_a") as a, small_world(server, "side_b") as b:
        assert visible(a, "agency_w11", "contract") == [1]
        assert visible(b, "agency_w11", "contract") == [1]
        # A principal row without prefix, provisioned in A, belongs to A.
        with a.admin() as conn:
            conn.execute(
                "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id)"
                " VALUES (%s, 'agency', 1, 1)",
                (a.prefix + "x_staff",),
            )
            provision(conn)
        shared_name = a.prefix + "x_staff"
        with b.admin() as conn:
            insert = "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 2)"
            with pytest.raises(psycopg.errors.DuplicateObject, match="already exists"):
                conn.execute(insert, (shared_name,))
            with triggers_off(b.db) as loader:  # a load with triggers off gets the row in anyway
                loader.execute(insert, (shared_name,))
            with pytest.raises(ProvisionError, match=f"names a role of database {a.db.name!r}"):
                provision(conn)
            conn.execute("DELETE FROM public.principal WHERE role_name = %s", (shared_name,))
            # B's prune drops B's stale roles only; A's role, not in any B group, is untouched.
            conn.execute("DELETE FROM public.principal WHERE role_name = %s", (b.role("agency_s1"),))
            report = provision(conn, prune=True)
            assert report.roles_dropped == [b.role("agency_s1")]
        # B acting as A's principal sees nothing in B; A's principal still sees its scope in A.
        with a.admin() as conn:
            assert shared_name in role_markers(conn, a.prefix)
        assert visible(a, "x_staff", "contract") == [1]
        # Downgrading B leaves every role of A in place.
        b.db.downgrade_base()
        with a.admin() as conn:
            markers = role_markers(conn, a.prefix)
        assert markers[a.role("agency_s1")] == principal_marker(a.db.name)
        assert visible(a, "agency_s1", "contract") == [1, 2]
        b.db.migrate()  # so that small_world's own downgrade has something to do


@WALKS_REVISIONS
def test_shared_prefix_migrating_a_database_of_today_claims_its_roles(fresh_db: ScratchDatabase) -> None:
    """Revision 0003 marks the roles of a database migrated before it (bare markers) as its own."""
    migrations_runner.upgrade(fresh_db.url, "0002", role_prefix=fresh_db.prefix)
    with fresh_db.connect() as conn:
        conn.execute(SMALL_WORLD)
        conn.execute(
            "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 2)",
            (fresh_db.role("agency_w11"),),
        )
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(fresh_db.role("agency_w11"))))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS 'agency-rls:principal'").format(
                sql.Identifier(fresh_db.role("agency_w11"))
            )
        )
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(fresh_db.role("rls_agency")), sql.Identifier(fresh_db.role("agency_w11"))
            )
        )
    try:
        migrations_runner.upgrade(fresh_db.url, "head")
        with fresh_db.connect() as conn:
            markers = role_markers(conn, fresh_db.prefix)
            assert markers[fresh_db.role("rls_owner")] == management_marker(fresh_db.name)
            assert markers[fresh_db.role("agency_w11")] == principal_marker(fresh_db.name)
            provision(conn)  # adopts its own principal
        migrations_runner.downgrade(fresh_db.url, "0002")
        with fresh_db.connect() as conn:
            assert role_markers(conn, fresh_db.prefix)[fresh_db.role("agency_w11")] == "agency-rls:principal"
    finally:
        fresh_db.downgrade_base()
    assert fresh_db.leftover_roles() == []


@WALKS_REVISIONS
def test_shared_prefix_already_shared_before_0003_is_refused(fresh_db: ScratchDatabase, server: str) -> None:
    """Two databases that share a prefix since before 0003: the upgrade says so and changes nothing."""
    migrations_runner.upgrade(fresh_db.url, "0002", role_prefix=fresh_db.prefix)
    other = create_database(server, "legacy_other")
    try:
        with other.connect() as conn:  # the other database uses the owner role, as a 0002 migration would
            conn.execute("CREATE TABLE squatter ()")
            conn.execute(
                sql.SQL("ALTER TABLE squatter OWNER TO {}").format(sql.Identifier(fresh_db.role("rls_owner")))
            )
        with pytest.raises(Exception, match=f"is shared with database {other.name}"):
            migrations_runner.upgrade(fresh_db.url, "head")
        with other.connect() as conn:
            conn.execute("DROP TABLE squatter")
        migrations_runner.upgrade(fresh_db.url, "head")
    finally:
        other.drop()
        fresh_db.downgrade_base()


# --- 2. Principal rows that name something other than a principal role -------------------------


def test_principal_row_naming_a_group_role_is_refused_and_never_honoured(server: str) -> None:
    with small_world(server, "group_row") as w:
        group = w.role("rls_agency")
        with w.admin() as conn:
            insert = "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)"
            with pytest.raises(psycopg.errors.DuplicateObject, match="already exists"):
                conn.execute(insert, (group,))
            with triggers_off(w.db) as loader:  # a load with triggers off
                loader.execute(insert, (group,))
        # W11 switches to its group role (PostgreSQL 15 allows it: W11 is a member; from 16 the
        # membership is granted WITH SET FALSE) and reads as the row says S1 would: nothing,
        # because the group is not a provisioned principal. (A superuser acting as the group shows
        # the same on every major.)
        with w.login_as("agency_w11") as conn:
            if conn.info.server_version >= 160000:
                with pytest.raises(
                    psycopg.errors.InsufficientPrivilege, match="permission denied to set role"
                ):
                    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(group)))
                conn.rollback()
            else:
                assert reads_nothing_as(conn, group)
        with w.superuser() as conn:  # a DBA without SUPERUSER is no member of the group
            assert reads_nothing_as(conn, group)
        assert visible(w, "agency_s1", "contract") == [1, 2]  # the real S1 principal is unaffected


def reads_nothing_as(conn: psycopg.Connection, role: str) -> bool:
    """After SET ROLE ``role``: no row of any table a principal could read."""
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    try:
        for table in ("contract", "customer", "agency", "notice", "entrustment", "contract_handler"):
            rows = conn.execute(sql.SQL("SELECT id FROM public.{}").format(sql.Identifier(table))).fetchall()
            assert rows == [], table
    finally:
        conn.execute("RESET ROLE")
    return True


def test_principal_row_remap_by_delete_and_insert_in_one_statement_is_refused(server: str) -> None:
    with small_world(server, "remap") as w:
        name = w.role("x_staff")
        insert = "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', %s)"
        with w.admin() as conn:
            conn.execute(insert, (name, 2))
            provision(conn)
            with pytest.raises(psycopg.errors.DuplicateObject, match="already exists"):
                conn.execute(
                    """
                    WITH gone AS (DELETE FROM public.principal WHERE role_name = %s RETURNING role_name)
                    INSERT INTO public.principal (role_name, kind, agency_id) SELECT role_name, 'agency', 1 FROM gone
                    """,
                    (name,),
                )
            assert conn.execute(
                "SELECT kind, agency_id, insurer_id FROM public.principal WHERE role_name = %s", (name,)
            ).fetchall() == [("agency", 2, None)]
        assert visible(w, "x_staff", "contract") == [1]  # still W11's scope
        with w.admin() as conn:
            # Reloading the same rows (a full refresh) is fine: the role was provisioned for them.
            rows = conn.execute(
                "SELECT role_name, kind, agency_id, insurer_id FROM public.principal"
            ).fetchall()
            with conn.transaction():
                conn.execute("DELETE FROM public.principal")
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO public.principal VALUES (%s, %s, %s, %s)", rows)
            # A remap with triggers off gets the row in, but it is not honoured, and provision says why.
            with triggers_off(w.db) as loader:
                loader.execute("UPDATE public.principal SET agency_id = 1 WHERE role_name = %s", (name,))
        assert visible(w, "x_staff", "contract") == []
        with w.admin() as conn:
            with pytest.raises(
                ProvisionError, match="was provisioned for agency #2, but its row now says agency #1"
            ):
                provision(conn)
        # The documented way: delete the row, prune (drops the role), insert, provision.
        with w.admin() as conn:
            conn.execute("DELETE FROM public.principal WHERE role_name = %s", (name,))
            assert provision(conn, prune=True).roles_dropped == [name]
            conn.execute(insert, (name, 1))
            assert provision(conn).roles_created == [name]
        assert visible(w, "x_staff", "contract") == [1, 2]  # now S1's


@pytest.mark.parametrize("name", ["Agency_S1", "AGENCY_X", "staff_Nl"])
def test_principal_row_names_differing_only_in_case_are_refused(server: str, name: str) -> None:
    with small_world(server, "case") as w:
        with w.admin() as conn:
            with pytest.raises(psycopg.errors.CheckViolation, match="not canonical"):
                conn.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)",
                    (w.prefix + name,),
                )
            # A mixed-case row that predates the rule blocks its lower-case twin.
            with triggers_off(w.db) as loader:
                loader.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)",
                    (w.prefix + name,),
                )
            with pytest.raises(psycopg.errors.UniqueViolation, match="collides"):
                conn.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)",
                    ((w.prefix + name).lower(),),
                )


# --- 3. Locks and storage that a read-only principal can abuse ---------------------------------


def test_lock_and_storage_abuse_a_principal_cannot_block_provisioning(server: str) -> None:
    with small_world(server, "lock") as w, w.login_as("agency_w11") as attacker:
        attacker.autocommit = True
        # The old advisory key, at session level, and every lock the principal can try on the table.
        attacker.execute("SELECT pg_advisory_lock(hashtext('agency-rls provision'))")
        for mode in ("ACCESS SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "ACCESS EXCLUSIVE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
                attacker.execute(f"LOCK TABLE agency_rls.provision_lock IN {mode} MODE")
        # Parse analysis locks a table before privileges are checked: a PREPAREd statement holds
        # ACCESS SHARE (or ROW EXCLUSIVE) until the transaction ends. Neither conflicts.
        attacker.autocommit = False
        attacker.execute("PREPARE hold_read AS SELECT * FROM agency_rls.provision_lock")
        attacker.execute("PREPARE hold_write AS INSERT INTO agency_rls.provision_lock DEFAULT VALUES")
        held = attacker.execute(
            "SELECT mode FROM pg_locks WHERE relation = 'agency_rls.provision_lock'::regclass"
            " AND pid = pg_backend_pid() ORDER BY mode"
        ).fetchall()
        assert held == [("AccessShareLock",), ("RowExclusiveLock",)]
        with w.admin() as conn:
            report = provision(conn, lock_timeout_ms=2000)
        assert report.roles_created == []
        attacker.rollback()


def test_lock_and_storage_abuse_concurrent_provision_waits_then_says_why(server: str) -> None:
    with small_world(server, "lock_busy") as w, w.admin() as holder, w.admin() as conn:
        with holder.transaction():
            holder.execute("LOCK TABLE agency_rls.provision_lock IN SHARE UPDATE EXCLUSIVE MODE")
            with pytest.raises(ProvisionError, match="another 'agency-rls provision' is running"):
                provision(conn, lock_timeout_ms=200)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)  # the session's setting is untouched
        provision(conn, lock_timeout_ms=200)


def plant_principal_storage(w: World) -> None:
    """W11, logged in directly, makes what PostgreSQL 15 lets any role make."""
    group = sql.Identifier(w.role("rls_agency"))
    with w.login_as("agency_w11") as conn:
        conn.autocommit = True
        conn.execute("SELECT lo_from_bytea(0, 'hello from w11')")
        oid = conn.execute("SELECT max(oid) FROM pg_largeobject_metadata").fetchone()
        assert oid is not None
        conn.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO PUBLIC").format(sql.Literal(oid[0])))
        conn.execute(
            sql.SQL("ALTER ROLE {} SET application_name = 'channel'").format(
                sql.Identifier(w.role("agency_w11"))
            )
        )
        conn.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON TABLES TO PUBLIC").format(group)
        )
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC").format(
                group
            )
        )
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC"
            ).format(group)
        )
        if conn.info.server_version >= 160000:  # the membership is WITH SET FALSE: not as the group
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to set role"):
                conn.execute(sql.SQL("SET ROLE {}").format(group))
            return
        conn.execute(sql.SQL("SET ROLE {}").format(group))
        conn.execute("SELECT lo_from_bytea(0, 'hello from the group')")
        conn.execute(sql.SQL("ALTER ROLE {} SET application_name = 'group channel'").format(group))


def acts_as_group(w: World) -> bool:
    """Whether a principal can SET ROLE to its group: PostgreSQL 15 yes, 16+ no (WITH SET FALSE)."""
    with w.admin() as conn:
        return conn.info.server_version < 160000


def test_lock_and_storage_abuse_principal_objects_are_reported_and_downgrade_succeeds(server: str) -> None:
    db = create_database(server, "storage")
    try:
        w = build_world(db, load_small_world)
        try:
            plant_principal_storage(w)
            with w.admin() as conn:
                report = provision(conn)
            w11, group = w.role("agency_w11"), w.role("rls_agency")
            found = "\n".join(report.owned_objects)
            assert f"{w11} owns large object" in found
            assert f"{w11} owns default privileges on new relations belonging to role {w11}" in found
            assert f"{group} owns default privileges on new relations belonging to role {group}" in found
            assert f"{w11} has role settings application_name=channel" in found
            if acts_as_group(w):
                assert f"{group} owns large object" in found
                assert sorted(set(report.settings_reset)) == sorted({w11, group})
            else:
                assert f"{group} owns large object" not in found
                assert sorted(set(report.settings_reset)) == [w11]
            with w.admin() as conn:
                assert conn.execute(
                    "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
                    " WHERE r.rolname = ANY (%s)",
                    ([w11, group],),
                ).fetchone() == (0,)
        finally:
            w.backend.close()
        db.downgrade_base()  # failed before: "role cannot be dropped because some objects depend on it"
        assert db.leftover_roles() == []
    finally:
        db.drop()


@WALKS_REVISIONS
def test_lock_and_storage_abuse_downgrade_one_revision_keeps_policies_and_grants(server: str) -> None:
    """Going back to 0002 removes what principals made, not the group roles' grants or policies."""
    db = create_database(server, "storage_0002")
    try:
        w = build_world(db, load_small_world)
        try:
            plant_principal_storage(w)
            migrations_runner.downgrade(db.url, "0002")
            assert visible(w, "agency_w11", "contract") == [1]
            assert visible(w, "agency_s1", "contract") == [1, 2]
            with w.admin() as conn:
                assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
                assert conn.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (0,)
        finally:
            w.backend.close()
        db.downgrade_base()
        assert db.leftover_roles() == []
    finally:
        db.drop()


def test_lock_and_storage_abuse_prune_removes_what_a_stale_principal_owns(server: str) -> None:
    with small_world(server, "prune_owned") as w:
        plant_principal_storage(w)
        w11 = w.role("agency_w11")
        with w.admin() as conn:
            conn.execute("DELETE FROM public.principal WHERE role_name = %s", (w11,))
            report = provision(conn, prune=True)
            assert report.roles_dropped == [w11]
            assert report.roles_created == [w11]  # its default row is back: a new role, owning nothing
            owned = conn.execute(
                "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid WHERE r.rolname = %s",
                (w11,),
            ).fetchone()
            assert owned == (0,)


def test_shared_prefix_the_default_empty_prefix_one_database_after_the_other(server: str) -> None:
    """The issue's case exactly: two databases migrated with the default prefix, one after the other."""
    with psycopg.connect(server, autocommit=True) as conn:
        if conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'rls_owner'").fetchone() != (0,):
            pytest.skip("this server already has roles of the empty prefix")
    first, second = create_database(server, "default_a"), create_database(server, "default_b")
    try:
        migrations_runner.upgrade(first.url, "head", role_prefix="")
        try:
            result = CliRunner().invoke(app, ["migrate", "--database-url", second.url])
            assert result.exit_code == 1
            assert result.stderr == (
                f"agency-rls: role prefix '' is taken: role 'rls_agency' belongs to database {first.name!r}; a prefix "
                "belongs to one database: migrate this one with another --role-prefix (e.g. --role-prefix crm2_)\n"
            )
            with second.connect() as conn:
                assert conn.execute("SELECT to_regnamespace('agency_rls')").fetchone() == (None,)
            assert (
                CliRunner()
                .invoke(app, ["migrate", "--database-url", second.url, "--role-prefix", second.prefix])
                .exit_code
                == 0
            )
            migrations_runner.downgrade(second.url, "base")
        finally:
            migrations_runner.downgrade(first.url, "base")
        with psycopg.connect(server, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname ~ '^rls_'").fetchone() == (0,)
    finally:
        first.drop()
        second.drop()


# --- found by the adversarial review of the first fix ---------------------------------------------


def provision_within(w: World, seconds: float, **kwargs: object) -> dict[str, object]:
    """provision() in a thread; {'blocked': True} if it still waits after ``seconds``."""
    result: dict[str, object] = {}
    conn = w.admin()

    def run() -> None:
        try:
            result["report"] = provision(conn, lock_timeout_ms=1000, **kwargs)  # type: ignore[arg-type]
        except Exception as error:
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        conn.cancel()
        thread.join(10)
        result["blocked"] = True
    conn.close()
    return result


@pytest.mark.parametrize("case", ["own role setting", "stale role lock"])
def test_lock_and_storage_abuse_an_open_transaction_of_a_principal_never_blocks_provisioning(
    server: str, case: str
) -> None:
    """Every wait of provisioning is bounded, not only the wait for its own lock."""
    with small_world(server, "open_tx") as w:
        w11 = w.role("agency_w11")
        with psycopg.connect(w.db.login_conninfo(w11), autocommit=True) as attacker:
            prune = False
            if case == "own role setting":
                attacker.execute("ALTER ROLE CURRENT_USER SET work_mem = '1MB'")  # provision resets it
                attacker.execute("BEGIN")
                attacker.execute("ALTER ROLE CURRENT_USER SET work_mem = '2MB'")  # and holds the row
            else:
                attacker.execute("BEGIN")
                attacker.execute("SELECT lo_create(0)")  # holds a lock on its own role until it ends
                with w.admin() as conn:
                    conn.execute("DELETE FROM public.principal WHERE role_name = %s", (w11,))
                    conn.execute(
                        "INSERT INTO public.agency (id, code, name) VALUES (3, 'Z', 'Keeps ids apart')"
                    )
                    conn.execute(
                        "UPDATE public.agency SET code = 'W11X' WHERE id = 2"
                    )  # no default row for W11
                prune = True
            result = provision_within(w, 15, prune=prune)
            attacker.execute("ROLLBACK")
        assert "blocked" not in result, "provisioning waited without bound"
        assert isinstance(result.get("error"), ProvisionError), result
        assert "was not granted within 1000 ms" in str(result["error"])


def test_lock_and_storage_abuse_objects_in_another_database_stop_downgrade_with_the_remedy(
    server: str,
) -> None:
    """A LOGIN principal can make a large object in another database (and grant one to its group):
    only a session there can remove it. Downgrade says exactly what to run, then succeeds."""
    db = create_database(server, "elsewhere")
    elsewhere = create_database(server, "elsewhere_other")
    try:
        w = build_world(db, load_small_world)
        w.backend.close()
        w11, group = w.role("agency_w11"), w.role("rls_agency")
        other = make_conninfo(db.login_conninfo(w11), dbname=elsewhere.name)
        with psycopg.connect(other, autocommit=True) as conn:
            row = conn.execute("SELECT lo_create(0)").fetchone()
            assert row is not None
            conn.execute(
                sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO {}").format(
                    sql.Literal(row[0]), sql.Identifier(group)
                )
            )
        with w.admin() as conn:
            assert f"{w11} owns an object in database {elsewhere.name}" in provision(conn).owned_objects
        with pytest.raises(
            Exception,
            match=f"in database {elsewhere.name}: (GRANT [^;]* TO CURRENT_USER; )?DROP OWNED BY .*{w11}",
        ) as refused:
            migrations_runner.downgrade(db.url, "base")
        assert group in str(refused.value)
        with w.admin() as conn:  # nothing changed
            assert conn.execute("SELECT to_regclass('agency_rls.provision_lock')").fetchone() is not None
        # The remedy, run by this database's administrator in the other database, as the message says.
        remedy = re.search(
            rf"in database {re.escape(elsewhere.name)}: ((?:GRANT [^;]*; )?DROP OWNED BY [^;]*;)",
            str(refused.value),
        )
        assert remedy is not None
        with psycopg.connect(make_conninfo(db.conninfo, dbname=elsewhere.name), autocommit=True) as conn:
            conn.execute(remedy.group(1))  # type: ignore[arg-type]
        migrations_runner.downgrade(db.url, "base")
        assert db.leftover_roles() == []
    finally:
        elsewhere.drop()
        db.drop()


def test_principal_row_a_case_twin_loaded_with_triggers_off_is_refused_by_provisioning(server: str) -> None:
    with small_world(server, "twin") as w, w.admin() as conn:
        with triggers_off(w.db) as loader:
            loader.execute(
                "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)",
                (w.prefix + "Agency_S1",),
            )
        with pytest.raises(ProvisionError, match="not canonical"):
            provision(conn)


@pytest.mark.parametrize("name", ["agency\u200bx", "st\u0430ff", "staff\u00a0x", "staff-x"])
def test_principal_row_look_alike_and_invisible_characters_are_refused(server: str, name: str) -> None:
    with small_world(server, "lookalike") as w, w.admin() as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="not canonical"):
            conn.execute(
                "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)",
                (w.prefix + name,),
            )


def test_principal_row_reloaded_with_on_conflict_do_nothing_is_a_no_op(server: str) -> None:
    with small_world(server, "upsert") as w, w.admin() as conn:
        conn.execute(
            "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 2) ON CONFLICT DO NOTHING",
            (w.role("agency_w11"),),
        )
        assert visible(w, "agency_w11", "contract") == [1]


def test_lock_and_storage_abuse_temporary_objects_are_neither_reported_nor_dropped(server: str) -> None:
    with small_world(server, "temp") as w, w.login_as("agency_w11") as tool:
        tool.execute("CREATE TEMP TABLE scratch (x int)")
        tool.commit()
        with w.admin() as conn:
            assert provision(conn, prune=True).owned_objects == []
        assert tool.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


def test_lock_and_storage_abuse_group_memberships_carry_no_set_option_from_postgresql_16(server: str) -> None:
    """From 16 a principal inherits its group's privileges but cannot act as the group; provision
    also corrects a membership someone granted WITH SET TRUE."""
    with small_world(server, "set_option") as w, w.admin() as conn:
        if conn.info.server_version < 160000:
            pytest.skip("GRANT … WITH SET exists from PostgreSQL 16 (on 15 every member can SET ROLE)")
        w11, group = w.role("agency_w11"), w.role("rls_agency")
        options = "SELECT inherit_option, set_option FROM pg_auth_members WHERE member = %s::regrole AND roleid = %s::regrole"
        assert conn.execute(options, (w11, group)).fetchall() == [(True, False)]
        conn.execute(
            sql.SQL("GRANT {} TO {} WITH SET TRUE").format(sql.Identifier(group), sql.Identifier(w11))
        )
        assert conn.execute(options, (w11, group)).fetchall() == [(True, True)]
        assert w11 in provision(conn).roles_updated
        assert conn.execute(options, (w11, group)).fetchall() == [(True, False)]
        assert visible(w, "agency_w11", "contract") == [1]  # the group's policies still apply

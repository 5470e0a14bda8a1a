"""agency-rls provision: roles follow the principal table; foreign and privileged roles are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.rls_policies.names import principal_marker
from agency_rls.rls_policies.provision import ProvisionError, provision
from agency_rls.scripts.cli import app
from psycopg import sql
from typer.testing import CliRunner

from tests.catalog import snapshot
from tests.support import ScratchDatabase, triggers_off


@pytest.fixture
def small_db(fresh_db: ScratchDatabase) -> Iterator[ScratchDatabase]:
    """A migrated database with two agencies and two insurers, not yet provisioned."""
    fresh_db.migrate()
    with fresh_db.connect() as conn:
        conn.execute(
            """
            INSERT INTO public.insurer (id, code, name, line, kind) VALUES
                (1, 'NL', 'Non-life', 'non_life', 'operator'), (2, 'GW1', 'Gateway 1', 'life', 'gateway');
            INSERT INTO public.agency (id, code, name) VALUES (1, 'S1', 'Supervising'), (2, 'W11', 'Working');
            """
        )
    yield fresh_db
    fresh_db.downgrade_base()


def roles_of(conn: psycopg.Connection, prefix: str) -> dict[str, tuple[bool, str | None]]:
    rows = conn.execute(
        "SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles"
        " WHERE starts_with(rolname, %s)",
        (prefix,),
    ).fetchall()
    return {name: (login, marker) for name, login, marker in rows}


def test_creates_default_principals_and_is_idempotent(small_db: ScratchDatabase) -> None:
    p = small_db.prefix
    with small_db.connect() as conn:
        first = provision(conn)
        assert sorted(first.roles_created) == [
            p + "agency_s1",
            p + "agency_w11",
            p + "insurer_gw1",
            p + "insurer_nl",
        ]
        rows = conn.execute(
            "SELECT role_name, kind, agency_id, insurer_id FROM public.principal ORDER BY 1"
        ).fetchall()
        assert rows == [
            (p + "agency_s1", "agency", 1, None),
            (p + "agency_w11", "agency", 2, None),
            (p + "insurer_gw1", "insurer", None, 2),
            (p + "insurer_nl", "insurer", None, 1),
        ]
        roles = roles_of(conn, p)
        assert roles[p + "agency_s1"] == (False, principal_marker(small_db.name))  # NOLOGIN unless asked
        second = provision(conn)
        assert (second.roles_created, second.roles_updated, second.principal_rows_added) == ([], [], [])
        memberships = conn.execute(
            """
            SELECT g.rolname, m.rolname FROM pg_auth_members am
              JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
             WHERE starts_with(g.rolname, %s) ORDER BY 1, 2""",
            (p,),
        ).fetchall()
    dba = {(p + "rls_owner", small_db.dba), (p + "rls_loader", small_db.dba)} if small_db.dba else set()
    assert set(memberships) == dba | {  # a DBA without SUPERUSER joins the owner and loader to install
        (p + "rls_agency", p + "agency_s1"),
        (p + "rls_agency", p + "agency_w11"),
        (p + "rls_agency_writer", p + "agency_s1"),
        (p + "rls_agency_writer", p + "agency_w11"),
        (p + "rls_insurer", p + "insurer_gw1"),
        (p + "rls_insurer", p + "insurer_nl"),
        (p + "agency_s1", p + "rls_backend"),
        (p + "agency_w11", p + "rls_backend"),
        (p + "insurer_gw1", p + "rls_backend"),
        (p + "insurer_nl", p + "rls_backend"),
    }


def test_picks_up_rows_inserted_by_plain_sql_and_prunes(small_db: ScratchDatabase) -> None:
    p = small_db.prefix
    with small_db.connect() as conn:
        provision(conn)
        conn.execute("INSERT INTO public.agency (id, code, name) VALUES (3, 'M1', 'Multi')")
        conn.execute(
            "INSERT INTO public.principal (role_name, kind, agency_id, insurer_id) VALUES (%s, 'agency', 3, 1)",
            (p + "staff_nl_at_m1",),
        )
        report = provision(conn, login=True)
        assert sorted(report.roles_created) == [p + "agency_m1", p + "staff_nl_at_m1"]
        assert roles_of(conn, p)[p + "staff_nl_at_m1"] == (True, principal_marker(small_db.name))
        conn.execute("DELETE FROM public.principal WHERE role_name = %s", (p + "staff_nl_at_m1",))
        assert provision(conn).roles_dropped == []  # without --prune nothing is dropped
        assert p + "staff_nl_at_m1" in roles_of(conn, p)
        assert provision(conn, prune=True).roles_dropped == [p + "staff_nl_at_m1"]
        assert p + "staff_nl_at_m1" not in roles_of(conn, p)


@pytest.mark.parametrize(
    "role_name, refused_by_database, reason",
    [
        ("postgres", "already exists", "privileged or predefined"),
        ("pg_read_all_data", "not canonical", "reserved for predefined roles"),
        ("{prefix}rls_owner", "already exists", "management role"),
        ("{prefix}rls_backend", "already exists", "management role"),
        ("{prefix}rls_agency", "already exists", "management role"),
        ("{prefix}foreign", "already exists", "did not create"),
        ("{prefix}bypass", "already exists", "privileged or predefined"),
        ('{prefix}quo"te', "not canonical", "quotes"),
        ("{prefix}o'brien", "not canonical", "quotes"),
        ("{prefix}two words", "not canonical", "whitespace"),
    ],
)
def test_refuses_a_principal_row_naming_a_role_it_must_not_adopt(
    small_db: ScratchDatabase, role_name: str, refused_by_database: str, reason: str
) -> None:
    """Attack 39 / the spec's provisioning rules: the database refuses the row; provisioning refuses
    it too when a load with triggers off put it there. Clear error, nothing changed."""
    p = small_db.prefix
    name = role_name.format(prefix=p)
    with small_db.superuser_connect() as planter:  # roles someone else made (BYPASSRLS: a superuser)
        planter.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + "foreign")))
        planter.execute(sql.SQL("CREATE ROLE {} NOLOGIN BYPASSRLS").format(sql.Identifier(p + "bypass")))
        planter.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(p + "bypass"), sql.Literal(principal_marker(small_db.name))
            )
        )
    with small_db.connect() as conn:
        insert = "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)"
        with pytest.raises(psycopg.Error, match=refused_by_database):
            conn.execute(insert, (name,))
        with triggers_off(small_db) as loader:  # a load with triggers off
            loader.execute(insert, (name,))
        before = snapshot(conn, p)
        with pytest.raises(ProvisionError, match=reason):
            provision(conn)
        assert snapshot(conn, p) == before
        assert conn.execute("SELECT count(*) FROM public.principal").fetchone() == (1,)


def test_refuses_names_over_63_bytes(small_db: ScratchDatabase) -> None:
    """PostgreSQL would truncate with only a NOTICE; we refuse instead."""
    long_code = "x" * 70
    with small_db.connect() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', 1)",
                ("é" * 32,),
            )
        conn.execute("INSERT INTO public.agency (id, code, name) VALUES (9, %s, 'Long')", (long_code,))
        before = snapshot(conn, small_db.prefix)
        with pytest.raises(ProvisionError, match="bytes; PostgreSQL would truncate"):
            provision(conn)
        assert snapshot(conn, small_db.prefix) == before
        assert conn.execute("SELECT count(*) FROM public.principal").fetchone() == (0,)


def test_a_principal_mapping_never_changes_in_place(small_db: ScratchDatabase) -> None:
    with small_db.connect() as conn:
        provision(conn)
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="cannot be remapped"):
            conn.execute(
                "UPDATE public.principal SET agency_id = 1 WHERE role_name = %s",
                (small_db.role("agency_w11"),),
            )


def test_command_line_json_output(small_db: ScratchDatabase) -> None:
    result = CliRunner().invoke(app, ["provision", "--database-url", small_db.url, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["prefix"] == small_db.prefix
    assert report["principals"] == 4
    assert len(report["roles_created"]) == 4


def test_command_line_error_is_one_line_and_non_zero(fresh_db: ScratchDatabase) -> None:
    result = CliRunner().invoke(app, ["provision", "--database-url", fresh_db.url])
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == "agency-rls: this database is not migrated: run 'agency-rls migrate' first"
    )


def test_login_principals_come_with_the_residual_channel_warning(small_db: ScratchDatabase) -> None:
    """Issue 7, existence oracles: direct login lets a principal run EXPLAIN ANALYZE; provision says so."""
    result = CliRunner().invoke(
        app, ["provision", "--login", "--database-url", small_db.url, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert "What row level security cannot hide" in result.stderr
    assert json.loads(result.stdout)["roles_created"]
    quiet = CliRunner().invoke(app, ["provision", "--database-url", small_db.url])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_the_twin_check_looks_rows_up_on_an_index(small_db: ScratchDatabase) -> None:
    """Revision 0009: the insert trigger's case-insensitive twin check is an index lookup, not a scan of
    every principal row per inserted row (10,000 principals took 26 s, quadratic in their number)."""
    with small_db.connect() as conn:
        provision(conn)
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL enable_seqscan = off")  # what the planner picks on a large table
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    "EXPLAIN (COSTS OFF) SELECT FROM public.principal AS p"
                    " WHERE pg_catalog.lower(p.role_name) = 'x' AND p.role_name <> 'x'"
                )
            )
        assert "principal_role_name_lower_idx" in plan, plan

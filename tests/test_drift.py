"""``agency-rls drift``: a hand change to the live database is reported, naming the object; a database
as the migrations left it (at head, or at an older revision) is clean.

Each test gets its own migrated and provisioned sample world (changes are committed: drift reads them
from its own connection). The live database is read as its administrator: in ``AGENCY_RLS_TEST_AS=dba``
mode the NOSUPERUSER DBA. The hand changes are made as that administrator where it may make them, else
as the superuser (the function body belongs to the helper role, which nobody joins).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.migrations.drift import Difference, DriftReport, detect_drift
from agency_rls.scripts.cli import app
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from agency_rls.cluster.database import conninfo_url
from tests.support import WALKS_REVISIONS, ScratchDatabase, World, create_database, sample_world_on


@pytest.fixture
def live(server: str) -> Iterator[World]:
    """A migrated sample world with provisioned principals, changed freely by the test."""
    with sample_world_on(server, "drift") as world:
        yield world


def drift_of(db: ScratchDatabase, server: str) -> DriftReport:
    """Drift of ``db`` read as its administrator; the scratch database on the test server."""
    return detect_drift(db.url, scratch_url=conninfo_url(server))


def only(report: DriftReport) -> Difference:
    """The one difference of ``report`` (and the report names no other)."""
    assert [(d.group, d.object) for d in report.differences][:1] == [
        (d.group, d.object) for d in report.differences
    ], report.text()
    return report.differences[0]


def test_a_migrated_and_provisioned_database_has_no_drift(live: World, server: str) -> None:
    report = drift_of(live.db, server)
    assert report.differences == [], report.text()
    assert (report.revision, report.role_prefix) == (migrations_runner.head_revision(), live.prefix)
    assert report.text().splitlines()[-1] == "no drift"


def test_a_policy_changed_by_hand_is_reported(live: World, server: str) -> None:
    with live.admin() as conn:
        conn.execute("ALTER POLICY contract_read_handled ON public.contract USING (true)")
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object, difference.status) == (
        "policies",
        "policy contract_read_handled on public.contract",
        "changed",
    )
    diff = difference.unified(migrations_runner.head_revision())
    assert "+using: true" in diff
    assert next(line for line in diff if line.startswith("-using: ")).startswith("-using: (EXISTS ( SELECT")


def test_a_policy_added_by_hand_is_reported(live: World, server: str) -> None:
    with live.admin() as conn:
        conn.execute(
            f"CREATE POLICY open_door ON public.contract FOR SELECT TO {live.role('rls_agency')} USING (true)"
        )
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object, difference.status) == (
        "policies",
        "policy open_door on public.contract",
        "unexpected",
    )
    assert difference.actual is not None and "using: true" in difference.actual


def test_a_policy_dropped_by_hand_is_reported_missing(live: World, server: str) -> None:
    with live.admin() as conn:
        conn.execute("DROP POLICY contract_entrustment_guard ON public.contract")
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object, difference.status, difference.actual) == (
        "policies",
        "policy contract_entrustment_guard on public.contract",
        "missing",
        None,
    )
    assert difference.expected is not None and "as: RESTRICTIVE" in difference.expected


def test_without_a_scratch_url_a_throwaway_cluster_builds_the_definition(live: World) -> None:
    with live.admin() as conn:
        conn.execute(f"GRANT {live.role('rls_helper')} TO {live.role('rls_backend')}")
    report = detect_drift(live.db.url)
    assert [(d.group, d.object, d.actual) for d in report.differences] == [
        ("memberships", f"members of {live.role('rls_helper')}", (live.role("rls_backend"),))
    ], report.text()


def test_a_scope_function_replaced_by_hand_is_reported(live: World, server: str) -> None:
    with live.superuser() as conn:  # the helper owns it; nobody, the DBA included, is its member
        conn.execute(
            """CREATE OR REPLACE FUNCTION agency_rls.insurer_id() RETURNS bigint
                   LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
                   SET search_path = pg_catalog, pg_temp
               AS $$ BEGIN RETURN 1; END $$"""
        )
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object, difference.status) == (
        "functions",
        "function agency_rls.insurer_id()",
        "changed",
    )
    diff = difference.unified(migrations_runner.head_revision())
    assert "+     BEGIN RETURN 1; END" in diff
    assert any(line.startswith("-") and "acting_principal()" in line for line in diff)


def test_a_function_losing_its_pinned_search_path_is_reported(live: World, server: str) -> None:
    with live.superuser() as conn:
        conn.execute("ALTER FUNCTION agency_rls.insurer_id() RESET search_path")
    difference = only(drift_of(live.db, server))
    assert difference.object == "function agency_rls.insurer_id()"
    assert "+settings: (none)" in difference.unified("head")


@pytest.mark.parametrize(
    ("grant", "reported", "privileges"),
    [
        ("GRANT TRUNCATE ON public.contract TO {group}", "table public.contract", "SELECT, TRUNCATE"),
        ("GRANT SELECT ON agency_rls.provision_lock TO {group}", "table agency_rls.provision_lock", "SELECT"),
        (
            "GRANT SELECT (handler_agency_ids) ON public.customer TO {group}",
            "column public.customer.handler_agency_ids",
            "SELECT",
        ),
    ],
)
def test_a_grant_made_by_hand_is_reported(
    live: World, server: str, grant: str, reported: str, privileges: str
) -> None:
    group = live.role("rls_insurer")
    with live.admin() as conn:
        conn.execute(grant.format(group=group))
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object) == ("grants", reported)
    changed = [line for line in difference.unified("head")[2:] if line[:1] in "+-"]
    assert changed[-1] == f"+{group}: {privileges}", difference.unified("head")
    assert all(line.startswith("-") for line in changed[:-1])


def test_row_level_security_no_longer_forced_is_reported(live: World, server: str) -> None:
    with live.admin() as conn:
        conn.execute("ALTER TABLE public.contract NO FORCE ROW LEVEL SECURITY")
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object) == ("rls flags", "table public.contract")
    assert {"-forced: yes", "+forced: no"} <= set(difference.unified("head"))


@pytest.mark.needs_superuser("ALTER ROLE … BYPASSRLS")
def test_a_principal_given_bypassrls_is_reported(live: World, server: str) -> None:
    principal = live.role("agency_w11")
    with live.superuser() as conn:
        conn.execute(f"ALTER ROLE {principal} BYPASSRLS")
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object) == ("roles", f"principal {principal}")
    assert {"-bypassrls: no", "+bypassrls: yes"} <= set(difference.unified("head"))


def test_a_management_role_given_login_is_reported(live: World, server: str) -> None:
    owner = live.role("rls_owner")
    with live.admin() as conn:
        conn.execute(f"ALTER ROLE {owner} LOGIN")
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object) == ("roles", f"role {owner}")
    assert {"-login: no", "+login: yes"} <= set(difference.unified("head"))


def test_a_principal_made_a_loader_is_reported(live: World, server: str) -> None:
    principal, loader = live.role("agency_w11"), live.role("rls_loader")
    with live.admin() as conn:
        conn.execute(f"GRANT {loader} TO {principal}")
    difference = only(drift_of(live.db, server))
    assert (difference.group, difference.object, difference.status) == (
        "memberships",
        f"members of {loader}",
        "unexpected",
    )
    assert difference.actual == (principal,)


def test_a_host_applications_own_table_is_not_drift(live: World, server: str) -> None:
    with live.admin() as conn:
        conn.execute("CREATE TABLE public.host_invoice (id bigint PRIMARY KEY)")
        conn.execute("CREATE FUNCTION public.host_total() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    assert drift_of(live.db, server).differences == []


def test_a_dba_without_superuser_builds_the_scratch_database_on_the_same_server(server: str) -> None:
    """Managed PostgreSQL: the scratch database is a second database the DBA creates (at head, from the
    current definition), on the server of the live one."""
    with sample_world_on(server, "drift", dba=True) as world:
        with world.admin() as conn:
            conn.execute("ALTER TABLE public.customer NO FORCE ROW LEVEL SECURITY")
        report = detect_drift(
            world.db.url, scratch_url=conninfo_url(make_conninfo(world.db.conninfo, dbname="postgres"))
        )
        assert [(d.group, d.object) for d in report.differences] == [("rls flags", "table public.customer")]
    with psycopg.connect(server) as conn:  # the scratch database and its roles are gone
        assert conn.execute(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname ~ '^zd[0-9a-f]{8}_'),"
            " (SELECT count(*) FROM pg_database WHERE datname LIKE 'agency\\_rls\\_drift\\_scratch\\_%')"
        ).fetchone() == (0, 0)


@WALKS_REVISIONS
def test_a_database_at_an_older_revision_is_compared_with_that_revision(server: str) -> None:
    db = create_database(server, "drift_old")
    try:
        migrations_runner.upgrade(db.url, "0001", role_prefix=db.prefix)
        migrations_runner.upgrade(db.url, "0006", role_prefix=db.prefix)
        report = drift_of(db, server)
        assert (report.revision, report.differences) == ("0006", []), report.text()
        with db.connect() as conn:
            conn.execute("ALTER TABLE public.notice NO FORCE ROW LEVEL SECURITY")
        assert [(d.group, d.object) for d in drift_of(db, server).differences] == [
            ("rls flags", "table public.notice")
        ]
    finally:
        migrations_runner.downgrade(db.url, "base")
        db.drop()


# --- the command ------------------------------------------------------------------------------------


def run_drift(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["drift", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_command_exits_0_when_clean_and_1_with_a_diff_on_drift(live: World, server: str) -> None:
    scratch = ["--scratch-url", conninfo_url(server)]
    code, out, _ = run_drift("--database-url", live.db.url, *scratch)
    assert (code, out.splitlines()[-1]) == (0, "no drift")
    with live.admin() as conn:
        conn.execute("ALTER POLICY contract_read_handled ON public.contract USING (true)")
    code, out, _ = run_drift("--database-url", live.db.url, *scratch)
    assert code == 1
    assert "== policies (1) ==" in out
    assert "changed: policy contract_read_handled on public.contract" in out
    assert "+using: true" in out.splitlines()
    code, out, _ = run_drift("--database-url", live.db.url, *scratch, "--format", "json")
    assert code == 1
    found = json.loads(out)
    assert (found["drift"], found["revision"], found["role_prefix"]) == (
        True,
        migrations_runner.head_revision(),
        live.prefix,
    )
    assert [(d["group"], d["object"], d["status"]) for d in found["differences"]] == [
        ("policies", "policy contract_read_handled on public.contract", "changed")
    ]
    assert "+using: true" in found["differences"][0]["diff"]


def test_the_command_exits_3_when_it_cannot_compare(fresh_db: ScratchDatabase, server: str) -> None:
    code, out, err = run_drift("--database-url", fresh_db.url, "--scratch-url", conninfo_url(server))
    assert (code, out) == (3, "")
    assert err.startswith("agency-rls: drift: the database is not migrated")
    assert len(err.splitlines()) == 1


def test_the_command_exits_2_on_a_usage_error() -> None:
    code, _, _ = run_drift("--format", "xml")
    assert code == 2


def test_a_scratch_server_that_cannot_be_reached_exits_3(live: World) -> None:
    code, _, err = run_drift(
        "--database-url", live.db.url, "--scratch-url", "postgresql://nobody@/x?host=/nonexistent"
    )
    assert code == 3
    assert err.startswith("agency-rls: drift: cannot create the scratch database")


README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.needs_superuser("the README's example makes a principal BYPASSRLS")
def test_the_readme_example_is_what_drift_prints(live: World, server: str) -> None:
    """The README shows drift's output after six hand edits: it is what the command prints (names as the
    README spells them: prefix crm_, database crm)."""
    block = re.search(
        r"Example, after six hand edits.*?\n```\n(.*?)```\n", README.read_text(encoding="utf-8"), re.S
    )
    assert block is not None
    with live.superuser() as conn:
        for statement in (
            "ALTER POLICY contract_read_handled ON public.contract USING (true)",
            "GRANT TRUNCATE ON public.contract TO {p}rls_insurer",
            "ALTER TABLE public.contract NO FORCE ROW LEVEL SECURITY",
            "ALTER FUNCTION agency_rls.insurer_id() RESET search_path",
            "ALTER ROLE {p}agency_w11 BYPASSRLS",
            "GRANT {p}rls_loader TO {p}agency_w31",
        ):
            conn.execute(statement.format(p=live.prefix))
    printed = drift_of(live.db, server).text().replace(live.prefix, "crm_").replace(live.db.name, "crm")
    # PostgreSQL 17 added the MAINTAIN privilege; the README shows PostgreSQL 15's list.
    assert printed.replace(", MAINTAIN", "") == block.group(1)

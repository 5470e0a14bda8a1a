"""The pytest plugin, run as a user runs it, and ``assert_visible``'s messages.

Why subprocesses: the plugin is meant for *other* projects' test runs, found through the
``pytest11`` entry point of the installed package. Each run below writes test modules to a
temporary directory (no conftest, no ini file of this project), runs ``python -m pytest`` there
and reads what a user would read. ``AGENCY_RLS_DATABASE_URL`` points the run at this suite's own
server (``server`` fixture), so no second cluster starts; each run creates its own database and
must leave no database or role behind, which is checked against the server afterwards. With
``AGENCY_RLS_TEST_AS=dba`` the URL logs in as a NOSUPERUSER CREATEROLE CREATEDB login instead of
the superuser (``plugin_url``), so the plugin's database is created, migrated, loaded, provisioned
and removed by a DBA as on managed PostgreSQL.

The README's example (``<!-- pytest-plugin-example -->``) runs exactly as written, and, with the
one change the README describes, fails with the message the README shows.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agency_rls.checks.sample_world import EXPECTED
from agency_rls.cluster.database import conninfo_url
from agency_rls.pytest_plugin import VisibilityMismatch, assert_visible
from tests.support import DBA_MODE, LOGIN_PASSWORD, World

README = Path(__file__).resolve().parent.parent / "README.md"
RUN_TIMEOUT = 300


# -- running pytest as a user would ----------------------------------------------------------------


def readme_block(marker: str, language: str) -> str:
    """The fenced block right after ``<!-- marker -->``, exactly as written."""
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->\n```{language}\n(.*?)```", re.DOTALL)
    found = pattern.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, f"README.md must have exactly one block marked <!-- {marker} -->"
    return str(found[0])


def server_url(server: str) -> str:
    """A libpq URL of the test server's maintenance database (what a user passes as a URL)."""
    return conninfo_url(server)


@pytest.fixture(scope="module")
def plugin_url(server: str) -> Iterator[str]:
    """The URL the plugin's runs get: the server's superuser, or in DBA mode a new login that is
    NOSUPERUSER with CREATEROLE and CREATEDB (the database the plugin creates is then its own)."""
    if not DBA_MODE:
        yield server_url(server)
        return
    dba = f"t{secrets.token_hex(4)}_plugin_dba"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(dba), sql.Literal(LOGIN_PASSWORD)
            )
        )
    try:
        yield conninfo_url(make_conninfo(server, user=dba, password=LOGIN_PASSWORD))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            owned = conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = %s::regrole", (dba,)
            ).fetchall()
            for (name,) in owned:  # what a failed run left (the tests say so)
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(dba)))


def plugin_leftovers(server: str) -> tuple[list[str], list[str]]:
    """Databases and roles the plugin creates (``agency_rls_pytest_*``, ``pt<hex>_*``) now on the server."""
    with psycopg.connect(server, autocommit=True) as conn:
        databases = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'agency_rls_pytest_') ORDER BY 1"
        ).fetchall()
        roles = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname ~ '^pt[0-9a-f]{8}_' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in databases], [row[0] for row in roles]


def run_pytest(
    directory: Path, modules: dict[str, str], *, database_url: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Write ``modules`` into ``directory`` and run ``python -m pytest -q`` on it in a new process."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, code in modules.items():
        (directory / name).write_text(code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["AGENCY_RLS_DATABASE_URL"] = database_url
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        # the inner run's own temporary directories, away from (and never pruning) this run's
        f"--basetemp={directory.parent / (directory.name + '-basetemp')}",
        *extra,
        str(directory),
    ]
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """pytest's closing line (``3 passed in 2.31s`` without the time)."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"no output\n{result.stderr}"
    return re.sub(r" in [0-9.]+s.*$", "", lines[-1].strip("= "))


def report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


# -- the plugin is installed and light ----------------------------------------------------------------


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    registered = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert registered.get("agency_rls") == "agency_rls.pytest_plugin.plugin", (
        "the agency_rls pytest11 entry point is not installed: reinstall the package (pip install -e .)"
    )


def test_loading_the_plugin_imports_no_database_machinery() -> None:
    code = (
        "import sys, agency_rls.pytest_plugin.plugin, agency_rls.pytest_plugin\n"
        "heavy = ('psycopg', 'sqlalchemy', 'alembic', 'agency_rls.backend', 'agency_rls.rls_policies',"
        " 'agency_rls.scripts', 'agency_rls.cluster', 'agency_rls.checks')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in heavy or '.'.join(n.split('.')[:2]) in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


UNUSED_AND_USED = """
def test_that_uses_no_fixture_of_the_plugin():
    assert True


def test_that_needs_the_database(agency_rls_database):
    pass
"""


def test_a_run_connects_only_when_a_fixture_needs_the_database(tmp_path: Path) -> None:
    """A server that cannot be reached is no problem for tests that do not use the plugin."""
    result = run_pytest(
        tmp_path / "lazy",
        {"test_lazy.py": UNUSED_AND_USED},
        database_url="postgresql:///nowhere?host=/nonexistent-agency-rls-socket-dir",
    )
    assert summary(result) == "1 passed, 1 error", report(result)
    assert "agency-rls: the server given by AGENCY_RLS_DATABASE_URL cannot be used" in result.stdout, report(
        result
    )


# -- the README example, as written ----------------------------------------------------------------


def test_the_readme_example_passes_as_written(server: str, plugin_url: str, tmp_path: Path) -> None:
    example = readme_block("pytest-plugin-example", "python")
    tests = len(re.findall(r"^def test_", example, re.MULTILINE))
    promised = re.search(r"`pytest` reports `(\d+ passed)`", README.read_text(encoding="utf-8"))
    assert promised is not None and promised.group(1) == f"{tests} passed", (
        "the README must say what pytest reports"
    )
    before = plugin_leftovers(server)

    result = run_pytest(tmp_path / "readme", {"test_agency_scope.py": example}, database_url=plugin_url)

    assert result.returncode == 0, report(result)
    assert summary(result) == promised.group(1), report(result)
    assert plugin_leftovers(server) == before, "the plugin left a database or roles behind"


def test_the_readme_example_fails_with_the_readable_diff_when_it_expects_a_hidden_row(
    plugin_url: str, tmp_path: Path
) -> None:
    example = readme_block("pytest-plugin-example", "python")
    # The change the README describes: the working agency expects its supervisor's contract (hidden);
    # and the other direction, a leak: the supervisor expects not to see its working agency's contract.
    hidden = 'assert_visible(conn, "contract", {"NL-1003"})'
    leak = '        assert_visible(conn, "contract", {"NL-1001", "NL-1003"})\n'
    assert example.count(hidden) == 1 and example.count(leak) == 1, "the example changed shape"
    wrong = example.replace(leak, '        assert_visible(conn, "contract", {"NL-1001"})\n').replace(
        hidden, 'assert_visible(conn, "contract", {"NL-1001", "NL-1003"})'
    )

    result = run_pytest(tmp_path / "wrong", {"test_agency_scope.py": wrong}, database_url=plugin_url)

    assert result.returncode == 1, report(result)
    assert summary(result) == "2 failed, 1 passed", report(result)
    shown = readme_block("pytest-plugin-failure", "text")
    for line in shown.splitlines():
        assert line in result.stdout, f"README's failure line {line!r} not in the output\n{report(result)}"
    assert "contract (key policy_number) as agency_s1: unexpected: ['NL-1003']; missing: []" in result.stdout
    # The failure points at the test's own line, not into the helper.
    line = 1 + wrong.splitlines().index(
        '        assert_visible(conn, "contract", {"NL-1001", "NL-1003"})  # not the supervisor\'s NL-1001'
    )
    assert f"test_agency_scope.py:{line}: VisibilityMismatch" in result.stdout, report(result)


# -- every fixture, as a user's suite would use them -----------------------------------------------

FEATURES = '''
"""Every fixture of the plugin, in a user's suite."""

import re

import psycopg
import pytest
from sqlalchemy import text

from agency_rls.backend import NotAPrincipal, Principal, UnknownPrincipal
from agency_rls.backend.sqlalchemy import acting_as, create_engine
from agency_rls.pytest_plugin import VisibilityMismatch, assert_visible

WORLD = """
INSERT INTO insurer (id, code, name, line, kind)
VALUES (1, 'NL', 'Example Non-Life', 'non_life', 'operator'),
       (2, 'GW1', 'Gateway One', 'non_life', 'gateway');
INSERT INTO agency (id, code, name) VALUES (1, 'S1', 'Supervising'), (2, 'W11', 'Working');
INSERT INTO supervision (supervising_agency_id, working_agency_id) VALUES (1, 2);
INSERT INTO entrustment (agency_id, insurer_id) VALUES (1, 1), (1, 2), (2, 1);
INSERT INTO customer (id, full_name) VALUES (1, 'Sato Hanako'), (2, 'Ito Kenji'), (3, 'Kato Ren');
INSERT INTO contract (id, insurer_id, policy_number, policyholder_id, source)
VALUES (1, 1, 'NL-1001', 1, 'direct'), (2, 1, 'NL-1003', 2, 'direct'),
       (3, 2, 'GW1-2001', 3, 'gateway');
INSERT INTO contract_handler (contract_id, agency_id) VALUES (1, 1), (2, 2), (3, 1);
INSERT INTO principal (role_name, kind, agency_id, insurer_id)
VALUES (agency_rls.role_prefix() || 'staff_nl_at_s1', 'agency', 1, 1);
"""


@pytest.fixture(scope="module", autouse=True)
def world(agency_rls_load_sql):
    return agency_rls_load_sql(WORLD)


def test_provisioning_made_a_role_per_agency_insurer_and_principal_row(world, agency_rls_database):
    prefix = agency_rls_database.prefix
    assert sorted(name.removeprefix(prefix) for name in world.roles_created) == [
        "agency_s1",
        "agency_w11",
        "insurer_gw1",
        "insurer_nl",
        "staff_nl_at_s1",
    ]


def test_the_database_is_migrated_with_its_own_prefix(agency_rls_database):
    db = agency_rls_database
    assert re.fullmatch(r"pt[0-9a-f]{8}_", db.prefix)
    with psycopg.connect(db.url) as conn:
        assert conn.execute("SELECT agency_rls.role_prefix()").fetchone() == (db.prefix,)
    with psycopg.connect(db.backend_conninfo) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (db.prefix + "rls_backend",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the backend itself reads nothing
            conn.execute("SELECT count(*) FROM contract")


def test_agency_insurer_role_and_principal_object(agency_rls_connect_as, agency_rls_database):
    with agency_rls_connect_as(agency="S1") as conn:
        assert_visible(conn, "contract", {"NL-1001", "NL-1003", "GW1-2001"})
    with agency_rls_connect_as(insurer="NL") as conn:
        assert_visible(conn, "contract", {"NL-1001", "NL-1003"})  # never the gateway contract
    with agency_rls_connect_as(role=agency_rls_database.role("staff_nl_at_s1")) as conn:
        assert_visible(conn, "contract", {"NL-1001", "NL-1003"})  # restricted to NL
    with agency_rls_connect_as(Principal.insurer("GW1")) as conn:
        assert_visible(conn, "customer", {"Kato Ren"})


def test_blocks_nest_as_separate_connections(agency_rls_connect_as):
    with agency_rls_connect_as(agency="W11") as working, agency_rls_connect_as(agency="S1") as supervising:
        assert working is not supervising
        assert_visible(working, "contract", {"NL-1003"})
        assert_visible(supervising.cursor(), "contract", {"NL-1001", "NL-1003", "GW1-2001"})


def test_an_unknown_principal_fails_at_the_with_line_naming_the_ones_there_are(
    agency_rls_connect_as, agency_rls_session_as, agency_rls_database
):
    with pytest.raises(UnknownPrincipal) as raised:
        with agency_rls_connect_as(agency="NOPE"):
            pytest.fail("the block must not run")
    assert "agency_w11" in " ".join(raised.value.__notes__)
    with pytest.raises(UnknownPrincipal):
        with agency_rls_session_as(agency="NOPE"):
            pytest.fail("the block must not run")
    with pytest.raises(NotAPrincipal):  # reachable from the backend, but a group role, not a principal
        with agency_rls_connect_as(role=agency_rls_database.roles.agency_group):
            pytest.fail("the block must not run")


def test_every_block_is_rolled_back(agency_rls_connect_as):
    with agency_rls_connect_as(agency="W11") as conn:
        conn.execute("INSERT INTO customer (full_name, registered_by_agency_id) VALUES ('Prospect Mori', 2)")
        assert_visible(conn, "customer", {"Ito Kenji", "Prospect Mori"})
        with pytest.raises(psycopg.ProgrammingError):
            conn.commit()
    with agency_rls_connect_as(agency="W11") as conn:
        assert_visible(conn, "customer", {"Ito Kenji"})


def test_a_refused_write_raises_and_the_connection_stays_usable(agency_rls_connect_as):
    with agency_rls_connect_as(agency="W11") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM contract")
    with agency_rls_connect_as(agency="W11") as conn:
        assert_visible(conn, "contract", {"NL-1003"})


def test_session_state_left_by_a_block_does_not_reach_the_next(agency_rls_connect_as):
    with agency_rls_connect_as(agency="S1") as first:
        first.execute("PREPARE leftover AS SELECT policy_number FROM contract")  # outlives a rollback
    with agency_rls_connect_as(agency="W11") as conn:
        assert conn is first  # the same connection, reset at check-in
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            conn.execute("EXECUTE leftover")


def test_sessions_commit_inside_the_block_and_roll_back_at_its_end(agency_rls_session_as):
    with agency_rls_session_as(agency="W11") as session:
        session.execute(
            text("INSERT INTO customer (full_name, registered_by_agency_id) VALUES ('Prospect Mori', 2)")
        )
        session.commit()
        assert session.execute(text("SELECT current_user")).scalar().endswith("agency_w11")
        assert_visible(session, "customer", {"Ito Kenji", "Prospect Mori"})
        session.rollback()
        assert_visible(session.connection(), "customer", {"Ito Kenji", "Prospect Mori"})
    with agency_rls_session_as(agency="W11") as session:
        assert_visible(session, "customer", {"Ito Kenji"})


def test_queries_keys_and_tuples(agency_rls_connect_as):
    with agency_rls_connect_as(agency="S1") as conn:
        query = "SELECT policy_number, source FROM contract WHERE source = %s"
        assert_visible(conn, query, {("GW1-2001", "gateway")}, params=("gateway",))
        query = "SELECT id, policy_number FROM contract"
        assert_visible(conn, query, {"NL-1001", "NL-1003", "GW1-2001"}, key="policy_number")
        assert_visible(conn, "contract_handler", {1, 2, 3}, key="contract_id")
        expression = "policy_number || '@' || insurer_id"
        assert_visible(conn, "contract", {"NL-1001@1", "NL-1003@1", "GW1-2001@2"}, key=expression)
        with pytest.raises(VisibilityMismatch) as raised:
            assert_visible(conn, "contract", {"NL-1001"})
        assert raised.value.unexpected == {"NL-1003", "GW1-2001"} and raised.value.missing == frozenset()


def test_your_own_engine_on_the_backend_url(agency_rls_database):
    engine = create_engine(agency_rls_database.backend_url())
    try:
        with acting_as(engine, agency="W11") as connection:
            rows = connection.execute(text("SELECT policy_number FROM contract")).scalars().all()
            assert rows == ["NL-1003"]
    finally:
        engine.dispose()
'''

OTHER_WORLD = '''
"""A second module loads another world, from a file and by hand, in place of the first."""

import pytest

from agency_rls.backend import UnknownPrincipal
from agency_rls.pytest_plugin import assert_visible


@pytest.fixture(scope="module", autouse=True)
def world(agency_rls_load_sql, tmp_path_factory):
    path = tmp_path_factory.mktemp("sql") / "world.sql"
    path.write_text("""
        INSERT INTO insurer (code, name, line, kind) VALUES ('LF', 'Example Life', 'life', 'operator');
        INSERT INTO agency (code, name) VALUES ('A7', 'Agency seven');
        INSERT INTO entrustment (agency_id, insurer_id) VALUES (1, 1);
    """)
    agency_rls_load_sql(path)
    more = "INSERT INTO contract (insurer_id, policy_number) VALUES (1, 'LF-1')"
    agency_rls_load_sql(more, reset=False)  # keeps the rows already there


def test_the_previous_world_and_its_roles_are_gone(agency_rls_connect_as, agency_rls_database):
    with pytest.raises(UnknownPrincipal):
        with agency_rls_connect_as(agency="W11"):
            pass
    with agency_rls_database.connect() as conn:
        assert conn.execute("SELECT id FROM agency").fetchall() == [(1,)]  # identities restarted


def test_rows_written_by_hand_then_provisioned(
    agency_rls_database, agency_rls_provision, agency_rls_connect_as
):
    with agency_rls_database.connect() as conn:
        conn.execute("INSERT INTO agency (code, name) VALUES ('A8', 'Agency eight')")
        conn.execute("INSERT INTO contract_handler (contract_id, agency_id) VALUES (1, 1), (1, 2)")
    report = agency_rls_provision()
    assert report.roles_created == [agency_rls_database.role("agency_a8")]
    with agency_rls_connect_as(agency="A8") as conn:
        assert_visible(conn, "contract", set())  # handles LF-1, but LF does not entrust it
    with agency_rls_connect_as(agency="A7") as conn:
        assert_visible(conn, "contract", {"LF-1"})
'''


SCENARIO = '''
"""A third module loads a scenario file shipped with agency-rls, in place of the rows before."""

import pytest

from agency_rls.pytest_plugin import assert_visible
from agency_rls.checks.check import ScenarioError

SCENARIO = "<path of the scenario>"


@pytest.fixture(scope="module")
def loaded(agency_rls_load_scenario):
    return agency_rls_load_scenario(SCENARIO)


def test_a_shipped_scenario(loaded, agency_rls_connect_as):
    with agency_rls_connect_as(agency="W11") as conn:
        assert_visible(conn, "contract", {"NL-1003", "NL-1004", "GW1-2002"})
    gw1 = {loaded.id("contract", "GW1/GW1-2001"), loaded.id("contract", "GW1/GW1-2002")}
    with agency_rls_connect_as(role=loaded.role("insurer_gw1")) as conn:
        assert_visible(conn, "contract", gw1, key="id")


def test_a_malformed_file_is_refused_before_the_rows_change(
    loaded, tmp_path, agency_rls_load_scenario, agency_rls_connect_as
):
    bad = tmp_path / "bad.yaml"
    bad.write_text("insurer:\\n  - {code: NL, nmae: x, line: life, kind: operator}\\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml:2: unknown key 'nmae'"):
        agency_rls_load_scenario(bad)
    with agency_rls_connect_as(agency="S1") as conn:
        assert_visible(conn, "agency", {"S1", "W11"})
'''

SHIPPED_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "incident_supervisor_contracts.yaml"


def test_every_fixture_in_a_users_suite(server: str, plugin_url: str, tmp_path: Path) -> None:
    before = plugin_leftovers(server)
    modules = {
        "test_a_features.py": FEATURES,
        "test_b_other_world.py": OTHER_WORLD,
        "test_c_scenario.py": SCENARIO.replace('"<path of the scenario>"', repr(str(SHIPPED_SCENARIO))),
    }
    expected = sum(len(re.findall(r"^def test_", code, re.MULTILINE)) for code in modules.values())
    result = run_pytest(tmp_path / "features", modules, database_url=plugin_url)
    assert summary(result) == f"{expected} passed", report(result)
    assert plugin_leftovers(server) == before, "the plugin left a database or roles behind"


# -- assert_visible's messages, on the sample world ------------------------------------------------


def test_a_matching_set_passes_quietly(world: World) -> None:
    with world.acting_as("agency_w11") as cur:
        assert_visible(cur, "contract", EXPECTED["agency_w11"]["contract"])
        assert_visible(cur.connection, "contract", list(EXPECTED["agency_w11"]["contract"]))


def test_the_message_names_the_principal_the_table_and_both_differences(world: World) -> None:
    with world.acting_as("agency_w11") as cur, pytest.raises(VisibilityMismatch) as raised:
        assert_visible(cur, "contract", {"NL-1001", "NL-1003"})
    assert str(raised.value) == (
        "contract (key policy_number) as agency_w11: unexpected: ['NL-1004']; missing: ['NL-1001']\n"
        "  visible (2): ['NL-1003', 'NL-1004']\n"
        "  expected (2): ['NL-1001', 'NL-1003']"
    )
    assert isinstance(raised.value, AssertionError)
    assert raised.value.unexpected == {"NL-1004"} and raised.value.missing == {"NL-1001"}
    assert raised.value.who == "agency_w11"


def test_a_query_is_named_by_its_text_and_a_tuple_key_shows_as_tuples(world: World) -> None:
    query = "SELECT code, name FROM agency ORDER BY code"
    with world.acting_as("agency_w11") as cur, pytest.raises(VisibilityMismatch) as raised:
        assert_visible(cur, query, set())
    first = str(raised.value).splitlines()[0]
    assert first.startswith(f"[{query}] as agency_w11: unexpected: [('S1', "), first
    assert first.endswith("; missing: []")


def test_a_long_query_is_shortened_and_the_key_column_named(world: World) -> None:
    query = "SELECT id, policy_number, insurer_id, premium, starts_on, expires_on, source FROM contract WHERE true"
    with world.acting_as("agency_w12") as cur, pytest.raises(VisibilityMismatch) as raised:
        assert_visible(cur, query, {"NL-1004"}, key="policy_number")
    first = str(raised.value).splitlines()[0]
    assert first.startswith(
        "[SELECT id, policy_number, insurer_id, premium, starts_on, expires_on,…] (key policy_number) as agency_w12"
    )
    assert first.endswith("unexpected: ['LF-3002', 'NL-1005']; missing: []")


def test_keys_that_differ_only_in_type_are_pointed_out(world: World) -> None:
    with world.acting_as("agency_w11") as cur:
        ids = [row[0] for row in cur.execute("SELECT id FROM contract").fetchall()]
        with pytest.raises(VisibilityMismatch) as raised:
            assert_visible(cur, "contract", {str(i) for i in ids}, key="id")
    assert str(raised.value).splitlines()[-1] == (
        "  the keys differ only in type: the query gives int, the expected keys are str"
    )


def test_a_principal_that_sees_nothing_is_compared_too(world: World) -> None:
    with world.acting_as("agency_e1") as cur:
        assert_visible(cur, "contract", set())
        with pytest.raises(VisibilityMismatch, match=r"unexpected: \[\]; missing: \['NL-1401'\]"):
            assert_visible(cur, "contract", {"NL-1401"})


def test_mistakes_in_the_call_are_type_errors_not_failures(world: World) -> None:
    with world.acting_as("agency_w11") as cur:
        with pytest.raises(TypeError, match="collection of keys"):
            assert_visible(cur, "contract", "NL-1003")
        with pytest.raises(TypeError, match="psycopg connection or cursor"):
            assert_visible(object(), "contract", set())
        with pytest.raises(ValueError, match="no result column 'nope'"):
            assert_visible(cur, "SELECT policy_number FROM contract", set(), key="nope")

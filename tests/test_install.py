"""The built wheel, installed in a fresh venv beside a project with its own schema, scripts and migrations.

Slow (a wheel build, a venv, a demo cluster: half a minute to a minute on 2 vCPUs), marked
``slow``: it runs in CI with the rest (``pytest``); ``pytest -m "not slow"`` leaves it out locally.

Issue 8, "One installed namespace": the wheel holds the single package ``agency_rls`` and everything
the commands need (the Alembic environment and the SQL each revision recorded, the policy SQL, the
shipped scenarios). Installed, it must work from a user's project whose own ``schema.py`` (the name
of a PyPI package too), ``scripts/`` and ``migrations/`` (with an ``env.py`` and an ``alembic.ini``
of its own) are importable first (``PYTHONPATH``, the working directory), as in an editable install.

One venv serves the whole module. It gets the wheel alone (``--no-deps``); its dependencies come
from this environment, whose site-packages the venv sees through symlinks to every entry but this
checkout's editable install of agency-rls (its ``.pth`` finder and dist-info would shadow the wheel).
``test_the_venv_imports_the_wheel_and_the_projects_own_modules`` proves it. The demo starts its own
throwaway cluster in the background as soon as the venv is ready; the other commands use the
suite's server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agency_rls.cluster.database import conninfo_url
from tests.test_check import leftovers as check_leftovers
from tests.test_pytest_plugin import README, plugin_leftovers, readme_block, report, summary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
#: What the wheel must carry besides Python modules, per package folder of the repository.
DATA_FILES = {
    "migrations": ["env.py", "script.py.mako", "versions/*.py", "versions/*.sql"],
    "rls_policies": ["sql/*.sql"],
    "scenarios": ["*.yaml"],
}
#: Not copied into the source tree the wheel is built from (caches, build output, the checkout's git).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".benchmarks"
)

USER_PROJECT = {
    "schema.py": '''
        """The project's own schema module (PyPI's ``schema`` package has this name too)."""


        class Schema:
            def __init__(self, spec):
                self.spec = spec

            def validate(self, data):
                return data
        ''',
    "scripts/__init__.py": '"""The project\'s own scripts package."""\n\nOWNER = "user project"\n',
    "migrations/__init__.py": '"""The project\'s own (Flask-Migrate style) migrations."""\n\nOWNER = "user project"\n',
    "migrations/env.py": 'raise RuntimeError("the user project\'s own migrations/env.py was run")\n',
    "alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
    "tests/test_own_modules.py": '''
        """The project's modules are its own while the agency-rls plugin is loaded."""

        import migrations
        import scripts
        from schema import Schema


        def test_the_projects_modules_are_its_own():
            assert Schema({"a": int}).validate({"a": 1}) == {"a": 1}
            assert scripts.OWNER == migrations.OWNER == "user project"
        ''',
}


@dataclass
class Installed:
    """The venv with the wheel, the user project beside it, and how to run things there."""

    venv: Path
    project: Path
    env: dict[str, str]
    demo: subprocess.Popen[bytes]
    demo_output: Path  # its stdout, then its stderr (.err)

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (``agency-rls`` means the venv's console script) in the user project."""
        program = str(self.venv / "bin" / "agency-rls") if argv[0] == "agency-rls" else argv[0]
        return subprocess.run(
            [program, *argv[1:]],
            cwd=self.project,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )


def completed(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args}\nexit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from a copy of this checkout (the checkout gets no build/ folder)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    result = subprocess.run(
        [*PIP, "wheel", "--no-deps", "-w", str(work / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, completed(result)
    (built,) = (work / "dist").glob("agency_rls-*.whl")
    return built


def outer_site_packages() -> list[Path]:
    """This environment's site-packages folders (where the wheel's dependencies already are)."""
    return [
        Path(entry)
        for entry in sys.path
        if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()
    ]


def is_this_checkouts_install(entry: Path) -> bool:
    """agency-rls's own files in a site-packages folder: its dist-info, editable finder and .pth files."""
    name = entry.name.lower().replace("-", "_")
    if name.startswith(("agency_rls", "__editable__.agency_rls", "__editable___agency_rls")):
        return True
    if entry.suffix in (".pth", ".egg-link") and entry.is_file():
        return str(ROOT) in entry.read_text(encoding="utf-8", errors="replace")
    return False


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """A new venv with the wheel (no deps), this environment's other packages, and a user project."""
    work = tmp_path_factory.mktemp("install")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, completed(result)

    # The dependencies: this environment's site-packages without this checkout's editable install.
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    overlays = []
    for number, folder in enumerate(outer_site_packages()):
        overlay = work / f"outer-site-packages-{number}"
        overlay.mkdir()
        for entry in folder.iterdir():
            if not is_this_checkouts_install(entry):
                (overlay / entry.name).symlink_to(entry)
        overlays.append(str(overlay))
    Path(purelib, "outer_environment.pth").write_text("\n".join(overlays) + "\n", encoding="utf-8")

    project = work / "user-project"
    for name, text in USER_PROJECT.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "PG"))
        and key not in ("DATABASE_URL", "AGENCY_RLS_DATABASE_URL", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PYTHONPATH=str(project),  # the project's own modules first, as in its editable install
    )
    # The demo starts a throwaway cluster of its own: it runs while the other tests do.
    output = work / "demo.out"
    with output.open("wb") as stdout, output.with_suffix(".err").open("wb") as stderr:
        demo = subprocess.Popen(
            [str(venv / "bin" / "agency-rls"), "demo", "--format", "json"],
            cwd=project,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield Installed(venv=venv, project=project, env=env, demo=demo, demo_output=output)
    finally:
        demo.wait(timeout=TIMEOUT)  # never killed: it stops its own cluster on the way out


def test_the_wheel_holds_one_namespace_and_the_files_the_commands_read(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    (dist_info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
    assert {name.split("/")[0] for name in names} == {"agency_rls", dist_info}
    record = zipfile.ZipFile(wheel).read(f"{dist_info}/RECORD").decode()
    assert {line.split("/")[0] for line in record.splitlines() if line} == {"agency_rls", dist_info}
    assert zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split() == ["agency_rls"]
    for folder, patterns in DATA_FILES.items():
        for pattern in patterns:
            wanted = sorted(
                path.relative_to(ROOT / folder).as_posix() for path in (ROOT / folder).glob(pattern)
            )
            assert wanted, f"{folder}/{pattern} matches nothing in the checkout"
            missing = [name for name in wanted if f"agency_rls/{folder}/{name}" not in names]
            assert missing == [], f"the wheel lacks {folder}/{pattern}: {missing}"


def test_the_venv_imports_the_wheel_and_the_projects_own_modules(installed: Installed) -> None:
    code = textwrap.dedent(
        """
        import json, importlib.metadata as metadata
        import agency_rls, agency_rls.schema, agency_rls.migrations, agency_rls.scripts.cli
        import schema, scripts, migrations
        print(json.dumps({
            "agency_rls": [agency_rls.__file__, agency_rls.schema.__file__, agency_rls.migrations.__file__],
            "distributions": [str(d.locate_file("")) for d in metadata.distributions() if d.metadata["Name"] == "agency-rls"],
            "own": [schema.__file__, scripts.__file__, migrations.__file__],
            "schema_class": hasattr(schema, "Schema"),
        }))
        """
    )
    result = installed.run(installed.python, "-c", code)
    assert result.returncode == 0, completed(result)
    found = json.loads(result.stdout)
    site_packages = installed.venv / "lib"
    assert all(Path(f).is_relative_to(site_packages) for f in found["agency_rls"]), found
    assert [Path(d).is_relative_to(site_packages) for d in found["distributions"]] == [True], found
    assert [Path(f).relative_to(installed.project).as_posix() for f in found["own"]] == [
        "schema.py",
        "scripts/__init__.py",
        "migrations/__init__.py",
    ]
    assert found["schema_class"]


def test_version(installed: Installed) -> None:
    result = installed.run("agency-rls", "--version")
    assert result.returncode == 0, completed(result)
    assert re.fullmatch(r"agency-rls \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_alembic_history_reads_the_packages_migrations_not_the_projects(installed: Installed) -> None:
    result = installed.run("agency-rls", "alembic", "history")
    assert result.returncode == 0, completed(result)
    assert "(head)" in result.stdout and "<base> -> 0001" in result.stdout, completed(result)


def test_check_builtin_passes_every_shipped_scenario(installed: Installed, server: str) -> None:
    url = conninfo_url(server)
    result = installed.run("agency-rls", "check", "--builtin", "--database-url", url, "--format", "json")
    assert result.returncode == 0, completed(result)
    report_ = json.loads(result.stdout)
    assert [Path(r["file"]).name for r in report_] == sorted(
        p.name for p in (ROOT / "scenarios").glob("*.yaml")
    )
    assert all(Path(r["file"]).is_relative_to(installed.venv) for r in report_)
    assert all(r["status"] == "pass" for r in report_), report_
    assert check_leftovers(server, report_) == []


def test_the_pytest_plugin_readme_example_runs_in_the_project(installed: Installed, server: str) -> None:
    example = readme_block("pytest-plugin-example", "python")
    promised = re.search(r"`pytest` reports `(\d+) passed`", README.read_text(encoding="utf-8"))
    assert promised is not None
    security = installed.project / "tests" / "security"
    security.mkdir(parents=True, exist_ok=True)
    (security / "test_agency_scope.py").write_text(example, encoding="utf-8")
    before = plugin_leftovers(server)

    result = installed.run(
        installed.python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={installed.project.parent / 'pytest-basetemp'}",
        "tests",
        AGENCY_RLS_DATABASE_URL=conninfo_url(server),  # the suite's server: no second cluster
    )

    assert result.returncode == 0, report(result)
    assert summary(result) == f"{int(promised.group(1)) + 1} passed", report(result)  # + the project's own
    assert plugin_leftovers(server) == before, "the plugin left a database or roles behind"


def test_demo_on_its_own_throwaway_cluster(installed: Installed) -> None:
    status = installed.demo.wait(timeout=TIMEOUT)
    stdout = installed.demo_output.read_text(encoding="utf-8")
    stderr = installed.demo_output.with_suffix(".err").read_text(encoding="utf-8")
    assert status == 0, f"exit {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    assert json.loads(stdout)["ok"] is True

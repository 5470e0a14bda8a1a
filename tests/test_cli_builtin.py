"""``agency-rls check --builtin`` (the scenario files the package ships) and ``agency-rls --version``.

That every shipped scenario passes is tests/test_check.py's (from the repository's folder) and
tests/test_install.py's (``check --builtin`` from an installed wheel); here, that ``--builtin``
hands the shipped files to the check, after the files given, and what happens with neither.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from agency_rls.scenarios import builtin_scenarios
from agency_rls.scripts.cli import app
from typer.testing import CliRunner

import agency_rls
import agency_rls.checks.check

REPOSITORY_SCENARIOS = sorted((Path(__file__).parents[1] / "scenarios").glob("*.yaml"))


def test_builtin_scenarios_are_the_shipped_files() -> None:
    assert len(REPOSITORY_SCENARIOS) >= 8
    assert [p.name for p in builtin_scenarios()] == [p.name for p in REPOSITORY_SCENARIOS]
    assert all(p.is_file() for p in builtin_scenarios())


@pytest.mark.parametrize(
    ("args", "given"),
    [(["--builtin"], []), (["mine.yaml", "--builtin", "theirs.yaml"], ["mine.yaml", "theirs.yaml"])],
)
def test_builtin_adds_the_shipped_files_after_the_given_ones(
    args: list[str], given: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], str | None, dict[str, Any]]] = []

    def run_check(files: list[str], url: str | None, **options: Any) -> int:
        calls.append((list(files), url, options))
        return 0

    monkeypatch.setattr(agency_rls.checks.check, "run_check", run_check)
    result = CliRunner().invoke(app, ["check", *args, "--database-url", "postgresql://dba@db/x"])
    assert result.exit_code == 0, result.output
    assert calls == [
        (
            [*given, *(str(p) for p in builtin_scenarios())],
            "postgresql://dba@db/x",
            {"keep": False, "as_json": False, "junit": None},
        )
    ]


def test_check_without_files_or_builtin_exits_2_saying_so() -> None:
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 2
    assert result.stderr == "agency-rls: check: give scenario FILEs, or --builtin for the shipped ones\n"


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"agency-rls {agency_rls.__version__}\n"
    assert agency_rls.__version__ == version("agency-rls")

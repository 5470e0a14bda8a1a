"""The shipped scenario files (``agency-rls check --builtin``): the incident and its edges."""

from pathlib import Path

#: The folder of the shipped scenario files, wherever the package is installed.
SCENARIO_DIR = Path(__file__).parent


def builtin_scenarios() -> list[Path]:
    """Every shipped scenario file, sorted by name."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))

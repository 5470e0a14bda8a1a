"""The README's backend examples run exactly as written against the sample world.

Each example is the ``python`` block right after its marker comment (``<!-- backend-example -->``,
``<!-- backend-example-sqlalchemy -->``). The test gives it the one name it leaves to the reader
(``conninfo`` / ``url``: the backend login role of the test world), runs it unchanged, and checks
that what it prints is what its comments say, and that the handler returns each agency's scope.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL

from agency_rls.checks.sample_world import AGENCY_IDS, EXPECTED

README = Path(__file__).resolve().parent.parent / "README.md"


def example(marker: str) -> str:
    """The code of the fenced python block that directly follows ``<!-- marker -->``."""
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->\n```python\n(.*?)\n```", re.DOTALL)
    found = pattern.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, f"README.md must have exactly one block marked <!-- {marker} -->"
    return str(found[0])


def promised_output(code: str) -> list[Any]:
    """What the example's comments say it prints: a ``# [...]`` comment on or after each print()."""
    return [ast.literal_eval(value) for value in re.findall(r"#\s*(\[.*\])\s*$", code, re.MULTILINE)]


def run(code: str, names: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    namespace: dict[str, Any] = {"__name__": "readme_example", **names}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), namespace)
    return namespace, [ast.literal_eval(line) for line in printed.getvalue().splitlines()]


def test_the_psycopg_example_runs_as_written(backend_conninfo: str) -> None:
    code = example("backend-example")
    namespace, printed = run(code, {"conninfo": backend_conninfo})
    try:
        assert printed == promised_output(code) and printed, "the example must print what its comment says"
        for code_name in AGENCY_IDS:
            expected = sorted(EXPECTED[f"agency_{code_name.lower()}"]["contract"])
            assert namespace["contract_list"](code_name) == expected
    finally:
        namespace["pool"].close()


def test_the_sqlalchemy_example_runs_as_written(backend_conninfo: str) -> None:
    params = conninfo_to_dict(backend_conninfo)
    url = URL.create(
        "postgresql+psycopg",
        username=str(params["user"]),
        password=str(params["password"]),
        database=str(params["dbname"]),
        query={key: str(params[key]) for key in ("host", "port") if params.get(key)},
    )
    code = example("backend-example-sqlalchemy")
    namespace, printed = run(code, {"url": url})
    try:
        assert printed == promised_output(code) and printed, "the example must print what its comment says"
        assert printed == [sorted(EXPECTED["agency_w12"]["contract"])]
    finally:
        namespace["engine"].dispose()

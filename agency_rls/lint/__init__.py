"""``agency-rls lint``: read a live database's catalogs and report what would let rows leak.

- ``finding``: the one result shape (rule, level, object, message, remedy);
- ``rules/``: one module per rule, each a query and a doc with a bad and a good example;
- ``registry``: finds the rules; ``runner``: runs them read-only;
- ``waivers``: dated acceptances of single findings; ``output``: text, JSON and SARIF 2.1.0.
"""

from agency_rls.lint.finding import Finding, Level
from agency_rls.lint.registry import all_rules
from agency_rls.lint.runner import LintError, LintReport, lint_connection, run_lint
from agency_rls.lint.waivers import Waiver, WaiverError, apply_waivers, load_waivers

__all__ = [
    "Finding",
    "Level",
    "LintError",
    "LintReport",
    "Waiver",
    "WaiverError",
    "all_rules",
    "apply_waivers",
    "lint_connection",
    "load_waivers",
    "run_lint",
]

"""Find the rules: every module in ``agency_rls.lint.rules`` is one rule, so adding a rule is adding a file."""

from __future__ import annotations

import importlib
import pkgutil

from agency_rls.lint import rules as rules_package
from agency_rls.lint.rule import Rule


def all_rules() -> list[Rule]:
    """Every rule, ordered by id; duplicate ids are a programming error."""
    found: dict[str, Rule] = {}
    for info in pkgutil.iter_modules(rules_package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{rules_package.__name__}.{info.name}")
        rule = Rule.from_module(module)
        if rule.id in found:
            raise ValueError(f"two lint rules share the id {rule.id!r}")
        found[rule.id] = rule
    return [found[key] for key in sorted(found)]


def rule_ids() -> set[str]:
    """The ids of every rule (waiver files are checked against them)."""
    return {rule.id for rule in all_rules()}

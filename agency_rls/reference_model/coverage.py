"""Which rules (and which clause of each rule) the generated worlds actually exercised.

Why clause-level and not just "the rule said yes / no": a fuzzer that never builds a world where a
working agency is entrusted, not a handler, and under a supervisor that handles the contract, never
tests incident 1, however many rows it sees. So every rule is a boolean formula over named clauses
(``entrusted``, ``handles``, ``supervised_handles`` ...), and a case (one principal, one row) counts
for a clause only when that clause *decided* the outcome: flipping it alone would flip the row's
visibility (the unique-cause idea of MC/DC). A clause is exercised **positively** when it shows a
row that would otherwise be hidden, and **negatively** when it hides a row that would otherwise be
shown. A rule with a single clause counts every case.

The same notion explains one row: ``decisive`` names the clauses that decided it, and every rule
passes the row it judges (``about``) so that ``agency_rls.reference_model.explain`` can tell a reader *why* a
row is shown or hidden ("agency.contract/entrusted").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Formula = Callable[[Mapping[str, bool]], bool]


def decisive(formula: Formula, clauses: Mapping[str, bool], outcome: bool) -> tuple[str, ...]:
    """The clauses whose value alone decided ``outcome``: flipping any one of them flips the formula."""
    found = []
    for name, value in clauses.items():
        flipped = dict(clauses)
        flipped[name] = not value
        if formula(flipped) != outcome:
            found.append(name)
    return tuple(found)


@dataclass
class Tally:
    """Counters aggregated over any number of worlds and principals."""

    positive: Counter[str] = field(default_factory=Counter)
    negative: Counter[str] = field(default_factory=Counter)
    #: every (rule.clause) ever evaluated, so that never-decisive clauses show up with zeros.
    known: set[str] = field(default_factory=set)

    def judge(
        self, rule: str, formula: Formula, clauses: Mapping[str, bool], *, about: object = None
    ) -> bool:
        """Evaluate ``formula`` on ``clauses`` and credit each clause that decided the outcome.

        ``about`` is the row being judged; counting ignores it (see ``explain.Explainer``).
        """
        outcome = formula(clauses)
        self.known.update(f"{rule}.{name}" for name in clauses)
        for name in decisive(formula, clauses, outcome):
            (self.positive if outcome else self.negative)[f"{rule}.{name}"] += 1
        return outcome

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to this tally."""
        self.positive.update(other.positive)
        self.negative.update(other.negative)
        self.known |= other.known

    def unexercised(self, *, always_true: frozenset[str] = frozenset()) -> list[str]:
        """Clauses lacking a positive or a negative decisive case (``always_true`` need no negative)."""
        missing = []
        for key in sorted(self.known):
            if self.positive[key] == 0:
                missing.append(f"{key}: never decided to show a row")
            if self.negative[key] == 0 and key not in always_true:
                missing.append(f"{key}: never decided to hide a row")
        return missing

    def report(self) -> str:
        """A table of clause, positive and negative counts, for logs and the test report."""
        width = max((len(k) for k in self.known), default=10)
        lines = [f"{'rule.clause':<{width}}  {'shown':>8}  {'hidden':>8}"]
        for key in sorted(self.known):
            lines.append(f"{key:<{width}}  {self.positive[key]:>8}  {self.negative[key]:>8}")
        return "\n".join(lines)


class NullTally(Tally):
    """A tally that only evaluates (for callers that do not collect coverage)."""

    def judge(
        self, rule: str, formula: Formula, clauses: Mapping[str, bool], *, about: object = None
    ) -> bool:
        return formula(clauses)

"""Why the reference model shows or hides a row: the rule, and the clauses that decided it.

A diff line "agency_w11 sees contract GW1/GW1-2001: not expected" answers only half the question; a
reviewer's next one is *which sentence of the spec* hides that row. ``explain_view`` runs
``model.visible_rows`` with an ``Explainer`` tally, which keeps every rule's judgement of every row
(the rule functions pass the row as ``about``), and ``ExplainedView.why`` renders it as
``agency.contract/entrusted``: the rule, then the clause(s) whose value alone decided the outcome
(``coverage.decisive``). All rule formulas are monotone (and/or of clauses), so a row that is
hidden is hidden by false clauses and a row that is shown is shown by true ones; the outcome
("reference model: hidden") gives the polarity.

A restricted principal's rules wrap the agency rules (clause ``agency_rule``); the explanation
follows into the wrapped rule: ``restricted.contract/agency_rule > agency.contract/entrusted``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from agency_rls.reference_model.coverage import Formula, NullTally, decisive
from agency_rls.reference_model.model import Visible, visible_rows
from agency_rls.reference_model.world import World

RowId = tuple[str, int | str]
"""(table, key) of a row; key is ``id``, or ``role_name`` for ``principal``."""


@dataclass(frozen=True)
class Judgement:
    """One rule applied to one row: the clause values, the outcome, the clauses that decided it."""

    rule: str
    clauses: Mapping[str, bool]
    outcome: bool
    decisive: tuple[str, ...]

    def reason(self) -> tuple[str, ...]:
        """The decisive clauses; when none decides alone (several agree), every clause with the outcome's
        value (e.g. a contract hidden because the agency neither is entrusted nor handles it)."""
        return self.decisive or tuple(n for n, v in self.clauses.items() if v == self.outcome)

    def __str__(self) -> str:
        return f"{self.rule}/{'+'.join(self.reason())}"


@dataclass
class Explainer(NullTally):
    """A tally that records each rule's judgement per row instead of counting clauses."""

    judged: dict[RowId, list[Judgement]] = field(default_factory=dict)

    def judge(
        self, rule: str, formula: Formula, clauses: Mapping[str, bool], *, about: object = None
    ) -> bool:
        outcome = formula(clauses)
        if about is not None:
            table = about.table  # type: ignore[attr-defined]
            key = about.role_name if table == "principal" else about.id  # type: ignore[attr-defined]
            judgement = Judgement(rule, dict(clauses), outcome, decisive(formula, clauses, outcome))
            self.judged.setdefault((table, key), []).append(judgement)
        return outcome


@dataclass(frozen=True)
class ExplainedView:
    """What one principal sees in the model, and why for every row."""

    visible: Visible
    #: ``agency``, ``restricted``, ``insurer``, or None when the role is no principal.
    kind: str | None
    #: per row, the judgements in the order made: a wrapped (inner) rule before the rule wrapping it.
    judged: Mapping[RowId, tuple[Judgement, ...]]

    def shows(self, table: str, key: int | str) -> bool:
        """Whether the model shows the row."""
        return key in self.visible[table]

    def why(self, table: str, key: int | str) -> str:
        """The deciding rule and clauses, e.g. ``agency.contract/entrusted``."""
        chain = list(self.judged.get((table, key), ()))
        if not chain:
            return self._fixed(table)
        parts = [chain.pop()]
        while chain and "agency_rule" in parts[-1].reason():
            parts.append(chain.pop())
        return " > ".join(str(p) for p in parts)

    def clauses(self, table: str, key: int | str) -> dict[str, dict[str, bool]]:
        """Every clause value of every rule that judged the row (for machine-readable reports)."""
        return {j.rule: dict(j.clauses) for j in self.judged.get((table, key), ())}

    def _fixed(self, table: str) -> str:
        """Rows that no clause decides: every role reads ``insurer``; some tables are never listed."""
        if table == "insurer":
            return "insurer: every role reads insurer"
        if self.kind is None:
            return "default deny: not a principal"
        if self.kind == "restricted" and table == "supervision":
            return "restricted.supervision: not among a restricted principal's master data"
        return f"{self.kind}.{table}: not listed for an {self.kind} principal (default deny)"


def explain_view(world: World, role_name: str, now: dt.datetime) -> ExplainedView:
    """``visible_rows`` of ``role_name`` at ``now``, with the judgement behind every row."""
    explainer = Explainer()
    visible = visible_rows(world, role_name, now, explainer)
    principal = world.principal_named(role_name)
    kind = None
    if principal is not None:
        kind = "restricted" if principal.restricted else principal.kind
    return ExplainedView(visible, kind, {k: tuple(v) for k, v in explainer.judged.items()})

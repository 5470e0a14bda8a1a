"""The words of ``agency-rls explain``: each clause of a rule, said as a DBA would, with its rows.

The reference model (``agency_rls.reference_model.explain``) decides *whether* each clause of a rule
holds for a row; this module says *why*, in sentences ("not entrusted by GW1: no entrustment row
links W11 to GW1") and with the rows that satisfied or failed it (entrustment, supervision and
handler rows with their validity windows). The truth values always come from the model's judgement;
the rows are looked up in the same world only to name them, so the words can never contradict the
verdict they explain.

Customers are named by id, notices by id, insurer, kind and addressee: an explanation ends up in
terminals and CI logs, and names, addresses and notice bodies are the personal data the incident
exposed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agency_rls.reference_model.explain import ExplainedView, Judgement
from agency_rls.reference_model.world import (
    AnyRow,
    Contract,
    ContractHandler,
    Entrustment,
    Notice,
    Principal,
    Supervision,
    World,
    valid_at,
)

#: The spec's sentence behind each rule of the model (``scope-rules.md``), shown above the conditions.
RULE_TEXT: dict[str, str] = {
    "agency.contract": "agency A reads contract C iff entrusted(A, C.insurer) and (handles(A, C) or some W"
    " with supervises(A, W) and handles(W, C))",
    "agency.customer": "agency A reads customer P iff A reads a contract whose policyholder or insured is P,"
    " or P.registered_by_agency_id = A",
    "agency.notice": "agency A reads notice N iff entrusted(A, N.insurer) and (N.addressee = A or"
    " supervises(N.addressee, A)) and A reads N's contract and customer (when it names them)",
    "agency.contract_handler": "agency A reads the contract_handler rows of the contracts it reads",
    "agency.agency": "agency A reads its own agency row, that of a current supervisor, and those of the"
    " agencies it currently supervises",
    "agency.supervision": "agency A reads its own supervision rows (any validity) and those of the agencies"
    " it currently supervises",
    "agency.entrustment": "agency A reads its own entrustment rows (any validity) and those of the agencies"
    " it currently supervises",
    "agency.notice_receipt": "agency A reads the notice_receipt rows of its agency",
    "restricted.contract": "a principal restricted to insurer N applies the agency rule to contracts of N only",
    "restricted.customer": "a restricted principal reads the customers of the contracts it reads (no prospects)",
    "restricted.notice": "a principal restricted to insurer N applies the agency rule to notices of N only",
    "restricted.contract_handler": "a restricted principal reads the handler rows of the contracts it reads",
    "restricted.agency": "a restricted principal reads its own agency's row only",
    "restricted.entrustment": "a restricted principal reads its agency's entrustments from N",
    "restricted.notice_receipt": "a restricted principal reads its agency's receipts of the notices it reads",
    "insurer.contract": "insurer I reads the contracts with insurer_id = I, whatever their source",
    "insurer.customer": "insurer I reads the policyholders and insured of its contracts (no prospects)",
    "insurer.notice": "insurer I reads the notices it issued",
    "insurer.contract_handler": "insurer I reads the handler rows of the contracts it reads",
    "insurer.agency": "insurer I reads the agencies it currently entrusts",
    "insurer.entrustment": "insurer I reads the current entrustments from I",
}


@dataclass(frozen=True)
class Evidence:
    """A row that satisfied or failed a condition, with its validity window where it has one."""

    table: str
    id: int | str
    label: str
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None
    valid_now: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.table, "id": self.id, "label": self.label}
        if self.valid_from is not None:
            out["valid_from"] = self.valid_from.isoformat()
            out["valid_to"] = None if self.valid_to is None else self.valid_to.isoformat()
            out["valid_now"] = self.valid_now
        return out


@dataclass(frozen=True)
class Condition:
    """One clause of a rule: its name in the model, whether it holds, why in words, and its rows."""

    name: str
    holds: bool
    text: str
    rows: tuple[Evidence, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holds": self.holds,
            "text": self.text,
            "rows": [r.as_dict() for r in self.rows],
        }


@dataclass(frozen=True)
class RuleVerdict:
    """One rule applied to the row: the spec's sentence, the outcome, every condition."""

    rule: str
    spec: str
    allows: bool
    decisive: tuple[str, ...]
    conditions: tuple[Condition, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "spec": self.spec,
            "allows": self.allows,
            "decided_by": list(self.decisive),
            "conditions": [c.as_dict() for c in self.conditions],
        }


def when(moment: dt.datetime) -> str:
    """A timestamp as a DBA reads it in UTC: ``2025-12-02 04:41 UTC``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def window(valid_from: dt.datetime, valid_to: dt.datetime | None, now: dt.datetime) -> str:
    """``valid from X until Y (valid now | ended | not yet valid)``."""
    until = "open-ended" if valid_to is None else f"until {when(valid_to)}"
    if valid_at(valid_from, valid_to, now):
        state = "valid now"
    elif now < valid_from:
        state = "not yet valid"
    else:
        state = "ended"
    return f"valid from {when(valid_from)}, {until} ({state})"


class Namer:
    """Readable names of a world's rows (codes, policy numbers, ids; never personal data)."""

    def __init__(self, world: World, now: dt.datetime, prefix: str) -> None:
        self.world, self.now, self.prefix = world, now, prefix
        self.agency = {a.id: a.code for a in world.agency}
        self.insurer = {i.id: i.code for i in world.insurer}
        self.contract = {c.id: c for c in world.contract}
        self.notice = {n.id: n for n in world.notice}

    def role(self, role_name: str) -> str:
        return (
            role_name[len(self.prefix) :] if self.prefix and role_name.startswith(self.prefix) else role_name
        )

    def policy(self, contract_id: int | None) -> str:
        c = self.contract.get(contract_id) if contract_id is not None else None
        return c.policy_number if c is not None else f"contract {contract_id}"

    def label(self, row: AnyRow) -> str:
        """How the explanation names a row of any table."""
        a, i = self.agency, self.insurer
        match row.table:
            case "insurer" | "agency":
                return str(row.code)  # type: ignore[union-attr]
            case "contract":
                return f"{row.policy_number} ({i[row.insurer_id]}, {row.source})"  # type: ignore[union-attr]
            case "customer":
                return f"customer {row.id}"  # type: ignore[union-attr]
            case "notice":
                n: Notice = row  # type: ignore[assignment]
                return f"notice {n.id} ({i[n.insurer_id]} {n.kind} to {a[n.addressee_agency_id]})"
            case "contract_handler":
                h: ContractHandler = row  # type: ignore[assignment]
                return (
                    f"handler row {h.id} ({self.policy(h.contract_id)} handled by {a[h.agency_id]}, {h.role})"
                )
            case "supervision":
                s: Supervision = row  # type: ignore[assignment]
                return (
                    f"supervision {s.id} ({a[s.supervising_agency_id]} supervises {a[s.working_agency_id]})"
                )
            case "entrustment":
                e: Entrustment = row  # type: ignore[assignment]
                return f"entrustment {e.id} ({i[e.insurer_id]} entrusts {a[e.agency_id]})"
            case "notice_receipt":
                return f"receipt {row.id} (notice {row.notice_id} read by {a[row.agency_id]})"  # type: ignore[union-attr]
            case _:
                return f"principal {self.role(row.role_name)}"  # type: ignore[union-attr]

    def evidence(self, row: AnyRow) -> Evidence:
        key = row.role_name if isinstance(row, Principal) else row.id
        if isinstance(row, Supervision | Entrustment | ContractHandler):
            return Evidence(
                row.table,
                key,
                self.label(row),
                row.valid_from,
                row.valid_to,
                valid_at(row.valid_from, row.valid_to, self.now),
            )
        return Evidence(row.table, key, self.label(row))

    def windows(self, rows: Iterable[Supervision | Entrustment | ContractHandler]) -> str:
        return "; ".join(f"{self.label(r)} {window(r.valid_from, r.valid_to, self.now)}" for r in rows)


@dataclass(frozen=True)
class Viewer:
    """Whom the explanation is for: agency A (optionally restricted to insurer N) or insurer I."""

    role_name: str
    kind: str  # agency | restricted | insurer
    agency_id: int | None
    insurer_id: int | None


class Reasons:
    """Turns the model's judgements of one row into ``RuleVerdict``s with worded conditions."""

    def __init__(
        self,
        world: World,
        now: dt.datetime,
        view: ExplainedView,
        viewer: Viewer,
        prefix: str,
        relevant: Mapping[tuple[str, int | str, str], tuple[str, ...]],
    ) -> None:
        self.w, self.now, self.view, self.viewer, self.relevant = world, now, view, viewer, relevant
        self.names = Namer(world, now, prefix)

    # -- links ------------------------------------------------------------------------------------

    def _entrustments(self, agency: int, insurer: int) -> list[Entrustment]:
        return [e for e in self.w.entrustment if e.agency_id == agency and e.insurer_id == insurer]

    def _handlers(self, agency: int, contract: int) -> list[ContractHandler]:
        return [h for h in self.w.contract_handler if h.agency_id == agency and h.contract_id == contract]

    def _supervisions(self, supervising: int | None = None, working: int | None = None) -> list[Supervision]:
        return [
            s
            for s in self.w.supervision
            if (supervising is None or s.supervising_agency_id == supervising)
            and (working is None or s.working_agency_id == working)
        ]

    def _valid(self, rows: Iterable[Any]) -> list[Any]:
        return [r for r in rows if valid_at(r.valid_from, r.valid_to, self.now)]

    def _ev(self, rows: Iterable[AnyRow]) -> tuple[Evidence, ...]:
        return tuple(self.names.evidence(r) for r in rows)

    # -- conditions -------------------------------------------------------------------------------

    def entrusted(self, holds: bool, agency: int, insurer: int) -> Condition:
        a, i = self.names.agency[agency], self.names.insurer[insurer]
        rows = self._entrustments(agency, insurer)
        if holds:
            text = f"entrusted by {i}: " + self.names.windows(self._valid(rows))
        elif rows:
            text = f"not entrusted by {i} now: " + self.names.windows(rows)
        else:
            text = f"not entrusted by {i}: no entrustment row links {a} to {i}"
        return Condition("entrusted", holds, text, self._ev(rows))

    def handles(self, holds: bool, agency: int, contract: int) -> Condition:
        a, p = self.names.agency[agency], self.names.policy(contract)
        rows = self._handlers(agency, contract)
        if holds:
            text = f"{a} handles {p}: " + self.names.windows(self._valid(rows))
        elif rows:
            text = f"{a} does not handle {p} now: " + self.names.windows(rows)
        else:
            text = f"{a} does not handle {p}: no contract_handler row links {a} to {p}"
        return Condition("handles", holds, text, self._ev(rows))

    def supervised_handles(self, holds: bool, agency: int, contract: int) -> Condition:
        """Through a supervised agency; when it fails, also the two readings the incident got wrong:
        the viewer's own supervisor handling the contract, and a chain of supervision."""
        a, p, names = self.names.agency[agency], self.names.policy(contract), self.names.agency
        supervised = self._valid(self._supervisions(supervising=agency))
        through: list[AnyRow] = []
        sentences: list[str] = []
        for s in supervised:
            links = self._valid(self._handlers(s.working_agency_id, contract))
            if links:
                through += [s, *links]
                sentences.append(
                    f"{a} supervises {names[s.working_agency_id]} ({self.names.windows([s])}) and"
                    f" {names[s.working_agency_id]} handles {p} ({self.names.windows(links)})"
                )
        if holds:
            return Condition("supervised_handles", True, "; ".join(sentences), self._ev(through))
        if supervised:
            working = ", ".join(names[s.working_agency_id] for s in supervised)
            text = f"none of the agencies {a} supervises now ({working}) handles {p}"
        else:
            text = f"{a} supervises no agency now, so no supervised agency's handling counts"
        rows: list[AnyRow] = []
        for s in self._valid(self._supervisions(working=agency)):
            links = self._valid(self._handlers(s.supervising_agency_id, contract))
            if links:
                rows += [s, *links]
                text += (
                    f"; its supervisor {names[s.supervising_agency_id]} handles {p}"
                    f" ({self.names.windows(links)}), but supervision does not give working agencies the"
                    " supervisor's contracts"
                )
        for s in supervised:
            for s2 in self._valid(self._supervisions(supervising=s.working_agency_id)):
                links = self._valid(self._handlers(s2.working_agency_id, contract))
                if links:
                    rows += [s, s2, *links]
                    text += (
                        f"; {names[s2.working_agency_id]} handles {p} under {names[s2.supervising_agency_id]},"
                        f" which {a} supervises, but supervision is not transitive"
                    )
        return Condition("supervised_handles", False, text, self._ev(rows))

    def _seen(self, name: str, holds: bool, table: str, key: int | None, what: str) -> Condition:
        """``contract_seen`` / ``customer_seen``: the named row is (not) readable by the viewer, and why."""
        if key is None:
            return Condition(name, holds, f"names no {table}")
        row = next(r for r in self.w.rows(table) if r.id == key)  # type: ignore[union-attr]
        label = self.names.label(row)
        if holds:
            return Condition(name, True, f"{what} {label}, which {self._who()} reads", self._ev([row]))
        why = self.view.why(table, key)
        return Condition(
            name, False, f"{what} {label}, which {self._who()} cannot read ({why})", self._ev([row])
        )

    def _who(self) -> str:
        return self.names.role(self.viewer.role_name)

    # -- per rule ---------------------------------------------------------------------------------

    def conditions(self, j: Judgement, row: AnyRow) -> tuple[Condition, ...]:
        out = []
        for name, holds in j.clauses.items():
            c = self._clause(j.rule, name, holds, row)
            out.append(c if c is not None else Condition(name, holds, f"{name}: {'yes' if holds else 'no'}"))
        return tuple(out)

    def _clause(self, rule: str, name: str, holds: bool, row: Any) -> Condition | None:
        v, names, who = self.viewer, self.names, self._who()
        a = v.agency_id
        table = rule.split(".")[1]
        if name == "agency_rule":
            return Condition(name, holds, f"the agency rule below {'allows' if holds else 'denies'} it")
        if name == "concerns_n":
            assert v.insurer_id is not None
            n = names.insurer[v.insurer_id]
            return Condition(
                name,
                holds,
                f"concerns {names.insurer[row.insurer_id]}"
                + (
                    f", the insurer {who} is restricted to"
                    if holds
                    else f", not {n} ({who} is restricted to {n})"
                ),
            )
        if name == "own_role":
            return Condition(
                name, holds, f"role {names.role(row.role_name)} is {'' if holds else 'not '}{who}"
            )
        if table == "contract" and isinstance(row, Contract):
            assert a is not None or name == "own_insurer"
            if name == "entrusted":
                return self.entrusted(holds, a, row.insurer_id)  # type: ignore[arg-type]
            if name == "handles":
                return self.handles(holds, a, row.id)  # type: ignore[arg-type]
            if name == "supervised_handles":
                return self.supervised_handles(holds, a, row.id)  # type: ignore[arg-type]
            if name == "own_insurer":
                return Condition(
                    name,
                    holds,
                    f"issued by {names.insurer[row.insurer_id]}"
                    + ("" if holds else f", not by {names.insurer[v.insurer_id]}")  # type: ignore[index]
                    + (f" (a {row.source} contract)" if row.source == "gateway" and not holds else ""),
                )
        if table == "customer":
            if name == "through_contract":
                parties = [c for c in self.w.contract if row.id in (c.policyholder_id, c.insured_id)]
                seen = [c for c in parties if self.view.shows("contract", c.id)]
                if holds:
                    text = "policyholder or insured of " + ", ".join(c.policy_number for c in seen)
                    return Condition(name, True, text + f", which {who} reads", self._ev(seen))
                if not parties:
                    return Condition(name, False, "policyholder or insured of no contract")
                hidden = "; ".join(f"{c.policy_number} ({self.view.why('contract', c.id)})" for c in parties)
                return Condition(
                    name,
                    False,
                    f"policyholder or insured only of contracts {who} cannot read: {hidden}",
                    self._ev(parties),
                )
            if name == "own_prospect":
                by = row.registered_by_agency_id
                if holds:
                    return Condition(name, True, f"a prospect registered by {names.agency[a]}")  # type: ignore[index]
                return Condition(
                    name,
                    False,
                    "not a prospect"
                    if by is None
                    else f"a prospect registered by {names.agency[by]}, not by {names.agency[a]}",  # type: ignore[index]
                )
        if table == "notice":
            if name == "entrusted":
                return self.entrusted(holds, a, row.insurer_id)  # type: ignore[arg-type]
            if name == "addressed_to_viewer":
                to = names.agency[row.addressee_agency_id]
                return Condition(
                    name, holds, f"addressed to {to}" + ("" if holds else f", not to {names.agency[a]}")
                )  # type: ignore[index]
            if name == "addressed_to_supervisor":
                to, me = row.addressee_agency_id, a
                rows = self._supervisions(supervising=to, working=me)
                if holds:
                    text = (
                        f"its addressee {names.agency[to]} supervises {names.agency[me]}: "
                        + names.windows(self._valid(rows))
                    )
                elif to == me:
                    text = "addressed to the viewer itself, not to a supervisor"
                elif rows:
                    text = (
                        f"its addressee {names.agency[to]} does not supervise {names.agency[me]} now: "
                        + names.windows(rows)
                    )  # type: ignore[index]
                else:
                    text = f"its addressee {names.agency[to]} does not supervise {names.agency[me]}"  # type: ignore[index]
                    if self._valid(self._supervisions(supervising=me, working=to)):
                        text += " (the viewer supervises the addressee, but notices flow down only)"
                return Condition(name, holds, text, self._ev(rows))
            if name == "contract_seen":
                return self._seen(name, holds, "contract", row.contract_id, "about")
            if name == "customer_seen":
                return self._seen(name, holds, "customer", row.customer_id, "naming")
            if name == "issued_by_i":
                return Condition(
                    name,
                    holds,
                    f"issued by {names.insurer[row.insurer_id]}"
                    + ("" if holds else f", not by {names.insurer[v.insurer_id]}"),  # type: ignore[index]
                )
        if table == "contract_handler" and name == "contract_seen":
            return self._seen(name, holds, "contract", row.contract_id, "a handler row of")
        if table == "notice_receipt":
            if name == "own_agency":
                return Condition(
                    name,
                    holds,
                    f"recorded for {names.agency[row.agency_id]}"
                    + ("" if holds else f", not {names.agency[a]}"),
                )  # type: ignore[index]
            if name == "notice_seen":
                return self._seen(name, holds, "notice", row.notice_id, "a receipt of")
        if table == "agency":
            if name == "own":
                return Condition(
                    name, holds, f"{row.code} is {'' if holds else 'not '}the viewer's own agency"
                )
            if name in ("current_supervisor", "currently_supervised"):
                pair = (row.id, a) if name == "current_supervisor" else (a, row.id)
                rows = self._supervisions(supervising=pair[0], working=pair[1])
                verb = "supervises" if holds else "does not supervise"
                text = f"{names.agency[pair[0]]} {verb} {names.agency[pair[1]]} now"  # type: ignore[index]
                return Condition(
                    name, holds, text + (": " + names.windows(rows) if rows else ""), self._ev(rows)
                )
            if name == "currently_entrusted":
                rows = self._entrustments(row.id, v.insurer_id)  # type: ignore[arg-type]
                i = names.insurer[v.insurer_id]  # type: ignore[index]
                text = f"{i} {'entrusts' if holds else 'does not entrust'} {row.code} now"
                return Condition(
                    name, holds, text + (": " + names.windows(rows) if rows else ""), self._ev(rows)
                )
        if table in ("supervision", "entrustment"):
            if name in ("own", "own_agency"):
                return Condition(
                    name, holds, f"{'one of' if holds else 'not one of'} {names.agency[a]}'s own rows"
                )  # type: ignore[index]
            if name == "of_currently_supervised":
                sides = (
                    (row.supervising_agency_id, row.working_agency_id)
                    if table == "supervision"
                    else (row.agency_id,)
                )
                rows = [s for x in sides for s in self._valid(self._supervisions(supervising=a, working=x))]
                if holds:
                    text = "a row of an agency the viewer supervises now: " + names.windows(rows)
                else:
                    text = f"not a row of an agency {names.agency[a]} supervises now"  # type: ignore[index]
                return Condition(name, holds, text, self._ev(rows))
            if name == "from_n" or name == "from_i":
                return Condition(name, holds, f"from {names.insurer[row.insurer_id]}")
            if name == "current":
                return Condition(name, holds, names.windows([row]), self._ev([row]))
        return None

    def verdicts(self, table: str, key: int | str, row: AnyRow) -> tuple[RuleVerdict, ...]:
        """The rules that judged the row, the one deciding first (a wrapping rule before the agency rule)."""
        chain = list(self.view.judged.get((table, key), ()))
        chain.reverse()
        return tuple(
            RuleVerdict(
                j.rule,
                RULE_TEXT.get(j.rule, j.rule),
                j.outcome,
                self.relevant.get((table, key, j.rule), j.reason()),
                self.conditions(j, row),
            )
            for j in chain
        )

"""Formatters, apart from the rules: a rich table for people, JSON for CI, SARIF 2.1.0 for code scanning.

SARIF notes: each rule is a ``reportingDescriptor`` (its doc is the help text); each finding a
``result`` with a logical location (database objects have no file and line); a waived finding
carries an accepted external ``suppression`` with the waiver's reason, which code-scanning UIs
show as dismissed; ``partialFingerprints`` (rule, database, object) let them track a finding
across runs.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agency_rls.lint.finding import Finding, Level
from agency_rls.lint.runner import LintReport

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_SARIF_LEVEL = {Level.error: "error", Level.warning: "warning", Level.info: "note"}
_STYLE = {Level.error: "bold red", Level.warning: "yellow", Level.info: "cyan"}


def _tool_version() -> str:
    try:
        return version("agency-rls")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


def _server(report: LintReport) -> str:
    return f"{report.server_version_num // 10000}.{report.server_version_num % 10000}"


#: Narrower terminals (and CI logs) get one block per finding instead of a table that folds every cell.
TABLE_MIN_WIDTH = 120


def render_text(report: LintReport, console: Console) -> None:
    """The findings that count (waived ones are only counted) as a table, or as blocks on a narrow
    terminal, and a summary line."""
    shown = [f for f in report.findings if not f.waived]
    rows = []
    for finding in shown:
        message = finding.message
        if finding.waiver_expired and finding.waiver:
            message += f" [waiver expired {finding.waiver['expires']}: {finding.waiver['reason']}]"
        rows.append((finding, message))
    if rows and console.width >= TABLE_MIN_WIDTH:
        table = Table(show_lines=True, expand=True)
        for column, ratio in (("level", 1), ("rule", 2), ("object", 3), ("message", 6), ("remedy", 4)):
            table.add_column(column, ratio=ratio, overflow="fold")
        for finding, message in rows:
            table.add_row(
                Text(str(finding.level), style=_STYLE[finding.level]),
                finding.rule,
                finding.object,
                message,
                finding.remedy,
            )
        console.print(table, highlight=False)
    else:
        for finding, message in rows:
            console.print(
                Text.assemble(
                    (str(finding.level).upper(), _STYLE[finding.level]), f" {finding.rule}  {finding.object}"
                ),
                highlight=False,
                soft_wrap=True,
            )
            console.print(f"  {message}", markup=False, highlight=False, soft_wrap=True)
            console.print(f"  remedy: {finding.remedy}", markup=False, highlight=False, soft_wrap=True)
    counts = report.counts()
    summary = (
        f"{report.database} (PostgreSQL {_server(report)}, role prefix {report.role_prefix!r}): "
        f"{len(report.rules)} rules, {counts['error']} errors, {counts['warning']} warnings, "
        f"{counts['info']} info, {counts['waived']} waived"
    )
    console.print(summary, markup=False, highlight=False, soft_wrap=True)
    for waiver in report.unused_waivers:
        console.print(
            f"unused waiver ({waiver.where}): {waiver.rule} on {waiver.object} matches no finding; delete it",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def to_json(report: LintReport) -> str:
    """Every finding (waived ones flagged), the counts, the unused waivers."""
    return json.dumps(
        {
            "database": report.database,
            "role_prefix": report.role_prefix,
            "server_version_num": report.server_version_num,
            "rules": [r.id for r in report.rules],
            "failed": report.failed,
            "counts": report.counts(),
            "findings": [f.as_dict() for f in report.findings],
            "unused_waivers": [w.as_dict() for w in report.unused_waivers],
        },
        indent=2,
    )


def _fingerprint(report: LintReport, finding: Finding) -> str:
    key = "\x1f".join((finding.rule, report.database, finding.object))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _location_kind(obj: str) -> str:
    first = obj.split(" ", 1)[0]
    return {"function": "function", "role": "role", "policy": "policy", "schema": "namespace"}.get(
        first, "resource"
    )


def to_sarif(report: LintReport) -> dict[str, object]:
    """A SARIF 2.1.0 log with one run."""
    index = {rule.id: i for i, rule in enumerate(report.rules)}
    rules = [
        {
            "id": rule.id,
            "name": "".join(part.capitalize() for part in rule.id.split("_")),
            "shortDescription": {"text": rule.title},
            "fullDescription": {"text": rule.summary},
            "help": {"text": rule.doc},
            "defaultConfiguration": {"level": _SARIF_LEVEL[rule.level]},
            "properties": {"tags": ["security", "row-level-security", "postgresql"]},
        }
        for rule in report.rules
    ]
    results = []
    for finding in report.findings:
        result: dict[str, object] = {
            "ruleId": finding.rule,
            "level": _SARIF_LEVEL[finding.level],
            "message": {"text": f"{finding.message}. Remedy: {finding.remedy}"},
            "locations": [
                {
                    "logicalLocations": [
                        {
                            "name": finding.object,
                            "fullyQualifiedName": f"{report.database}/{finding.object}",
                            "kind": _location_kind(finding.object),
                        }
                    ]
                }
            ],
            "partialFingerprints": {"agencyRlsLint/v1": _fingerprint(report, finding)},
            "properties": {"remedy": finding.remedy, "waiverExpired": finding.waiver_expired},
        }
        if finding.rule in index:
            result["ruleIndex"] = index[finding.rule]
        if finding.waived and finding.waiver:
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{finding.waiver['reason']} (until {finding.waiver['expires']})",
                }
            ]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "agency-rls lint",
                        "version": _tool_version(),
                        "rules": rules,
                    }
                },
                "results": results,
                "properties": {
                    "database": report.database,
                    "rolePrefix": report.role_prefix,
                    "serverVersion": _server(report),
                },
            }
        ],
    }

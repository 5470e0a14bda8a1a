"""Waivers: a reviewed, dated acceptance of one finding on one object.

A waiver names a rule id, an object (exactly as the finding prints it), a reason and an expiry
date. Until it expires the finding is reported as waived and does not fail the command; from the
day after, the finding comes back, flagged as having an expired waiver, so an exception cannot
quietly become permanent. A waiver that matches nothing is reported too (the defect was fixed:
delete the waiver).

TOML::

    [[waiver]]
    rule = "rls_without_policy"
    object = "public.audit_log"
    reason = "deny-all until the audit readers ship (TICKET-123)"
    expires = 2027-03-31

YAML::

    waivers:
      - rule: rls_without_policy
        object: public.audit_log
        reason: deny-all until the audit readers ship (TICKET-123)
        expires: 2027-03-31
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from agency_rls.lint.finding import Finding

_KEYS = {"rule", "object", "reason", "expires"}


class WaiverError(ValueError):
    """A waiver file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Waiver:
    """One accepted finding."""

    rule: str
    object: str
    reason: str
    expires: dt.date
    where: str  # file and entry number, for messages

    def as_dict(self) -> dict[str, str]:
        """Plain data for the outputs."""
        return {
            "rule": self.rule,
            "object": self.object,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
        }


def load_waivers(path: str | Path, known_rules: Iterable[str]) -> list[Waiver]:
    """Read and check a waiver file (``.toml``, ``.yaml`` or ``.yml``); raise WaiverError if it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise WaiverError(f"waiver file {path}: {error.strerror or error}") from None
    try:
        if path.suffix == ".toml":
            entries = tomllib.loads(text).get("waiver", [])
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
            entries = data.get("waivers", []) if isinstance(data, dict) else (data or [])
        else:
            raise WaiverError(f"waiver file {path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise WaiverError(f"waiver file {path}: {' '.join(str(error).split())}") from None
    if not isinstance(entries, list):
        raise WaiverError(f"waiver file {path}: expected a list of waivers ([[waiver]] or 'waivers:')")
    known = set(known_rules)
    waivers = [
        _waiver(entry, f"{path} waiver {index}", known) for index, entry in enumerate(entries, start=1)
    ]
    seen: dict[tuple[str, str], str] = {}
    for waiver in waivers:
        key = (waiver.rule, waiver.object)
        if key in seen:
            raise WaiverError(f"{waiver.where}: waives {waiver.rule} on {waiver.object} again ({seen[key]})")
        seen[key] = waiver.where
    return waivers


def _waiver(entry: object, where: str, known: set[str]) -> Waiver:
    if not isinstance(entry, dict):
        raise WaiverError(f"{where}: expected a table with rule, object, reason, expires")
    missing = sorted(_KEYS - entry.keys())
    unknown = sorted(set(entry) - _KEYS)
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown key {', '.join(unknown)}"] if unknown else []
        raise WaiverError(f"{where}: {'; '.join(problems)}")
    rule, obj, reason, expires = entry["rule"], entry["object"], entry["reason"], entry["expires"]
    if rule not in known:
        raise WaiverError(f"{where}: unknown rule {rule!r} (agency-rls lint --list-rules shows them)")
    if not isinstance(obj, str) or not obj.strip():
        raise WaiverError(f"{where}: object must name the finding's object, e.g. 'public.audit_log'")
    if not isinstance(reason, str) or not reason.strip():
        raise WaiverError(f"{where}: a waiver needs a reason")
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            raise WaiverError(f"{where}: expires {expires!r} is not a date (YYYY-MM-DD)") from None
    if isinstance(expires, dt.datetime) or not isinstance(expires, dt.date):
        raise WaiverError(f"{where}: expires must be a date (YYYY-MM-DD)")
    return Waiver(rule=rule, object=obj, reason=reason.strip(), expires=expires, where=where)


def apply_waivers(
    findings: list[Finding], waivers: list[Waiver], today: dt.date
) -> tuple[list[Finding], list[Waiver]]:
    """Mark waived findings (and those whose waiver expired); return them with the waivers that matched nothing."""
    by_key = {(w.rule, w.object): w for w in waivers}
    used: set[tuple[str, str]] = set()
    result = []
    for finding in findings:
        waiver = by_key.get((finding.rule, finding.object))
        if waiver is None:
            result.append(finding)
            continue
        used.add((waiver.rule, waiver.object))
        if today <= waiver.expires:
            result.append(replace(finding, waived=True, waiver=waiver.as_dict()))
        else:
            result.append(replace(finding, waiver_expired=True, waiver=waiver.as_dict()))
    unused = [w for w in waivers if (w.rule, w.object) not in used]
    return result, unused

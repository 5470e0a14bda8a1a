"""One result shape for every lint rule: what is wrong, where, how bad, and how to fix it.

Every rule returns rows of the same shape (as Supabase's splinter does), so the runner, the waivers
and the output formats never need to know which rule they are handling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Level(StrEnum):
    """How bad a finding is. Only ``error`` fails the command (exit status 1)."""

    error = "error"
    warning = "warning"
    info = "info"


@dataclass(frozen=True)
class Finding:
    """One defect on one database object.

    ``object`` names the object the way a DBA would type it (``public.customer``, ``policy
    contract_read ON public.contract``, ``role crm_agency_w11``, ``function agency_rls.f(bigint)``);
    a waiver names the same string. ``waiver`` describes the waiver that matched it, if any.
    """

    rule: str
    level: Level
    object: str
    message: str
    remedy: str
    waived: bool = False
    waiver_expired: bool = False
    waiver: dict[str, str] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--format json``."""
        data = asdict(self)
        data["level"] = str(self.level)
        return data

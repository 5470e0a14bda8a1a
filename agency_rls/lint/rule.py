"""A lint rule: an id, a default level, a title, a doc with a bad and a good example, and one query.

The query is read-only SQL over the system catalogs. It returns rows of ``level`` (NULL means
the rule's default), ``object``, ``message`` and ``remedy``, and may use these parameters:

- ``%(prefix)s``, ``%(database)s``: the stored role prefix and the current database;
- ``%(owner)s``, ``%(helper)s``, ``%(backend)s``, ``%(agency_group)s``,
  ``%(agency_writer_group)s``, ``%(insurer_group)s``, ``%(loader)s``: the management roles;
- ``%(principal_marker)s``, ``%(management_marker)s``: the comments that mark this database's roles;
- ``%(personal_column_pattern)s``: the regular expression of personal-data column names;
- ``%(server_version_num)s``: the server's version number (injectable for tests);
- whatever the module's ``PARAMS`` dict adds (lists become arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from agency_rls.lint.finding import Level


@dataclass(frozen=True)
class Rule:
    """One lint rule, read from its module (see ``agency_rls.lint.rules``)."""

    id: str
    level: Level
    title: str
    doc: str
    sql: str
    params: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_module(cls, module: ModuleType) -> Rule:
        """A rule module defines ``ID``, ``LEVEL``, ``TITLE``, ``SQL`` and a docstring."""
        doc = (module.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"lint rule module {module.__name__} has no docstring")
        return cls(
            id=module.ID,
            level=Level(module.LEVEL),
            title=module.TITLE,
            doc=doc,
            sql=module.SQL,
            params=dict(getattr(module, "PARAMS", {})),
        )

    @property
    def summary(self) -> str:
        """The first paragraph of the doc (SARIF's fullDescription, the rule list)."""
        return " ".join(self.doc.split("\n\n", 1)[0].split())

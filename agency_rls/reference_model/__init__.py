"""A pure-Python reading of ``scope-rules.md``: which rows each principal may read.

A second, independent implementation of the scope rules (it imports nothing from ``rls_policies``),
so that a mistake in the policies or in this model shows up as a disagreement between the two.

- ``world``: the rows of the spec's tables (``World`` and one dataclass per table);
- ``rules``: one function per rule, each quoting the spec sentence it implements;
- ``model``: ``visible_rows(world, role_name, now)`` -> row keys per table;
- ``coverage``: which rule clauses decided outcomes (``Tally``);
- ``database``: ``world_from_connection``, ``load_world``, ``world_to_sql``;
- ``scenario``: a world as a plain dict / YAML with validity relative to ``now``;
- ``scenario_file``: scenario files for ``agency-rls check`` (a world by readable keys, expectations,
  writes), built on ``scenario_yaml`` (line numbers), ``scenario_columns`` and ``scenario_world``;
- ``explain``: why the model shows or hides a row (the deciding rule and clauses);
- ``strategies``: Hypothesis strategies for random worlds.
"""

from agency_rls.reference_model.coverage import Tally
from agency_rls.reference_model.model import Visible, visible_rows, visible_to_every_principal
from agency_rls.reference_model.world import (
    PROTECTED_TABLES,
    TABLES,
    Agency,
    Contract,
    ContractHandler,
    Customer,
    Entrustment,
    Insurer,
    Notice,
    NoticeReceipt,
    Principal,
    Supervision,
    World,
    valid_at,
)

__all__ = [
    "PROTECTED_TABLES",
    "TABLES",
    "Agency",
    "Contract",
    "ContractHandler",
    "Customer",
    "Entrustment",
    "Insurer",
    "Notice",
    "NoticeReceipt",
    "Principal",
    "Supervision",
    "Tally",
    "Visible",
    "World",
    "valid_at",
    "visible_rows",
    "visible_to_every_principal",
]

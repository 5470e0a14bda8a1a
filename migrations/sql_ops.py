"""Running the reviewable SQL files a revision recorded.

Why not ``op.execute``: the recorded SQL contains ``%`` (``format('%I', …)``) and ``:=``,
which SQLAlchemy's text() and the psycopg paramstyle would try to interpret. Online, the file
goes to psycopg unparsed (no parameters: several statements per call are fine); offline
(``--sql``), it is written out verbatim for review.
"""

from __future__ import annotations

from pathlib import Path

from agency_rls.rls_policies.definition import render
from agency_rls.rls_policies.names import ManagementRoles
from alembic import context, op


def management_roles() -> ManagementRoles:
    """The management roles for the prefix env.py resolved for this run."""
    return ManagementRoles(context.config.attributes.get("role_prefix", ""))


def run_sql(text: str) -> None:
    """Execute ``text`` as is (online) or print it (offline)."""
    if context.is_offline_mode():
        op.get_context().impl.static_output(text.rstrip() + "\n")
        return
    op.get_bind().connection.driver_connection.execute(text)


def run_recorded(revision_file: str, name: str) -> None:
    """Render and run the SQL file ``name`` that sits beside ``revision_file``."""
    template = (Path(revision_file).parent / name).read_text(encoding="utf-8")
    run_sql(render(template, management_roles()))

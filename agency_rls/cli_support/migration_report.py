"""What ``migrate``, ``downgrade``, ``current`` and ``history`` say: the revisions applied, or why none.

Why: Alembic's progress lines go to a log (stderr, INFO) and say nothing when nothing ran; a DBA
wants one line per revision that ran (``0001 -> 0002``), or "already at head" / "nothing to
downgrade", on stdout, and the revision the database is at, readable by a script (``--format json``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError

from agency_rls.migrations import runner
from agency_rls.rls_policies.privileges import MissingPrivilege


def upgrade_lines(moved: runner.Moved, target: str) -> list[str]:
    """The lines ``migrate`` prints."""
    if moved.before == moved.after:
        at = runner.head_revision() if target == "head" else target
        return ["already at head" if moved.after == runner.head_revision() else f"already at {at}"]
    return [*moved.steps, f"now at {describe(moved.after)}"]


def downgrade_lines(moved: runner.Moved) -> list[str]:
    """The lines ``downgrade`` prints."""
    if moved.before == moved.after:
        return ["nothing to downgrade" + ("" if moved.before is None else f": already at {moved.before}")]
    return [*moved.steps, f"now at {describe(moved.after)}"]


def describe(revision: str | None) -> str:
    """'0006 (head)', '0004', or 'base (not migrated)'."""
    if revision is None:
        return "base (not migrated)"
    return f"{revision} (head)" if revision == runner.head_revision() else revision


def current_state(url: str | None) -> dict[str, Any]:
    """Where the database is: the ``current --format json`` object."""
    try:
        revision = runner.migrated_revision(url)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != "42501":
            raise
        raise MissingPrivilege(
            f"cannot read the version table ({' '.join(str(error.orig).split())}): 'current' needs a role that "
            "reads it, such as the database's owner who migrated it (or SUPERUSER)"
        ) from None
    head = runner.head_revision()
    return {"revision": revision, "head": head, "migrated": revision is not None, "at_head": revision == head}


def current_line(state: dict[str, Any]) -> str:
    """``current`` as text: '0006 (head)', '0004 (head is 0006)', or 'not migrated'."""
    if not state["migrated"]:
        return "not migrated"
    if state["at_head"]:
        return f"{state['revision']} (head)"
    return f"{state['revision']} (head is {state['head']})"


def history_lines(revisions: list[dict[str, Any]]) -> list[str]:
    """``history`` as text, newest first, as Alembic writes it: '0005 -> 0006 (head), message'."""
    return [
        f"{item['down_revision'] or '<base>'} -> {item['revision']}{' (head)' if item['head'] else ''}, "
        f"{item['message']}"
        for item in revisions
    ]

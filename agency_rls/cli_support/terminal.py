"""Terminal behaviour every command shares.

Why: rich lays tables out for 80 columns when stdout is not a terminal (``| less``, ``> file``,
CI logs) and cuts what does not fit with an ellipsis: a principal's name, the one column a reader
needs whole, came out as ``t1a2b3c4_staff_nl_at…``. Progress bars belong on a terminal only: a
log or a JSON consumer gets nothing extra. A reader that stops early (``| head``) is not an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

#: Width of a table written to a pipe or a file: wide enough that nothing is ever cut.
UNBOUNDED_WIDTH = 10_000


def stdout_console() -> Console:
    """A console for stdout: the terminal's width on a terminal, otherwise wide enough for any table."""
    console = Console()
    if not console.is_terminal:
        return Console(width=UNBOUNDED_WIDTH)
    return console


def key_column(table: Table, header: str) -> None:
    """Add the column that names the row (a principal): never cut; folded on a terminal too narrow.

    Not ``no_wrap``: rich's last resort for a table wider than the terminal shrinks every column, and
    a no-wrap cell is then cropped; a folding one keeps every character (names have no spaces, so
    they only fold when they must)."""
    table.add_column(header, overflow="fold")


def stderr_is_terminal() -> bool:
    """Whether a progress bar on stderr would be seen by a person."""
    return Console(stderr=True).is_terminal


@contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr while the block runs; yields ``advance(done)``.

    Shown only when ``enabled`` (the command's output is not JSON) and stderr is a terminal;
    otherwise ``advance`` does nothing, so logs and JSON consumers see no extra bytes. ``total``
    None: a spinner-like bar that only counts time (work done in one statement, e.g. provision).
    """
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda done: None
        return
    bar = Progress(
        TextColumn(description),
        BarColumn(),
        *([MofNCompleteColumn()] if total is not None else []),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task(description, total=total)
    with bar:
        yield lambda done: bar.update(task, completed=done)


def exit_quietly_on_broken_pipe() -> None:
    """The reader went away (``agency-rls matrix | head``): no traceback, no message, exit status 1
    (the output was cut short; click says the same when it sees the broken pipe first).

    Python's own advice: point stdout at /dev/null so the interpreter's final flush cannot fail too.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests capture it)
        pass
    raise SystemExit(1)


class NotConfirmed(RuntimeError):
    """A destructive command was not confirmed; nothing was done."""


def confirm(question: str, *, yes: bool, refusal: str) -> None:
    """Go on when ``yes``; ask on a terminal; refuse with ``refusal`` when nobody can be asked."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise NotConfirmed(refusal)
    import typer

    if not typer.confirm(question, default=False, err=True):
        raise NotConfirmed("not confirmed; nothing changed")

"""Progress of long commands (generate, features, train, score) for a person at a terminal.

One live line on stderr: what is running, the stage, rows done when known, and the time
elapsed. Only when stderr is a terminal: in logs, pipes, CI and tests nothing at all is
printed, whatever ``FORCE_COLOR`` says (rich's own detection would honour it), so the
commands' output stays exactly their result lines. Tests inject a rich ``Console`` with
``force_terminal=True`` to see the display.

While the line is live, prints to stdout (when stdout is the same terminal) and log
records of stream handlers on stderr are routed through rich, above the line, instead of
tearing it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.file_proxy import FileProxy
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Tracker:
    """What a command reports while it works; does nothing when nothing is displayed."""

    def stage(self, name: str) -> None:
        """The step now running (replaces the previous one)."""

    def rows(self, done: int, total: int | None = None) -> None:
        """Rows done so far (and the total, once known)."""


class _Live(Tracker):
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def stage(self, name: str) -> None:
        self._progress.update(self._task, stage=name)

    def rows(self, done: int, total: int | None = None) -> None:
        self._progress.update(self._task, completed=done, total=total, done=f"{done:,} rows")


def terminal_console() -> Console | None:
    """A console on stderr when stderr is an interactive terminal, else None."""
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    return Console(file=stream) if isatty is not None and isatty() else None


@contextmanager
def progress(
    title: str, *, total: int | None = None, console: Console | None = None
) -> Iterator[Tracker]:
    """Show ``title``, the stage, rows done and the time elapsed while the block runs.

    Parameters
    ----------
    title : what runs, e.g. ``"score"``.
    total : rows expected, for a bar; None shows a spinner.
    console : where to draw (tests force a terminal); default stderr, and only when it
        is a terminal. A console that is not a terminal draws nothing.

    Yields
    ------
    Tracker
        ``stage(name)`` and ``rows(done, total)``; no-ops when nothing is displayed.
    """
    console = console or terminal_console()
    if console is None or not console.is_terminal:
        yield Tracker()
        return
    stdout_is_terminal = bool(getattr(sys.stdout, "isatty", lambda: False)())
    display = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}[/bold]"),
        TextColumn("{task.fields[stage]}"),
        BarColumn(bar_width=24) if total else TextColumn(""),
        TextColumn("{task.fields[done]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=stdout_is_terminal,
        redirect_stderr=console.file is sys.stderr,
    )
    with display:
        task = display.add_task(title, total=total, stage="", done="")
        with _logs_through():
            yield _Live(display, task)


@contextmanager
def _logs_through() -> Iterator[None]:
    # Handlers set up before the display (the CLI's basicConfig) hold the real stderr:
    # while rich proxies sys.stderr, point them at the proxy, then back.
    moved = []
    if isinstance(sys.stderr, FileProxy):
        real = sys.stderr.rich_proxied_file
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is real:
                moved.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)

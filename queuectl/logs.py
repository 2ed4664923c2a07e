"""Logging for the worker: one line per job transition, on stderr.

The worker logs every transition (claimed, completed, failed, dead, recovered,
interrupted, lease lost) as one record whose message is a complete sentence and
whose ``extra`` fields carry the same facts as data (``action``, ``job_id``,
``attempt``, ``attempts``, ``max_attempts``, ``worker_id``, ``slot``, ``duration``,
``exit_code``, ``signal``, ``error``, ``next_run_at``). The action, level, word and
colour of each transition come from ``queuectl.transitions``. Each format picks
what it needs:

* ``plain`` (the default off a terminal): time, level and the sentence; stable
  text for files and ``grep``.
* ``rich`` (the default on a terminal): the fields in aligned columns, the outcome
  in its colour, so a wall of completions and the one dead job look different.
* ``json``: one object per line with every field, for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from queuectl.clock import to_iso
from queuectl.hangup import output_lost
from queuectl.transitions import (
    BY_ACTION,
    COMPLETED,
    DEAD,
    FAILED,
    RECOVERED,
    Transition,
    attempt_label,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

LOG_FORMATS = ("auto", "plain", "json", "rich")
FIELDS = (
    "action",
    "job_id",
    "attempt",
    "attempts",
    "max_attempts",
    "worker_id",
    "slot",
    "duration",
    "exit_code",
    "signal",
    "error",
    "next_run_at",
    "lost_worker_id",
)

LEVEL_STYLES = {
    logging.DEBUG: "dim",
    logging.INFO: "",
    logging.WARNING: "yellow",
    logging.ERROR: "bold red",
    logging.CRITICAL: "bold red reverse",
}


def level_for(verbose: int, quiet: int) -> int:
    """``-v`` per step towards DEBUG, ``-q`` per step towards CRITICAL, from INFO."""
    return min(max(logging.INFO + 10 * (quiet - verbose), logging.DEBUG), logging.CRITICAL)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": to_iso(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class TransitionHandler(logging.Handler):
    """Prints each record as one aligned, coloured line through a rich ``Console``.

    Sharing the console with a ``rich.progress`` display (``worker start --burst``)
    makes log lines appear above the bar instead of tearing it.
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.render(record))
            if record.exc_info:
                from rich.traceback import Traceback

                exc_type, exc, tb = record.exc_info
                assert exc_type is not None and exc is not None
                self.console.print(Traceback.from_exception(exc_type, exc, tb))
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if not output_lost(sys.exc_info()[1], self.console.file):
            super().handleError(record)

    def render(self, record: logging.LogRecord) -> RenderableType:
        """The record's fixed columns, then its details (an error, a message).

        The columns are padded to line up, and never cut: a long job id pushes the
        details right. Details that do not fit beside the columns wrap under
        themselves when enough room is left there (``MIN_DETAIL_WIDTH``), else
        they go on the next lines, indented, so a narrow terminal shows an error
        as a few full lines rather than one word per line.
        """
        from rich.text import Text

        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        action = getattr(record, "action", None)
        worker = getattr(record, "worker_id", None)
        slot = getattr(record, "slot", None)
        who = f"{worker}/{slot}" if slot is not None else (worker or "")
        head = Text.assemble((when, "dim"), " ", (f"{who:<10}", "blue"), " ")
        transition = BY_ACTION.get(action) if isinstance(action, str) else None
        if transition is not None and getattr(record, "job_id", None) is not None:
            head.append(f"{transition.word:<11}", style=transition.style)
            head.append(" ")
            head.append(f"{getattr(record, 'job_id', '')!s:<16}", style="bold")
            head.append(f" {_attempt(record):>5} {_duration(record):>7}")
            return _beside(head, _details(record, transition), self.console.width)
        level = record.levelname.lower() if record.levelno != logging.INFO else ""
        style = LEVEL_STYLES.get(record.levelno, "")
        head.append(f"{level:<11}", style=style)
        return _beside(head, Text(record.getMessage(), style=style), self.console.width)


#: Narrower than this beside the columns, a record's details go on lines of their own.
MIN_DETAIL_WIDTH = 30
#: The indent of details on lines of their own (under the worker column).
DETAIL_INDENT = 13


def _beside(head: Text, details: Text, width: int) -> RenderableType:
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    if not details:
        head.rstrip()
        return head
    room = width - head.cell_len - 1
    if details.cell_len <= room:
        return Text.assemble(head, " ", details)
    if room >= MIN_DETAIL_WIDTH:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(head, details)
        return grid
    head.overflow = "fold"  # an id wider than the terminal: folded, never cut
    return Group(head, Padding(details, (0, 0, 0, DETAIL_INDENT)))


def _attempt(record: logging.LogRecord) -> str:
    attempt = getattr(record, "attempt", None)
    total = getattr(record, "max_attempts", None)
    if attempt is None:
        return ""
    if total is None:
        return str(attempt)
    return attempt_label(attempt, getattr(record, "attempts", attempt), total - 1)


def _duration(record: logging.LogRecord) -> str:
    duration = getattr(record, "duration", None)
    return "" if duration is None else f"{duration:.2f}s"


def _details(record: logging.LogRecord, transition: Transition) -> Text:
    from rich.text import Text

    error = getattr(record, "error", None)
    text = Text()
    if transition is COMPLETED:
        text.append("exit 0", style=transition.style)
    elif transition in (FAILED, DEAD):
        text.append(error or "failed", style=transition.style)
        retry = getattr(record, "next_run_at", None)
        if retry:
            text.append(f" · retry {_in(retry, record.created)}", style="dim")
    elif transition is RECOVERED:
        lost = getattr(record, "lost_worker_id", None)
        text.append(f"worker {lost or '?'} lost; {transition.note}", style="dim")
    else:
        text.append(transition.note, style="dim")
    return text


def _in(iso: str, created: float) -> str:
    """``in 3s (13:37:34)`` for a retry time given as ISO text, relative to the record."""
    try:
        due = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return f"at {iso}"
    seconds = due.timestamp() - created
    local = due.astimezone().strftime("%H:%M:%S")
    return f"in {max(seconds, 0):.0f}s ({local})"


class PlainFormatter(logging.Formatter):
    """``2026-11-29 13:37:31.356 INFO    message``; the date is formatted once a second.

    A busy worker logs two lines per job; ``strftime`` of the local time was a
    third of what each line cost.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)-7s %(message)s", _DATE_FORMAT)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._text = super().formatTime(record, datefmt)
            self._second = second
        return self._text


_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_logging(
    level: int = logging.INFO, fmt: str = "auto", *, console: Console | None = None
) -> None:
    """Send ``queuectl`` records to stderr in ``fmt``; ``console`` is used by ``rich``."""
    # No format here shows the thread or process: spare every record (two per
    # job) the lookups of the current thread, pid and multiprocessing name.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("queuectl")
    root.handlers.clear()
    root.setLevel(level)
    root.propagate = False
    if fmt == "auto":
        fmt = "rich" if sys.stderr.isatty() else "plain"
    handler: logging.Handler
    if fmt == "rich":
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, highlight=False)
        handler = TransitionHandler(console)
    else:
        handler = _StderrHandler(sys.stderr)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(PlainFormatter())
    root.addHandler(handler)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A closed terminal or pipe mutes the log instead of failing every line."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not output_lost(sys.exc_info()[1], self.stream):
            super().handleError(record)

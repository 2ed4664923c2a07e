"""Logging for the worker: one line per job transition, on stderr.

The worker logs every transition (claimed, completed, failed, dead, recovered,
interrupted, lease lost) as one record whose message is a complete sentence and
whose ``extra`` fields carry the same facts as data (``action``, ``job_id``,
``attempt``, ``max_attempts``, ``worker_id``, ``slot``, ``duration``, ``exit_code``,
``signal``, ``error``, ``next_run_at``). Each format picks what it needs:

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

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

LOG_FORMATS = ("auto", "plain", "json", "rich")
FIELDS = (
    "action",
    "job_id",
    "attempt",
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

#: action -> (the word shown, its style). The styles match the job states' colours
#: in tables (``render.STATE_STYLES``): a job being run is yellow, done is green, …
EVENTS = {
    "job_claimed": ("claimed", "yellow"),
    "job_completed": ("completed", "green"),
    "job_failed": ("failed", "magenta"),
    "job_dead": ("dead", "bold red"),
    "job_cancelled": ("cancelled", "blue"),
    "job_recovered": ("recovered", "dark_orange"),
    "job_interrupted": ("interrupted", "dark_orange"),
    "job_lost": ("lease lost", "red"),
}
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

    def render(self, record: logging.LogRecord) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(min_width=10, no_wrap=True)
        grid.add_column(min_width=11, no_wrap=True)
        action = getattr(record, "action", None)
        worker = getattr(record, "worker_id", None)
        slot = getattr(record, "slot", None)
        who = Text(f"{worker}/{slot}" if slot is not None else (worker or ""), style="blue")
        if action in EVENTS and getattr(record, "job_id", None) is not None:
            word, style = EVENTS[action]
            grid.add_column(min_width=16, no_wrap=True)
            grid.add_column(min_width=5, justify="right", no_wrap=True)
            grid.add_column(min_width=7, justify="right", no_wrap=True)
            grid.add_column(overflow="fold")
            grid.add_row(
                when,
                who,
                Text(word, style=style),
                Text(str(getattr(record, "job_id", "")), style="bold"),
                _attempt(record),
                _duration(record),
                _details(record, style),
            )
            return grid
        grid.add_column(overflow="fold")
        level = record.levelname.lower() if record.levelno != logging.INFO else ""
        grid.add_row(
            when,
            who,
            Text(level, style=LEVEL_STYLES.get(record.levelno, "")),
            Text(record.getMessage(), style=LEVEL_STYLES.get(record.levelno, "")),
        )
        return grid


def _attempt(record: logging.LogRecord) -> str:
    attempt = getattr(record, "attempt", None)
    total = getattr(record, "max_attempts", None)
    if attempt is None:
        return ""
    return f"{attempt}/{total}" if total is not None else str(attempt)


def _duration(record: logging.LogRecord) -> str:
    duration = getattr(record, "duration", None)
    return "" if duration is None else f"{duration:.2f}s"


def _details(record: logging.LogRecord, style: str) -> Text:
    from rich.text import Text

    action = record.action  # type: ignore[attr-defined]
    error = getattr(record, "error", None)
    text = Text()
    if action == "job_completed":
        text.append("exit 0", style="green")
    elif action in ("job_failed", "job_dead"):
        text.append(error or "failed", style=style)
        retry = getattr(record, "next_run_at", None)
        if retry:
            text.append(f" · retry {_in(retry, record.created)}", style="dim")
    elif action == "job_interrupted":
        text.append("back to pending; attempt not counted", style="dim")
    elif action == "job_recovered":
        lost = getattr(record, "lost_worker_id", None)
        text.append(f"worker {lost or '?'} lost; counts as failed", style="dim")
    elif action == "job_lost":
        text.append("another worker took it over; result discarded", style="dim")
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
        handler = logging.StreamHandler(sys.stderr)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(PlainFormatter())
    root.addHandler(handler)

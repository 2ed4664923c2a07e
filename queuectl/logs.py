"""Logging for the worker: one line per job transition, on stderr.

``auto`` picks rich's handler on a terminal (colour by level, aligned times) and
plain text otherwise; ``json`` prints one object per line, with the structured
fields (``action``, ``job_id``, ``attempt``, ``duration``, ``exit_code``) that log
shippers and dashboards read.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

LOG_FORMATS = ("auto", "plain", "json", "rich")
_FIELDS = ("action", "job_id", "attempt", "duration", "exit_code", "worker_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        return json.dumps(data, ensure_ascii=False)


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


def setup_logging(level: int = logging.INFO, fmt: str = "auto") -> None:
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
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(stderr=True),
            show_path=False,
            log_time_format="%H:%M:%S.%f",
            omit_repeated_times=False,
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(PlainFormatter())
    root.addHandler(handler)

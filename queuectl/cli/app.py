"""What every ``queuectl`` command shares: the store it talks to and how it prints.

The store is opened lazily, once per invocation, as a resource of the root click
context, so ``--help`` and usage errors never touch the database.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncclick as click

if TYPE_CHECKING:
    from queuectl.cli.render import Output
    from queuectl.queue import Queue


class ExitCode:
    OK = 0
    FAILED = 1
    USAGE = 2


@dataclass
class App:
    target: str
    _queue: Queue | None = field(default=None)

    async def queue(self, *, create: bool = True) -> Queue:
        """The store, opened once; read-only commands pass ``create=False`` (reference §2.6)."""
        if self._queue is None:
            from queuectl.config import busy_timeout_s
            from queuectl.queue import Queue

            ctx = click.get_current_context().find_root()
            self._queue = await ctx.with_async_resource(
                Queue.open(self.target, busy_timeout_s=busy_timeout_s(), create=create)
            )
            if self._queue.missing:
                click.echo(
                    f"Note: {self._queue.missing}; the first command that writes"
                    " (enqueue, config set, worker start) creates it.",
                    err=True,
                )
        return self._queue


pass_app = click.make_pass_decorator(App)


class Duration(click.ParamType[float]):
    """Seconds or a duration with one unit (``90s``, ``15m``, ``2h``, ``7d``, ``1.5h``).

    A bad value is the request's failure (one ``Error:`` line naming the option,
    exit 1), like a bad duration in a job's JSON, not click's usage error.
    """

    name = "duration"

    def __init__(self, *, allow_zero: bool = True, lo: float = 0.0) -> None:
        self.allow_zero = allow_zero
        self.lo = lo

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        from queuectl.durations import parse_seconds
        from queuectl.exceptions import InvalidOption

        if isinstance(value, float):
            return value
        try:
            return parse_seconds(value, allow_zero=self.allow_zero, lo=self.lo)
        except ValueError as exc:
            name = max(param.opts, key=len) if param is not None and param.opts else "value"
            raise InvalidOption(f"{name} {exc}") from None


def output() -> Output:
    from queuectl.cli.render import Output

    return Output()


def echo_json(document: Any) -> None:
    from queuectl.records import print_json

    print_json(document)


def stderr_is_terminal() -> bool:
    # Mirrors progress.stderr_is_terminal without importing rich on the fast path.
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"

"""``status --watch``: a live view of the queue, refreshed until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from rich.live import Live

from queuectl.queue import Queue
from queuectl.render import Output, status_view
from queuectl.signals import on_signals


async def watch_status(queue: Queue, interval_s: float) -> None:
    stop = asyncio.Event()

    def stop_watching(_: signal.Signals) -> None:
        stop.set()

    out = Output(tty=True)
    with on_signals(stop_watching), Live(screen=True, auto_refresh=False) as live:
        while not stop.is_set():
            out.now = queue.clock()
            live.update(status_view(out, await queue.status()), refresh=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()

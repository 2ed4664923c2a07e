"""Signal handlers that only set flags (via a callback) and are always restored.

Handlers run on the event loop (``loop.add_signal_handler``), never inside a
transaction or a half-written state. They are skipped off the main thread, where
Python cannot install them, so an embedded worker just runs without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_signals(
    callback: Callable[[signal.Signals], None], signals: Sequence[signal.Signals] = STOP_SIGNALS
) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, callback, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

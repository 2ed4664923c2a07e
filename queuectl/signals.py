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

#: SIGHUP is what closing the terminal sends: a stop, like SIGTERM (reference §5.7). A
#: SIGHUP that was ignored when we started (``nohup``) stays ignored.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def on_signals(
    callback: Callable[[signal.Signals], None], signals: Sequence[signal.Signals] = STOP_SIGNALS
) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    signals = [s for s in signals if not (s == signal.SIGHUP and _ignored(s))]
    for sig in signals:
        loop.add_signal_handler(sig, callback, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _ignored(sig: signal.Signals) -> bool:
    return signal.getsignal(sig) == signal.SIG_IGN

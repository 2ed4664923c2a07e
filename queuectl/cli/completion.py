"""Shell completion of values that only the store knows: job ids.

asyncclick completes commands, options and ``Choice`` values (state names, log
formats) by itself; these callbacks add job ids. They run on every Tab press, so
they read one indexed, bounded query (``Backend.job_ids``), never create a
database that does not exist yet, give up quickly on a locked one, and answer
nothing rather than an error: a completion must never print a traceback into the
user's command line.

Importing this module is cheap (asyncio, the store and asyncclick's completion
machinery load only when the shell asks), so ``enqueue`` does not pay for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from queuectl.config import QueueConfig, key_name, resolve_target
from queuectl.models import JobState

if TYPE_CHECKING:
    import asyncclick as click
    from asyncclick.shell_completion import CompletionItem

    Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]

#: Most ids offered at once; shells show long lists badly anyway.
LIMIT = 50
#: A Tab press waits at most this long for the store.
TIMEOUT_S = 2.0


def job_ids(state: JobState | None = None) -> Completer:
    """A ``shell_complete`` callback: job ids (only those in ``state`` if given)."""

    def complete(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
        from asyncclick.shell_completion import CompletionItem

        target = resolve_target(ctx.find_root().params.get("db"))
        return [CompletionItem(i) for i in fetch_ids(target, incomplete, state)]

    return complete


def fetch_ids(target: str, prefix: str, state: JobState | None = None) -> list[str]:
    """Ids starting with ``prefix``; ``[]`` when the store is missing, locked or broken."""
    if "://" not in target and not Path(target).expanduser().is_file():
        return []  # never create a database just to complete a word
    # asyncclick calls completion callbacks synchronously from inside its running
    # event loop, where asyncio.run cannot nest: read on a short-lived daemon thread
    # (a daemon, so a store that hangs cannot keep the shell waiting past TIMEOUT_S).
    found: list[str] = []

    def read() -> None:
        import asyncio

        with contextlib.suppress(Exception):
            found.extend(asyncio.run(_read_ids(target, prefix, state)))

    thread = threading.Thread(target=read, name="queuectl-complete", daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    return [] if thread.is_alive() else found


async def _read_ids(target: str, prefix: str, state: JobState | None) -> list[str]:
    from queuectl.backends import open_backend
    from queuectl.queue import Queue

    backend = await open_backend(target, busy_deadline_s=TIMEOUT_S / 2)
    try:
        return await Queue(backend).ids_for_completion(prefix, state=state, limit=LIMIT)
    finally:
        await backend.aclose()


def config_keys(_: click.Context, __: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A ``shell_complete`` callback: the settings' names (``max-retries``, …)."""
    from asyncclick.shell_completion import CompletionItem

    names = [key_name(name) for name in QueueConfig.__dataclass_fields__]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]

"""The spool of running commands' output, after a worker died without cleaning up.

A command writes straight into its spool file (``executor``); the worker that ran
it reads the tail back and removes the file when the attempt ends. After ``kill -9``
of that worker, nobody does: the attempt's output would be lost while the file
stays on disk, and such files would pile up. So:

* the worker that recovers a lost attempt on the same host keeps the tail of its
  spool in the attempt (``logs`` and ``show`` then have it) and removes the file;
* a starting worker removes spool files that no registered worker owns (each file
  is named after the worker that wrote it), once recovery has removed the dead ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path

from queuectl import procs
from queuectl.backends import Backend
from queuectl.exceptions import BackendError
from queuectl.executor import read_spool_tail
from queuectl.models import LostAttempt

log = logging.getLogger("queuectl.worker")


def spool_name(worker_id: str, slot: int, seq: int) -> str:
    """The spool file of one attempt: its worker's id first, for ``sweep``."""
    return f"{worker_id}-{slot}-{seq}.out"


async def salvage(backend: Backend, lost: Sequence[LostAttempt], *, limit: int) -> int:
    """Keep the output tail of each lost attempt of this host, then remove its spool.

    Runs after ``recover`` committed (the orphaned processes were killed before), so
    nothing writes to the files any more. Returns how many outputs were kept.
    """
    kept = 0
    for item in lost:
        if item.host != procs.HOST or not item.log_path:
            continue
        found = read_spool_tail(item.log_path, limit)
        if found is None:
            continue
        output, size = found
        try:
            if await backend.keep_lost_output(item.job_id, item.token, output, size):
                kept += 1
        except BackendError as exc:
            log.warning("%s: could not keep the lost attempt's output: %s", item.job_id, exc)
            continue
        with contextlib.suppress(OSError):
            os.unlink(item.log_path)
    return kept


def sweep(folder: Path, owners: Collection[str]) -> int:
    """Remove the spool files in ``folder`` of workers not in ``owners``; how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        worker_id, dash, rest = entry.name.partition("-")
        if not (dash and rest.endswith(".out")) or worker_id in owners:
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed += 1
    return removed

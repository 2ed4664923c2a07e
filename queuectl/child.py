"""One worker process of ``worker start --processes P``: the child's own entry point.

The parent (``queuectl.parent``, see ``queuectl.supervisor``) spawns ``python -P
-c 'from queuectl.child import main; main()' OPTIONS LOG``, not
``multiprocessing``: no re-import of the parent's main module (the CLI), no
pickling machinery and no resource-tracker process (issue 15: children that start
fast and cost little memory). The child imports the worker and its store, nothing
of the CLI, and for a SQLite file nothing of OpenSSL (``main``).

``OPTIONS`` is a JSON object of ``WorkerOptions`` fields, ``LOG`` the JSON pair
``[level, format]`` of ``queuectl.logs.setup_logging``.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any


def command(options: dict[str, Any], log_setup: tuple[int, str]) -> list[str]:
    """The argv that runs one child with these options (see the module docstring)."""
    from pathlib import Path

    # -P: never the parent's working folder on sys.path; the folder that holds this
    # package goes last, for a queuectl run from a source tree without installing.
    root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.append({root!r}); from queuectl.child import main; main()"
    return [sys.executable, "-P", "-c", code, json.dumps(options), json.dumps(list(log_setup))]


def main(argv: Sequence[str] | None = None) -> None:
    """Run one worker until it stops; exit with its code (1 on an error it logged)."""
    args = sys.argv[1:] if argv is None else list(argv)
    fields = json.loads(args[0])
    if fields.get("ignore_sigint"):
        # The parent starts us with SIGINT and SIGHUP blocked: a ^C or a hang-up
        # while we import is discarded here, not a KeyboardInterrupt mid-import.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGHUP})
    if "://" not in fields["target"]:
        # A worker of a SQLite file speaks no TLS and needs no OpenSSL hash, but
        # asyncio imports ssl and secrets imports hmac, which load libssl and
        # libcrypto: 5 MiB of every child's RSS (issue 15). Without them asyncio
        # runs without TLS support and hashlib uses CPython's builtin hashes, as
        # on a Python built without OpenSSL. (A PostgreSQL URL may need both.)
        for name in ("ssl", "_hashlib"):
            if name not in sys.modules:
                sys.modules[name] = None  # type: ignore[assignment]  # import fails
    # The same import-time economy as queuectl.entry: what the imports build lives
    # as long as the process.
    gc.disable()
    try:
        import asyncio
        import logging

        from queuectl.logs import setup_logging
        from queuectl.options import WorkerOptions
        from queuectl.worker import run_worker
    finally:
        gc.freeze()
        gc.enable()
    fields["queues"] = tuple(fields.get("queues", ()))
    options = WorkerOptions(**fields)
    level, log_format = json.loads(args[1])
    setup_logging(level, log_format)
    try:
        code = asyncio.run(run_worker(options))
    except Exception as exc:
        logging.getLogger("queuectl.worker").error("worker failed: %s", exc)
        code = 1
    sys.exit(code)

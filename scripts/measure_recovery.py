#!/usr/bin/env python3
"""Measure the time from ``kill -9`` of a worker to its job running again.

Two cases, each run N times on a fresh database with the default settings
(lease 10 s, reap-interval 2 s, backoff-base 2, so the retry waits 2 s):

* ``peer``: a second, idle worker runs on the same host; it notices the dead pid.
* ``restart``: no other worker; the dead one is started again at once.

Prints the median, min and max of: kill → job recovered (no longer ``processing``
under the dead worker's claim) and kill → the command running again.

    python scripts/measure_recovery.py [--runs 5] [--mode peer|restart|both]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import QUEUECTL, median, queuectl_env, run, spawn, stop_group, wait_for


def _cli(db: Path, *args: str) -> str:
    return run([QUEUECTL, *args], env=queuectl_env(db), timeout=60).stdout.decode()


def _worker(db: Path) -> subprocess.Popen[Any]:
    return spawn(
        [QUEUECTL, "worker", "start"],
        env=queuectl_env(db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(predicate: Callable[[], object], what: str) -> None:
    wait_for(predicate, 60.0, what, step=0.005)


def _recovered(db: Path) -> bool:
    conn = sqlite3.connect(db, timeout=5)
    try:
        row = conn.execute("SELECT state, claims FROM jobs WHERE id = 'probe'").fetchone()
    finally:
        conn.close()
    return bool(row[0] != "processing" or row[1] > 1)


def one_run(mode: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="queuectl-recovery-") as tmp:
        folder = Path(tmp)
        db = folder / "queue.db"
        command = f"echo $$ > {folder}/pid.$QUEUECTL_ATTEMPT; exec sleep 300"
        _cli(db, "enqueue", json.dumps({"id": "probe", "command": command}))
        procs = [_worker(db)]
        try:
            _wait((folder / "pid.1").exists, "the job to start")
            if mode == "peer":
                procs.append(_worker(db))
                _wait(
                    lambda: len(json.loads(_cli(db, "worker", "list", "--json"))) == 2,
                    "the second worker",
                )
            procs[0].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            procs[0].wait()
            if mode == "restart":
                procs.append(_worker(db))
            _wait(lambda: _recovered(db), "the job to be recovered")
            recovered = time.monotonic() - killed
            _wait((folder / "pid.2").exists, "the job to run again")
            rerun = time.monotonic() - killed
        finally:
            for proc in procs:
                stop_group(proc)
            for pid_file in folder.glob("pid.*"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
        return recovered, rerun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mode", choices=["peer", "restart", "both"], default="both")
    args = parser.parse_args()
    modes = ["peer", "restart"] if args.mode == "both" else [args.mode]
    for mode in modes:
        results = [one_run(mode) for _ in range(args.runs)]
        for label, values in (
            ("kill -9 -> recovered", [r[0] for r in results]),
            ("kill -9 -> running again", [r[1] for r in results]),
        ):
            print(
                f"{mode:8} {label:26} median {median(values):6.2f} s"
                f"  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
            )


if __name__ == "__main__":
    main()

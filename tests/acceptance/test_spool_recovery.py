"""Output of an attempt whose worker was killed with ``kill -9`` (issue 11).

The command wrote into its spool file; the worker that recovers the attempt on the
same host keeps the tail in the attempt and removes the file, and a starting
worker removes spool files that no registered worker owns.
"""

from __future__ import annotations

import signal
from pathlib import Path

from queuectl.config import spool_dir
from tests.helpers import (
    WorkerProcess,
    enqueue_lines,
    job_record,
    run_cli,
    set_config,
    wait_for,
)


def test_kill9_keeps_the_output_and_leaves_no_spool_file(db: str, tmp_path: Path) -> None:
    started = tmp_path / "started"
    set_config(db, lease=60, backoff_base=1, output_limit=20)
    command = f"echo line-one; printf '%s\\n' 0123456789abcdef; touch {started}; sleep 600"
    enqueue_lines(db, [{"id": "long", "command": command, "max_retries": 0}])
    spool = spool_dir(db)
    with WorkerProcess(db) as first:
        wait_for(started.exists, timeout=30)
        assert len(list(spool.glob("*.out"))) == 1
        first.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        first.wait()
    # A file of a worker long gone: no registered worker owns it.
    (spool / "deadbeef-0-1.out").write_bytes(b"old")
    with WorkerProcess(db, "--burst") as second:
        assert second.wait(timeout=60) == 0
    record = job_record(db, "long")
    assert record["state"] == "dead", record
    [lost] = record["history"]
    assert lost["outcome"] == "lost"
    assert lost["output_size"] == len("line-one\n0123456789abcdef\n")
    assert lost["output_truncated"] is True
    logs = run_cli(db, "logs", "long")
    assert logs.stdout == "line-one\n0123456789abcdef\n"[-20:], logs.stderr
    assert list(spool.glob("*")) == []

"""Output faults with the real worker: huge, unterminated, binary, and held-open output.

Reference §4.7 keeps the last ``output-limit`` bytes of each attempt; the worker's
memory must stay flat whatever a command prints, and a background grandchild
that keeps stdout open must not hang the worker once the shell has exited.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    QUEUECTL,
    WorkerProcess,
    cli_env,
    enqueue_lines,
    job_record,
    kill_pids,
    pid_alive,
    read_pids,
    vm_hwm_kib,
    wait_for,
)

LIMIT = 65536

#: About the worker's output handling, not the store: PostgreSQL's run is ``slow``.
pytestmark = pytest.mark.slow_on_postgres


def _logs(db: Path, job_id: str) -> bytes:
    result = subprocess.run(
        [QUEUECTL, "logs", job_id], env=cli_env(db), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _done(db: Path, *job_ids: str) -> bool:
    return all(job_record(db, j)["state"] == "completed" for j in job_ids)


def test_huge_unterminated_and_binary_output_keep_memory_flat_and_the_tail(
    db_path: Path, tmp_path: Path
):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 1200 + b"\x00\xff\x80 end")
    enqueue_lines(
        db_path,
        [
            {"id": "yes", "command": "yes | head -c 200000000"},
            {"id": "line", "command": "head -c 10000000 /dev/zero | tr '\\0' a"},
            {"id": "binary", "command": f"cat {blob}"},
        ],
    )
    with WorkerProcess(db_path, log=tmp_path / "w.log") as worker:
        wait_for(lambda: _done(db_path, "yes", "line", "binary"), timeout=120)
        peak_kib = vm_hwm_kib(worker.pid)
    assert peak_kib < 100 * 1024, f"worker peak RSS {peak_kib} KiB"
    expected = {
        "yes": (200_000_000, b"y\n" * (LIMIT // 2)),
        "line": (10_000_000, b"a" * LIMIT),
        "binary": (blob.stat().st_size, blob.read_bytes()[-LIMIT:]),
    }
    for job_id, (size, tail) in expected.items():
        attempt = job_record(db_path, job_id)["history"][0]
        assert attempt["output_size"] == size, (job_id, attempt)
        assert attempt["output_truncated"] is True, (job_id, attempt)
        assert _logs(db_path, job_id) == tail, job_id


def test_a_grandchild_holding_stdout_open_does_not_hang_the_worker(db_path: Path, tmp_path: Path):
    pids = tmp_path / "grandchild"
    command = f"sleep 300 & echo $! > {pids}; echo parent done"
    enqueue_lines(db_path, [{"id": "bg", "command": command}, {"id": "next", "command": "true"}])
    try:
        with WorkerProcess(db_path, log=tmp_path / "w.log"):
            started = time.monotonic()
            wait_for(lambda: _done(db_path, "bg", "next"), timeout=30)
            took = time.monotonic() - started
        # The sleep would hold stdout for 300 s; the shell exited at once.
        assert took < 60
        assert _logs(db_path, "bg") == b"parent done\n"
        assert all(pid_alive(p) for p in read_pids(pids))
    finally:
        kill_pids(read_pids(pids))

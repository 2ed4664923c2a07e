"""``kill -9`` of a worker process while it runs a dependency's job (reference §19.1, §5.6).

The job's end and its dependents' release (or cancellation) are one transaction, and
the recovery of a lost attempt is such an end too. So when a worker dies mid-job, the
worker that recovers the job releases its dependents once it completes, or cancels
them once it ends ``dead``: none is left waiting, none runs twice, and the counts of
unmet dependencies never go below zero (a second release would).

The recovering worker starts on the same host, so it sees the dead worker's pid gone
and recovers at once: the lease is long (60 s) and plays no part, which keeps the
test fast on both stores.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_crash_recovery import marks  # noqa: F401 - the fixture
from tests.helpers import (
    WorkerProcess,
    assert_no_overlap,
    db_rows,
    enqueue_lines,
    job_record,
    marked,
    pid_alive,
    read_executions,
    read_pids,
    set_config,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

#: Attempt 1 blocks (its pid and its grandchild's are written down); later attempts
#: finish at once.
BLOCKS_FIRST = marked(
    'echo $$ >> "$MARKS/shells"; '
    'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then '
    'sleep 300 & echo $! >> "$MARKS/grandchildren"; wait; fi; '
    'echo "done $QUEUECTL_ATTEMPT"'
)
#: A dependent: it only leaves its execution markers.
QUICK = marked("true")
FINISHED = ("completed", "dead", "cancelled")


def _worker(db: Path | str, marks: Path, *args: str, name: str) -> WorkerProcess:  # noqa: F811
    return WorkerProcess(db, *args, env={"MARKS": str(marks)}, log=marks.parent / f"{name}.log")


def _unfinished(db: Path | str) -> int:
    """Jobs not yet ended, read straight from the store (cheap to poll; the assertions
    go through the CLI)."""
    [row] = db_rows(db, "SELECT count(*) FROM jobs WHERE state NOT IN (?, ?, ?)", *FINISHED)
    return int(row[0])


def _dep_rows(db: Path | str) -> tuple[dict[str, int], list[Any]]:
    unmet = {r[0]: int(r[1]) for r in db_rows(db, "SELECT id, unmet FROM jobs")}
    edges = list(db_rows(db, "SELECT job_id, depends_on, met FROM job_deps"))
    return unmet, edges


def test_kill9_mid_dependency_releases_or_cancels_each_dependent_once(
    db_path: Path | str,
    marks: Path,  # noqa: F811 - the fixture imported above
) -> None:
    set_config(db_path, lease=60, reap_interval=0.5, backoff_base=1)
    enqueue_lines(
        db_path,
        [
            # Recovered, retried, completed: its chain runs, once each.
            {"id": "build", "command": BLOCKS_FIRST, "max_retries": 1},
            {"id": "test", "command": QUICK, "after": "build"},
            {"id": "deploy", "command": QUICK, "after": "test"},
            # Recovered as its last attempt: dead. Its dependents are cancelled, down
            # the chain; the one that waits for any end runs.
            {"id": "migrate", "command": BLOCKS_FIRST, "max_retries": 0},
            {"id": "seed", "command": QUICK, "after": "migrate"},
            {"id": "report", "command": QUICK, "after": "seed"},
            {"id": "cleanup", "command": QUICK, "after": "migrate", "after_mode": "finished"},
        ],
    )
    with _worker(db_path, marks, "--count", "2", name="a") as a:
        wait_for(lambda: len(read_pids(marks / "grandchildren")) == 2)
        doomed = read_pids(marks / "shells") + read_pids(marks / "grandchildren")
        assert {job_record(db_path, j)["state"] for j in ("build", "migrate")} == {"processing"}
        a.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        a.wait()
    # Nothing moves while no worker runs: the dependents still wait.
    assert [job_record(db_path, j)["state"] for j in ("test", "seed", "cleanup")] == ["pending"] * 3

    ids = ("build", "test", "deploy", "migrate", "seed", "report", "cleanup")
    with _worker(db_path, marks, "--count", "2", name="b") as b:
        wait_for(lambda: _unfinished(db_path) == 0, timeout=60)
        assert "killed the orphaned process group" in b.output()
    assert not any(pid_alive(p) for p in doomed)
    jobs = {j: job_record(db_path, j) for j in ids}
    state = {j: r["state"] for j, r in jobs.items()}
    assert state == {
        "build": "completed",
        "test": "completed",
        "deploy": "completed",
        "migrate": "dead",
        "seed": "cancelled",
        "report": "cancelled",
        "cleanup": "completed",
    }
    # The lost attempts were counted as such.
    assert [h["outcome"] for h in jobs["build"]["history"]] == ["lost", "completed"]
    assert [h["outcome"] for h in jobs["migrate"]["history"]] == ["lost"]
    # Each released dependent ran exactly once, after what it waited for had ended.
    for j in ("test", "deploy", "cleanup"):
        assert [h["outcome"] for h in jobs[j]["history"]] == ["completed"], jobs[j]
    runs = assert_no_overlap(marks)
    count = {j: sum(r.job_id == j for r in runs) for j in ids}
    assert count == {
        "build": 2, "test": 1, "deploy": 1, "migrate": 1, "seed": 0, "report": 0, "cleanup": 1
    }  # fmt: skip
    started = {r.job_id: r.start for r in read_executions(marks) if r.job_id != "build"}
    build_end = max(r.end or 0 for r in runs if r.job_id == "build")
    assert build_end <= started["test"] <= started["deploy"]
    # The cancelled ones name the job that did not complete, and never ran.
    assert jobs["seed"]["history"] == [] and jobs["report"]["history"] == []
    assert "dependency migrate" in jobs["seed"]["last_error"]
    # Released once: no count of unmet dependencies went below zero, and the jobs that
    # ran wait for nothing.
    unmet, edges = _dep_rows(db_path)
    assert min(unmet.values()) >= 0, unmet
    assert all(unmet[j] == 0 for j in ("test", "deploy", "cleanup")), unmet
    met = {(e[0], e[1]): bool(e[2]) for e in edges}
    assert met[("test", "build")] and met[("deploy", "test")] and met[("cleanup", "migrate")]

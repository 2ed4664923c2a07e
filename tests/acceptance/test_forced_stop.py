"""Forced stop (reference §5.7): the second signal or ``worker stop --now``.

Every running command's process group gets SIGTERM, then SIGKILL after
``kill-grace``; the jobs go back to ``pending`` at once without using up an
attempt (their history says ``interrupted``); the worker exits 0 promptly and
leaves no process behind. The commands trap TERM and start a grandchild that
ignores it, so only the SIGKILL after the grace can end them.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    WorkerProcess,
    enqueue_lines,
    job_record,
    kill_pids,
    pid_alive,
    read_pids,
    run_cli,
    set_config,
    wait_for,
)

STUBBORN = (
    'trap \'echo "$QUEUECTL_JOB_ID" >> "$MARKS/termed"\' TERM; '
    'echo $$ >> "$MARKS/pids"; '
    '(trap "" TERM; exec sleep 300) & echo $! >> "$MARKS/pids"; '
    "while :; do sleep 0.2; done"
)
GRACE = 3.0

#: Each case waits out a kill grace: on PostgreSQL they run in the ``slow`` session
#: (``worker stop --now`` on PostgreSQL is also in test_cli_workers and test_many_hosts).
pytestmark = pytest.mark.slow_on_postgres


@pytest.fixture
def marks(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "marks"
    folder.mkdir()
    yield folder
    kill_pids(read_pids(folder / "pids"))


def _second_signal(sig: int, processes: int = 1) -> Callable[[WorkerProcess, Path], None]:
    """The second signal once every worker process took the first: a process that
    has not run since the first one was sent would still have it pending, and the
    kernel merges a signal into one that is pending (so would a person's second
    Ctrl-C typed before each process said it is stopping)."""

    def stop(worker: WorkerProcess, db: Path) -> None:
        worker.signal(sig)
        wait_for(lambda: worker.output().count("stopping: no new jobs") >= processes)
        worker.signal(sig)

    return stop


def _stop_now(worker: WorkerProcess, db: Path) -> None:
    result = run_cli(db, "worker", "stop", "--now")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Stopped "), result.stdout


@pytest.mark.parametrize(
    ("how", "args"),
    [
        pytest.param(_second_signal(signal.SIGINT), (), id="second-sigint"),
        pytest.param(_second_signal(signal.SIGTERM), (), id="second-sigterm"),
        pytest.param(_stop_now, (), id="stop-now"),
        pytest.param(_stop_now, ("--processes", "2"), id="stop-now-processes"),
        pytest.param(
            _second_signal(signal.SIGTERM, processes=2),
            ("--processes", "2"),
            id="sigterm-processes",
        ),
    ],
)
def test_forced_stop_kills_groups_and_refunds_the_attempt(
    db_path: Path,
    marks: Path,
    how: Callable[[WorkerProcess, Path], None],
    args: tuple[str, ...],
):
    set_config(db_path, kill_grace=GRACE)
    enqueue_lines(
        db_path,
        [{"id": f"stubborn-{i}", "command": STUBBORN, "max_retries": 0} for i in (1, 2)],
    )
    worker = WorkerProcess(
        db_path, "--count", "2", *args, env={"MARKS": str(marks)}, log=marks.parent / "w.log"
    )
    with worker:
        wait_for(lambda: len(read_pids(marks / "pids")) == 4)
        pids = read_pids(marks / "pids")
        asked = time.monotonic()
        how(worker, db_path)
        code = worker.wait(timeout=GRACE + 30)
        took = time.monotonic() - asked
        log = worker.output()
    assert code == 0, log
    # TERM first (the traps ran), and the ignored-TERM grandchildren needed the KILL
    # that only comes after the grace.
    assert sorted((marks / "termed").read_text().split()) == ["stubborn-1", "stubborn-2"]
    assert took >= GRACE - 0.2, took
    # Promptly: one grace, not one for the leader and another for its group (the
    # killed grandchildren linger as zombies until init reaps them).
    assert took < 2 * GRACE - 0.5, took
    assert not [p for p in pids if pid_alive(p)]
    assert "Traceback" not in log
    for job_id in ("stubborn-1", "stubborn-2"):
        record = job_record(db_path, job_id)
        assert record["state"] == "pending", record
        assert record["attempts"] == 0, record
        assert [h["outcome"] for h in record["history"]] == ["interrupted"]
    # Refunded: with max_retries 0 the job still has its one attempt.
    workers_gone = run_cli(db_path, "worker", "list", "--json")
    assert workers_gone.stdout.strip() == "[]"


def test_a_rerun_after_a_forced_stop_is_attempt_2_everywhere(db_path: Path, marks: Path):
    """Every run of the command is an attempt, numbered as the history numbers it.

    The log, ``$QUEUECTL_ATTEMPT``, ``show``, ``logs --attempt`` and the JSON log
    all call the rerun attempt 2; the interrupted run is not counted against
    ``max_retries``, which the log and ``attempts`` say separately.
    """
    set_config(db_path, kill_grace=0.5)
    command = (
        'echo "run $QUEUECTL_ATTEMPT"; '
        'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then echo $$ >> "$MARKS/pids"; exec sleep 300; fi'
    )
    enqueue_lines(db_path, [{"id": "again", "command": command, "max_retries": 1}])
    with WorkerProcess(db_path, env={"MARKS": str(marks)}, log=marks.parent / "w.log") as first:
        wait_for(lambda: read_pids(marks / "pids"))
        _stop_now(first, db_path)
        assert first.wait(timeout=30) == 0, first.output()
    rerun = run_cli(
        db_path, "worker", "start", "--burst", "--log-format", "json", env={"MARKS": str(marks)}
    )
    assert rerun.returncode == 0, rerun.stderr
    lines = [json.loads(line) for line in rerun.stderr.splitlines()]
    done = next(line for line in lines if line.get("action") == "job_completed")
    assert (done["attempt"], done["attempts"], done["max_attempts"]) == (2, 1, 2), done
    assert "(attempt 2 (1/2 counted), slot 0)" in done["msg"]

    record = job_record(db_path, "again")
    assert (record["state"], record["attempts"]) == ("completed", 1)
    history = [(h["attempt"], h["outcome"]) for h in record["history"]]
    assert history == [(1, "interrupted"), (2, "completed")]
    for attempt in ("1", "2"):
        logs = run_cli(db_path, "logs", "again", "--attempt", attempt)
        assert logs.stdout == f"run {attempt}\n", logs
    shown = run_cli(db_path, "show", "again").stdout
    assert re.search(r"^1\s.*interrupted", shown, re.MULTILINE), shown
    assert re.search(r"^2\s.*exit 0", shown, re.MULTILINE), shown

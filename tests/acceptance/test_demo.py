"""The README's first command ends in ``scripts/demo.sh``: it must keep working.

The demo runs with the installed ``queuectl`` first on ``PATH`` and the test's own
store in ``QUEUECTL_DB`` (the script honours it), so it runs on both stores, and
the test can read back what the demo did instead of trusting its printout.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import QUEUECTL, cli_env, cli_json, iso_ms

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


def run_demo(db: Path | str) -> subprocess.CompletedProcess[str]:
    env = cli_env(db)
    env["PATH"] = f"{Path(QUEUECTL).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        ["bash", str(DEMO)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the demo hung:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow_on_postgres
def test_demo_walks_scenarios_a_chain_and_a_schedule_then_status(db_path: Path | str) -> None:
    demo = run_demo(db_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr
    out = demo.stdout
    assert "Success in Parallel" in out

    # What the demo did, read back from the store.
    def show(job_id: str) -> Any:
        return cli_json(db_path, "show", job_id)

    assert show("S1-success")["state"] == "completed"
    # S2-fail went dead, was retried from the DLQ, and went dead again.
    s2 = show("S2-fail")
    assert s2["state"] == "dead"
    assert [h["exit_code"] for h in s2["history"]] == [1, 1, 1, 1]
    assert show("job1")["state"] == "completed"
    a, b = (show(j)["history"][0] for j in ("S3-A", "S3-B"))
    assert iso_ms(a["started_at"]) < iso_ms(b["finished_at"])
    assert iso_ms(b["started_at"]) < iso_ms(a["finished_at"])
    assert (show("build")["state"], show("lint")["state"]) == ("completed", "dead")
    # The chain: app-test failed once and passed on its retry, and app-deploy ran only
    # after app-test had completed (and app-test after app-build).
    build, test, deploy = (show(j) for j in ("app-build", "app-test", "app-deploy"))
    assert (build["state"], test["state"], deploy["state"]) == ("completed",) * 3
    assert [h["exit_code"] for h in test["history"]] == [1, 0]
    assert test["attempts"] == 2 and deploy["attempts"] == 1
    assert (test["after"], deploy["after"]) == (["app-build"], ["app-test"])
    [deployed] = deploy["history"]
    assert iso_ms(test["history"][-1]["finished_at"]) <= iso_ms(deployed["started_at"])
    assert iso_ms(build["history"][0]["finished_at"]) <= iso_ms(test["history"][0]["started_at"])
    assert "pending (waiting)" in out and "[waiting_for]" in out
    # The schedule fired once, by `schedule run`, and a worker ran its job.
    [nightly] = cli_json(db_path, "schedule", "list")
    assert nightly["last_job_id"].startswith("nightly@")
    assert show(nightly["last_job_id"])["state"] == "completed"

    # It ends with `queuectl status`, whose counts match the store's.
    last = out[out.rindex("$ queuectl status") :]
    counts = cli_json(db_path, "status")["jobs"]
    assert counts == {
        "pending": 0,
        "processing": 0,
        "completed": 9,
        "failed": 0,
        "dead": 2,
        "cancelled": 0,
    }
    for state, n in counts.items():
        assert any(line.split()[:2] == [state, str(n)] for line in last.splitlines()), last

    # Then it says how to open the dashboard over the same database.
    assert f"QUEUECTL_DB={db_path} queuectl web" in out
    assert "http://127.0.0.1:8787/" in out

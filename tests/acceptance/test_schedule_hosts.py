"""A ``* * * * *`` schedule under real worker processes makes one job per minute (reference §19.2).

In real time (a minute is a minute): on PostgreSQL, three worker processes of one
host (``--processes 3``) and a second simulated host (``QUEUECTL_HOST``) race for
every fire time; on SQLite, three worker processes. For three fire times (issue 12:
three minutes, three jobs) each store must hold exactly one job per fire time, made
within a second of it, and the workers' logs must say so once each. About 130 to
185 seconds.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from queuectl import cron, procs
from tests import pg
from tests.acceptance.test_many_hosts import Host, hosts  # noqa: F401 - the fixture
from tests.helpers import cli_json, iso_ms, run_cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]


def _processes(db: Path | str) -> int:
    return len(cli_json(db, "worker", "list"))


def _jobs(db: Path | str) -> list[dict[str, Any]]:
    return sorted(cli_json(db, "list", "--limit", "0"), key=lambda j: j["id"])


def test_workers_on_two_hosts_make_one_job_per_minute(
    pg_schema: pg.Schema,
    hosts: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    url = pg_schema.url
    lite = tmp_path / "queue.db"
    workers: list[Host] = [
        hosts("host-a", "--processes", "3", "--count", "3"),
        hosts("host-b", "--count", "2"),
    ]
    local = Host(procs.HOST, str(lite), tmp_path, "--processes", "3", "--count", "3")
    # The SQLite store must exist before three processes race to create it.
    assert run_cli(lite, "status").returncode == 0
    workers.append(local.start())
    try:
        wait_for(lambda: _processes(url) == 4 and _processes(lite) == 3, timeout=60)
        for db in (url, lite):
            added = run_cli(
                db, "schedule", "add", "tick", "--cron", "* * * * *", "--tz", "UTC", "-c", "true"
            )
            assert added.returncode == 0, added.stderr
        first = (int(time.time()) // 60 + 1) * 60_000
        fires = [first + 60_000 * i for i in range(3)]
        # Wait for the three fire times (and their jobs to run), then stop before the next.
        time.sleep(max(fires[-1] / 1000 - time.time(), 0))
        for db in (url, lite):
            wait_for(
                lambda db=db: (
                    len(_jobs(db)) == len(fires)
                    and all(j["state"] == "completed" for j in _jobs(db))
                ),
                timeout=20,
            )
    finally:
        local.stop()
    expected = [cron.job_id("tick", f) for f in fires]
    for db in (url, lite):
        jobs = _jobs(db)
        assert [j["id"] for j in jobs] == expected, jobs
        for job, fire in zip(jobs, fires, strict=True):
            late = iso_ms(job["created_at"]) - fire
            print(f"{'postgres' if db == url else 'sqlite'}: {job['id']} made {late} ms late")
            assert 0 <= late <= 1000, (job["id"], late)
        [schedule] = cli_json(db, "schedule", "list")
        assert (schedule["skipped"], schedule["last_job_id"]) == (0, expected[-1])
    # Every fire time was made by exactly one worker process, on one host.
    logs = "".join(w.log() for w in workers)
    made = re.findall(r"schedule tick made (tick@\S+)", logs)
    assert sorted(made) == sorted(expected * 2), made

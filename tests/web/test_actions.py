"""The job and schedule actions over a real store, through the ASGI app.

Each action is one ``Queue`` call: the tests check the store afterwards, the one log
line, the browser's redirect with its message, and a script's JSON with its status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest

from queuectl.models import JobState
from queuectl.queue import Queue
from tests.helpers import WorkerProcess, pid_alive, run_worker, wait_for, wait_for_file
from tests.web.conftest import ClientFactory

pytestmark = pytest.mark.timeout(120)
JSON = {"accept": "application/json"}


async def test_cancel_retry_and_rm_buttons_follow_the_state(
    db: str, queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue(
        {"id": "waits", "command": "true", "queue": "later"},
        {"id": "dies", "command": "exit 1", "max_retries": 0},
    )
    assert run_worker(db, "--queue", "default").returncode == 0
    jobs = (await client.get("/jobs")).text
    assert jobs.count('data-action="cancel"') == 1 and jobs.count('data-action="retry"') == 1
    assert 'data-action="retry"' in (await client.get("/jobs/dies")).text
    page = (await client.get("/jobs/waits")).text
    assert 'data-action="cancel"' in page and 'data-action="rm"' in page
    assert 'data-action="retry"' not in page
    cancelled = await client.post(
        "/actions/cancel", data={"id": "waits", "state": "pending", "next": "/jobs/waits"}
    )
    assert cancelled.status_code == 303 and cancelled.headers["location"] == "/jobs/waits"
    page = (await client.get("/jobs/waits")).text
    assert "1 job(s) cancelled." in page
    assert 'class="state state-cancelled"' in page
    assert 'data-action="retry"' in page and 'data-action="cancel"' not in page
    # The lists and the overview know the sixth state.
    assert 'data-count="cancelled">1<' in (await client.get("/")).text
    listed = (await client.get("/jobs?state=cancelled")).text
    assert 'data-id="waits"' in listed and '<option value="cancelled" selected>' in listed


async def test_each_action_changes_the_store_and_logs_one_line(
    db: str, queue: Queue, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue(
        {"id": "c1", "command": "true"},
        {"id": "d1", "command": "exit 1", "max_retries": 0},
    )
    assert run_worker(db, "--queue", "default").returncode == 0  # d1 dies, c1 completes
    await queue.enqueue({"id": "p1", "command": "true"})
    caplog.set_level(logging.INFO, logger="queuectl.web")
    cancel = await client.post("/actions/cancel", data={"id": "p1"}, headers=JSON)
    assert cancel.status_code == 200
    assert cancel.json() == {"action": "cancel", "ids": ["p1"], "message": "1 job(s) cancelled."}
    assert (await queue.get("p1")).state is JobState.CANCELLED
    assert "web action cancel: p1 (client 127.0.0.1)" in caplog.text
    retry = await client.post("/actions/retry", data={"id": ["d1", "p1"]}, headers=JSON)
    assert retry.json()["ids"] == ["d1", "p1"]
    assert {(await queue.get(i)).state for i in ("d1", "p1")} == {JobState.PENDING}
    assert "web action retry: d1,p1 (client 127.0.0.1)" in caplog.text
    removed = await client.post("/actions/rm", data={"id": "c1", "next": "/jobs"})
    assert removed.status_code == 303 and removed.headers["location"] == "/jobs"
    assert "1 job(s) removed." in (await client.get("/jobs")).text
    assert "web action rm: c1 (client 127.0.0.1)" in caplog.text
    assert (await client.get("/jobs/c1")).status_code == 404


async def test_stale_unknown_and_refused_actions_change_nothing(
    queue: Queue, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue({"id": "j1", "command": "true"})
    caplog.set_level(logging.INFO, logger="queuectl.web")
    # The page showed j1 as failed; it is pending now: nothing is done.
    stale = await client.post("/actions/rm", data={"id": "j1", "state": "failed"}, headers=JSON)
    assert stale.status_code == 409
    assert stale.json() == {
        "error": "job 'j1' is pending now, not failed as the page showed; look again before acting"
    }
    assert (await queue.get("j1")).state is JobState.PENDING
    assert "web action rm refused: job 'j1' is pending now" in caplog.text
    # A browser gets the same words on the page it came from.
    await client.post("/actions/cancel", data={"id": "j1", "state": "dead", "next": "/jobs"})
    assert (
        "Error: job &#39;j1&#39; is pending now, not dead as the page showed"
        in (await client.get("/jobs")).text
    )
    # The store's own rules: a pending job cannot be retried (409), nor a completed one
    # cancelled; an unknown id is 404, all or nothing.
    await client.post("/actions/retry", data={"id": "j1", "next": "/jobs"})
    said = (await client.get("/jobs")).text
    assert (
        "Error: job &#39;j1&#39; is pending: only dead, cancelled and failed jobs can be"
        " retried; nothing was changed.</p>" in said
    )
    refused = await client.post("/actions/retry", data={"id": "j1"}, headers=JSON)
    assert refused.status_code == 409 and "only dead, cancelled and failed" in refused.text
    unknown = await client.post("/actions/cancel", data={"id": ["j1", "nope"]},
                                headers=JSON)  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["error"].startswith(
        "no job with id 'nope'"
    )
    assert (await queue.get("j1")).state is JobState.PENDING
    for name in ("rm", "retry", "cancel"):
        assert (
            await client.post(f"/actions/{name}", data={"id": "nope"}, headers=JSON)
        ).status_code == 404
        assert (await client.post(f"/actions/{name}", data={}, headers=JSON)).status_code == 400


async def test_read_only_and_cross_site_refuse_every_action(
    queue: Queue, make_client: ClientFactory
) -> None:
    await queue.enqueue({"id": "j1", "command": "true"})
    await queue.schedules.add("nightly", "0 3 * * *", {"command": "echo nightly"}, tz="UTC")
    names = ("cancel", "retry", "rm", "schedule-pause", "schedule-resume", "schedule-run")
    async with make_client(read_only=True) as client:
        for path in ("/jobs", "/jobs/j1", "/schedules"):
            assert "data-action" not in (await client.get(path)).text
        for name in names:
            form = {"id": "j1", "name": "nightly"}
            assert (await client.post(f"/actions/{name}", data=form)).status_code == 405
    async with make_client() as client:
        for name in names:
            answer = await client.post(
                f"/actions/{name}",
                data={"id": "j1", "name": "nightly"},
                headers={"origin": "http://attacker.example", **JSON},
            )
            assert answer.status_code == 403
    assert (await queue.get("j1")).state is JobState.PENDING
    assert not (await queue.schedules.get("nightly")).paused
    assert await queue.counts() == {s: int(s is JobState.PENDING) for s in JobState}


async def test_schedules_page_and_its_actions(
    queue: Queue, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    empty = await client.get("/schedules")
    assert empty.status_code == 200 and "no schedules" in empty.text
    assert 'href="/schedules" aria-current="page"' in empty.text
    assert 'data-watch="schedules"' in empty.text  # its stream has the poller watch them
    assert (await client.get("/events?watch=everything")).status_code == 400
    await queue.schedules.add("nightly", "0 3 * * *", {"command": "backup.sh --all"}, tz="UTC")
    page = (await client.get("/schedules")).text
    head = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    for column in ("NAME", "CRON", "TZ", "NEXT FIRE", "LAST FIRE", "LAST JOB", "SKIPPED",
                   "OVERLAP", "COMMAND"):  # fmt: skip
        assert f">{column}</th>" in head
    assert "<code>0 3 * * *</code>" in page and "backup.sh --all" in page and ">skip<" in page
    caplog.set_level(logging.INFO, logger="queuectl.web")
    paused = await client.post("/actions/schedule-pause", data={"name": "nightly"}, headers=JSON)
    assert paused.json()["message"] == "paused schedule nightly"
    assert (await queue.schedules.get("nightly")).paused
    page = (await client.get("/schedules")).text
    assert '<span class="paused">paused</span>' in page and 'data-action="resume"' in page
    resumed = await client.post("/actions/schedule-resume", data={"name": "nightly"}, headers=JSON)
    assert resumed.json()["message"].startswith("resumed schedule nightly; next fire at ")
    assert not (await queue.schedules.get("nightly")).paused
    run = await client.post("/actions/schedule-run", data={"name": "nightly", "next": "/schedules"})
    assert run.status_code == 303
    made = (await queue.schedules.get("nightly")).last_job_id
    assert made is not None and (await queue.get(made)).command == "backup.sh --all"
    assert f"schedule nightly made job {made}" in (await client.get("/schedules")).text
    assert f"web action schedule-run: nightly,{made} (client 127.0.0.1)" in caplog.text
    for name in ("schedule-pause", "schedule-resume", "schedule-run"):
        missing = await client.post(f"/actions/{name}", data={"name": "nope"}, headers=JSON)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]


@pytest.mark.timeout(90)
async def test_cancel_of_a_running_job_stops_its_process(
    db: str, queue: Queue, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    await queue.enqueue({"id": "long", "command": f"echo $$ > {pid_file}; exec sleep 300"})
    with WorkerProcess(db, "--count", "1"):
        pid = int(wait_for_file(pid_file))
        wait_for(lambda: pid_alive(pid))
        # rm of a running job: refused with the way out, nothing changed.
        refused = await client.post("/actions/rm", data={"id": "long"}, headers=JSON)
        assert refused.status_code == 409
        assert refused.json()["error"].startswith("job 'long' is running: cancel it first")
        page = (await client.get("/jobs/long")).text
        assert "is running: cancel it first" in page and 'data-action="rm-confirm"' not in page
        started = time.monotonic()
        answer = await client.post(
            "/actions/cancel", data={"id": "long", "state": "processing"}, headers=JSON
        )
        assert time.monotonic() - started < 10  # at most the short wait, plus load
        assert answer.status_code == 200
        # Confirmed within the short wait, or still stopping; either way it ends.
        assert answer.json()["message"].startswith(("1 job(s) cancelled.", "0 job(s) cancelled."))
        deadline = time.monotonic() + 20
        while (await queue.get("long")).state is not JobState.CANCELLED:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        wait_for(lambda: not pid_alive(pid))

"""Pages, the JSON API and actions over a real store, through the ASGI app."""

from __future__ import annotations

import html
import logging
import re

import httpx
import pytest

from queuectl.cli.render import Output, jobs_table, workers_table
from queuectl.exceptions import BackendError
from queuectl.models import JobState
from queuectl.queue import Queue
from tests.helpers import cli_json, run_cli, run_worker

pytestmark = pytest.mark.timeout(120)


def headers_of(page: str, table_class: str | None = None) -> list[str]:
    head = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    return [html.unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", head) if h]


def plain_header(renderable: object) -> list[str]:
    text = Output(tty=False).plain(renderable)  # type: ignore[arg-type]
    return re.split(r"\s{2,}", text.splitlines()[0].strip())


async def test_every_page_answers_with_the_terminal_words(
    queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue({"id": "a1", "command": "echo one"}, {"id": "b2", "command": "echo two"})
    overview = (await client.get("/")).text
    for state in JobState:
        assert f'data-count="{state.value}">' in overview
    assert "workers: 0 (in 0 processes)" in overview
    assert "<svg" in overview
    jobs = await client.get("/jobs")
    assert jobs.status_code == 200
    # The same column names as `queuectl list` prints.
    assert headers_of(jobs.text) == plain_header(jobs_table(Output(tty=False), []))
    assert 'href="/jobs/a1"' in jobs.text and "0/4" in jobs.text
    job = await client.get("/jobs/a1")
    assert job.status_code == 200
    for field in ("command", "attempts", "next run", "last error", "exit code"):
        assert f'<th scope="row">{field}</th>' in job.text
    assert "0 of 4 (max retries 3)" in job.text
    assert "no attempts yet" in job.text
    workers = await client.get("/workers")
    assert "no workers running" in workers.text
    dlq = await client.get("/dlq")
    assert dlq.status_code == 200 and "no jobs" in dlq.text
    # The worker table's words, checked against the terminal's header.
    assert plain_header(workers_table(Output(tty=False), [])) == [
        "ID", "HOST", "PID", "STARTED", "HEARTBEAT", "SLOTS", "DONE", "QUEUES"
    ]  # fmt: skip


async def test_finished_job_shows_each_attempt_and_its_output(
    db: str, queue: Queue, client: httpx.AsyncClient
) -> None:
    run_cli(db, "config", "set", "backoff-base", "1")
    await queue.enqueue({"id": "twice", "command": "echo try $QUEUECTL_ATTEMPT; exit 3",
                         "max_retries": 1})  # fmt: skip
    assert run_worker(db).returncode == 0
    page = (await client.get("/jobs/twice")).text
    assert headers_of(page) == ["#", "STARTED", "DURATION", "RESULT", "ERROR", "WORKER", "OUTPUT"]
    assert page.count('result-failed">exit 3<') == 2
    assert "try 1" in page and "try 2" in page
    assert "Attempt 2: output" in page
    assert 'class="state state-dead"' in page


async def test_bad_input_is_a_status_and_one_message(client: httpx.AsyncClient) -> None:
    bad = await client.get("/jobs?state=done")
    assert bad.status_code == 400
    assert "Error: unknown state &#39;done&#39;; choose one of pending" in bad.text
    assert "Traceback" not in bad.text
    api = await client.get("/api/jobs?state=done")
    assert api.status_code == 400
    assert api.json() == {
        "error": "unknown state 'done'; choose one of pending, processing, completed, failed, dead"
    }
    assert (await client.get("/api/jobs?limit=x")).status_code == 400
    assert (await client.get("/jobs?before=ten")).status_code == 400
    missing = await client.get("/jobs/nope")
    assert missing.status_code == 404 and "no job with id &#39;nope&#39;" in missing.text
    assert (await client.get("/api/jobs/nope")).json() == {"error": "no job with id 'nope'"}
    assert (await client.get("/no/such/page")).status_code == 404
    huge = await client.get("/jobs?before=" + "9" * 40)
    assert huge.status_code == 200


async def test_api_has_the_cli_shapes_without_env_values(
    db: str, queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue(
        {"id": "e1", "command": "true", "env": {"TOKEN": "s3cret-value"}, "queue": "mail"},
        {"id": "e2", "command": "false"},
    )
    status = (await client.get("/api/status")).json()
    assert status == cli_json(db, "status")
    listed = (await client.get("/api/jobs", params={"state": "", "queue": "", "limit": ""})).json()
    expected = cli_json(db, "list")
    assert [j["id"] for j in listed] == [j["id"] for j in expected] == ["e2", "e1"]
    expected[1]["env"] = {"TOKEN": "(hidden)"}
    assert listed == expected
    assert (await client.get("/api/jobs?queue=mail")).json()[0]["id"] == "e1"
    assert (await client.get("/api/jobs?limit=1")).json()[0]["id"] == "e2"
    shown = (await client.get("/api/jobs/e1")).json()
    cli_shown = cli_json(db, "show", "e1")
    cli_shown["env"] = {"TOKEN": "(hidden)"}
    assert shown == cli_shown
    for path in ("/jobs/e1", "/jobs", "/api/jobs", "/api/jobs/e1"):
        assert "s3cret-value" not in (await client.get(path)).text


async def test_retry_buttons_move_dead_jobs_and_log_one_line(
    db: str, queue: Queue, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue(
        {"id": "d1", "command": "exit 1", "max_retries": 0, "queue": "q1"},
        {"id": "d2", "command": "exit 1", "max_retries": 0, "queue": "q2"},
        {"id": "d3", "command": "exit 1", "max_retries": 0, "queue": "q2"},
    )
    assert run_worker(db).returncode == 0
    dlq = (await client.get("/dlq")).text
    assert dlq.count('data-action="retry"') == 3
    caplog.set_level(logging.INFO, logger="queuectl.web")
    answer = await client.post("/actions/retry-dead", data={"id": "d1", "next": "/dlq"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dlq"
    assert (await queue.get("d1")).state is JobState.PENDING
    assert "web action retry-dead: d1 (client 127.0.0.1)" in caplog.text
    # The message shows once, on the page the browser comes back to.
    back = await client.get("/dlq")
    assert "1 job(s) moved back to pending." in back.text
    assert "moved back" not in (await client.get("/dlq")).text
    # A stale action: d1 is no longer dead. Nothing changes and the page says why.
    stale = await client.post("/actions/retry-dead", data={"id": "d1", "next": "/dlq"})
    assert stale.status_code == 303
    assert (
        "Error: job &#39;d1&#39; is pending, not dead; only dead jobs can be retried; "
        "nothing was changed." in (await client.get("/dlq")).text
    )
    assert (await queue.get("d1")).state is JobState.PENDING
    # Retry all matching: only queue q2's dead jobs; a script gets JSON.
    matching = await client.post(
        "/actions/retry-dead-matching",
        data={"queue": "q2"},
        headers={"accept": "application/json"},
    )
    assert sorted(matching.json()["ids"]) == ["d2", "d3"]
    assert "web action retry-dead-matching: " in caplog.text
    assert (await queue.counts())[JobState.DEAD] == 0
    refused = await client.post(
        "/actions/retry-dead", data={"id": "d2"}, headers={"accept": "application/json"}
    )
    assert refused.status_code == 409 and "d2" in refused.json()["error"]
    assert (await client.post("/actions/explode", data={})).status_code == 400
    # Only a path of this site is followed back.
    away = await client.post("/actions/retry-dead", data={"id": "x", "next": "//evil.example/"})
    assert away.headers["location"] == "/"


async def test_a_store_that_goes_away_is_a_503_page_then_recovers(
    queue: Queue, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = queue.queue_counts

    async def broken() -> object:
        raise BackendError("database /x/queue.db cannot be read: disk I/O error")

    monkeypatch.setattr(queue, "queue_counts", broken)
    down = await client.get("/")
    assert down.status_code == 503
    assert "Error: database /x/queue.db cannot be read" in down.text
    assert "Traceback" not in down.text
    assert (await client.get("/metrics")).status_code == 503
    monkeypatch.setattr(queue, "queue_counts", real)
    assert (await client.get("/")).status_code == 200


async def test_output_is_text_never_html(db: str, queue: Queue, client: httpx.AsyncClient) -> None:
    evil = "<script>alert(1)</script>"
    await queue.enqueue(
        {"id": "x<b>", "command": f"echo '{evil}'; echo '<img src=x onerror=alert(2)>'"}
    )
    assert run_worker(db).returncode == 0
    for path in ("/jobs", "/jobs/x%3Cb%3E", "/?q=<script>", "/jobs?q=%3Cscript%3E"):
        page = (await client.get(path)).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "<b>" not in page
    page = (await client.get("/jobs/x%3Cb%3E")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "x&lt;b&gt;" in page


async def test_an_unexpected_failure_is_a_500_page_and_one_log_line(
    queue: Queue,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(queue, "live_workers", broken)
    page = await client.get("/workers")
    assert page.status_code == 500
    assert "Error: internal error; the server&#39;s log says more" in page.text
    assert "boom" not in page.text and "Traceback" not in page.text
    api = await client.get("/api/status")
    assert api.status_code == 500 and api.json() == {
        "error": "internal error; the server's log says more"
    }
    assert "GET /workers: RuntimeError: boom" in caplog.text

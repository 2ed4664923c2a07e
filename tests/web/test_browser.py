"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

Skipped when /usr/bin/chromium is missing, unless QUEUECTL_TEST_BROWSER_REQUIRED=1
(CI sets it, after installing the package). With QUEUECTL_WEB_SCREENSHOTS=1 the
tests also save the README's pictures (docs/web-overview.png, docs/web-job.png).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    WorkerProcess,
    pid_alive,
    run_cli,
    run_worker,
    wait_for,
    wait_for_file,
)
from tests.web.conftest import WebProcess

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("QUEUECTL_TEST_BROWSER_REQUIRED") == "1":
            pytest.fail(f"{CHROMIUM} is missing and QUEUECTL_TEST_BROWSER_REQUIRED=1")
        pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    if sys.version_info < (3, 12):
        # Playwright starts its driver with asyncio subprocesses on a loop of its own:
        # give it 3.11's default watcher whatever in-process workers of earlier tests
        # installed (they put theirs back, but this suite runs hundreds of them).
        asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.dialogs = dialogs
    try:
        yield tab
    finally:
        context.close()


def enqueue(db: str, *args: str) -> None:
    result = run_cli(db, "enqueue", *args)
    assert result.returncode == 0, result.stderr


def test_a_job_enqueued_from_the_cli_appears_without_a_reload(
    db: str, web_process: Any, page: Any
) -> None:
    web: WebProcess = web_process(db)
    page.goto(f"{web.url}/jobs")
    page.wait_for_selector("#live-state:has-text('●')")
    page.evaluate("window.__stayed = true")
    enqueue(db, "-c", "echo hello", "--id", "fresh-1")
    started = time.monotonic()
    page.wait_for_selector("tr[data-id='fresh-1']", timeout=5000)
    assert time.monotonic() - started < 3
    assert page.evaluate("window.__stayed") is True  # the same page: no reload
    page.goto(web.url + "/")
    page.evaluate("window.__stayed = true")
    page.wait_for_selector("#live-state:has-text('●')")
    enqueue(db, "-c", "true")
    page.wait_for_selector("[data-count='pending']:has-text('2')", timeout=5000)
    assert page.evaluate("window.__stayed") is True


def test_a_running_jobs_output_follows_live(
    db: str, web_process: Any, page: Any, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = f"echo step-one; while [ ! -e {go} ]; do sleep 0.05; done; echo step-two"
    enqueue(db, "-c", command, "--id", "follow-me")
    web: WebProcess = web_process(db)
    with WorkerProcess(db, "--count", "1"):
        wait_for(lambda: "processing" in run_cli(db, "show", "follow-me").stdout)
        page.goto(f"{web.url}/jobs/follow-me")
        page.wait_for_selector("#live-output:has-text('step-one')")
        assert "step-two" not in page.inner_text("#live-output")
        go.touch()
        page.wait_for_selector("#live-output:has-text('step-two')")
        # When the attempt ends the page shows it as a finished attempt.
        page.wait_for_selector("pre[data-attempt='1']:has-text('step-two')", timeout=20_000)
        page.wait_for_selector("span.state-completed")


def test_a_waiting_jobs_page_follows_its_chain_live_and_links_each_job(
    db: str, web_process: Any, page: Any
) -> None:
    enqueue(db, "-c", "true", "--id", "build")
    enqueue(db, "-c", "true", "--id", "test", "--after", "build")
    enqueue(db, "-c", "true", "--id", "deploy", "--after", "test")
    web: WebProcess = web_process(db)
    page.goto(f"{web.url}/jobs/deploy")
    page.wait_for_selector("#live-state:has-text('●')")
    page.evaluate("window.__stayed = true")
    assert " ".join(page.inner_text("tr[data-field='after']").split()) == "after test (pending)"
    assert "pending (waiting)" in page.inner_text("table.fields")
    assert run_worker(db).returncode == 0
    # The chain ran: the same page shows it without a reload.
    page.wait_for_selector("tr[data-field='after'] span.state-completed", timeout=5000)
    assert page.evaluate("window.__stayed") is True
    assert "(waiting)" not in page.inner_text("table.fields")
    page.click("tr[data-field='after'] a:has-text('test')")
    page.wait_for_url(f"{web.url}/jobs/test")
    waited = " ".join(page.inner_text("tr[data-field='waited on by']").split())
    assert waited == "waited on by deploy (completed)"


def test_a_dead_job_is_retried_with_its_button(db: str, web_process: Any, page: Any) -> None:
    enqueue(db, "-c", "exit 1", "--id", "doomed", "--max-retries", "0")
    assert run_worker(db).returncode == 0
    web: WebProcess = web_process(db)
    page.goto(f"{web.url}/dlq")
    page.click("tr[data-id='doomed'] button[data-action='retry']")
    page.wait_for_selector("p.flash:has-text('1 job(s) moved back to pending.')")
    assert '"state": "pending"' in run_cli(db, "show", "doomed", "--json").stdout
    assert page.locator("tr[data-id='doomed']").count() == 0


def test_a_running_job_is_cancelled_with_its_button(
    db: str, web_process: Any, page: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    command = f"echo $$ > {pid_file}; echo started; exec sleep 300"
    enqueue(db, "-c", command, "--id", "stop-me")
    web: WebProcess = web_process(db)
    with WorkerProcess(db, "--count", "1"):
        pid = int(wait_for_file(pid_file))
        assert pid_alive(pid)
        page.goto(f"{web.url}/jobs/stop-me")
        page.wait_for_selector("#live-output:has-text('started')")
        page.wait_for_selector("#live-state:has-text('●')")
        page.evaluate("window.__stayed = true")
        page.click("button[data-action='cancel']")
        # The answer comes back within the short wait, in place; the job page shows
        # the end live.
        page.wait_for_selector("#action-message:has-text('cancel')", timeout=20_000)
        page.wait_for_selector("span.state-cancelled", timeout=20_000)
        wait_for(lambda: not pid_alive(pid), timeout=20)
        assert '"state": "cancelled"' in run_cli(db, "show", "stop-me", "--json").stdout
        page.wait_for_selector("span.result-cancelled", timeout=20_000)
        assert page.locator("button[data-action='cancel']").count() == 0
        assert page.locator("button[data-action='retry']").count() == 1
        assert page.evaluate("window.__stayed") is True  # never reloaded


def test_a_job_is_removed_after_the_page_asks_again(db: str, web_process: Any, page: Any) -> None:
    enqueue(db, "-c", "true", "--id", "unwanted")
    web: WebProcess = web_process(db)
    page.goto(f"{web.url}/jobs/unwanted")
    assert not page.is_visible("button[data-action='rm-confirm']")  # asked first
    page.click("summary[data-action='rm']")
    page.click("button[data-action='rm-confirm']")
    page.wait_for_url(f"{web.url}/jobs")
    page.wait_for_selector("p.flash:has-text('1 job(s) removed.')")
    assert run_cli(db, "show", "unwanted").returncode == 1


def test_schedules_are_paused_with_a_button_and_follow_the_cli_live(
    db: str, web_process: Any, page: Any
) -> None:
    for name in ("nightly", "hourly"):
        added = run_cli(db, "schedule", "add", name, "--cron", "0 3 * * *", "-c", "true")
        assert added.returncode == 0, added.stderr
    web: WebProcess = web_process(db)
    page.goto(f"{web.url}/schedules")
    page.wait_for_selector("#live-state:has-text('●')")
    page.evaluate("window.__stayed = true")
    page.click("tr[data-name='nightly'] button[data-action='pause']")
    page.wait_for_selector("#action-message:has-text('paused schedule nightly')")
    page.wait_for_selector("tr[data-name='nightly'] span.paused")
    assert cli_json_paused(db) == {"nightly": True, "hourly": False}
    # A change made elsewhere shows too, without a reload.
    assert run_cli(db, "schedule", "pause", "hourly").returncode == 0
    page.wait_for_selector("tr[data-name='hourly'] span.paused", timeout=5000)
    assert page.evaluate("window.__stayed") is True


def state_of(db: str, job_id: str) -> str:
    shown = run_cli(db, "show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    state: str = json.loads(shown.stdout)["state"]
    return state


def test_a_queue_paused_with_its_button_holds_its_jobs_until_resumed(
    db: str, web_process: Any, page: Any
) -> None:
    enqueue(db, "-c", "true", "--queue", "mail", "--id", "m0")
    enqueue(db, "-c", "true", "--id", "d0")
    web: WebProcess = web_process(db)
    page.goto(f"{web.url}/queues")
    page.wait_for_selector("#live-state:has-text('●')")
    page.evaluate("window.__stayed = true")
    page.click("tr[data-queue='mail'] button[data-action='pause']")
    page.wait_for_selector("#action-message:has-text('paused mail')")
    page.wait_for_selector("tr[data-queue='mail'] span.paused:has-text('yes')")
    listed = json.loads(run_cli(db, "queue", "list", "--json").stdout)
    assert {q["queue"]: q["paused"] for q in listed} == {"mail": True, "default": False}
    # A pause made from the CLI shows too, without a reload (the shared poller).
    assert run_cli(db, "queue", "pause", "default").returncode == 0
    page.wait_for_selector("tr[data-queue='default'] span.paused", timeout=5000)
    assert run_cli(db, "queue", "resume", "default").returncode == 0
    page.wait_for_selector("tr[data-queue='default'] td[data-paused='no']", timeout=5000)
    with WorkerProcess(db, "--count", "1"):
        # m1 is enqueued first; the worker takes the older jobs first, so once d1 (of
        # another queue, enqueued after m1) has completed, m1 was passed over: held.
        enqueue(db, "-c", "true", "--queue", "mail", "--id", "m1")
        enqueue(db, "-c", "true", "--id", "d1")
        wait_for(lambda: state_of(db, "d1") == "completed", timeout=30)
        assert state_of(db, "m0") == "pending" and state_of(db, "m1") == "pending"
        assert "[queue_paused]" in run_cli(db, "why", "m1").stdout
        page.click("tr[data-queue='mail'] button[data-action='resume']")
        page.wait_for_selector("#action-message:has-text('resumed mail')")
        page.wait_for_selector("tr[data-queue='mail'] td[data-paused='no']")
        wait_for(lambda: state_of(db, "m1") == "completed", timeout=30)
        assert state_of(db, "m0") == "completed"
    assert page.evaluate("window.__stayed") is True  # never reloaded


def cli_json_paused(db: str) -> dict[str, bool]:
    listed = json.loads(run_cli(db, "schedule", "list", "--json").stdout)
    return {s["name"]: s["paused"] for s in listed}


def test_script_in_a_command_and_its_output_is_shown_as_text(
    db: str, web_process: Any, page: Any
) -> None:
    evil = "<script>alert(1)</script>"
    enqueue(db, "-c", f"echo '{evil}'", "--id", "xss")
    enqueue(db, "-c", evil, "--id", evil, "--max-retries", "0")
    assert run_worker(db).returncode == 0
    web: WebProcess = web_process(db)
    for path in ("/jobs", "/jobs/xss", "/dlq", "/jobs?q=%3Cscript%3E"):
        page.goto(web.url + path)
        page.wait_for_load_state("networkidle")
    page.goto(f"{web.url}/jobs/xss")
    assert evil in page.inner_text("pre.command")
    assert evil in page.inner_text("pre[data-attempt='1']")
    page.goto(f"{web.url}/jobs")
    assert evil in page.inner_text("table.jobs")
    page.wait_for_timeout(500)  # an injected script would have run by now
    assert page.dialogs == []
    assert page.evaluate("document.querySelectorAll('script').length") == 1


@pytest.mark.skipif(
    os.environ.get("QUEUECTL_WEB_SCREENSHOTS") != "1",
    reason="QUEUECTL_WEB_SCREENSHOTS=1 saves them",
)
def test_screenshots_for_the_readme(web_process: Any, page: Any) -> None:
    folder = Path("/tmp/queuectl-demo")  # a short path for the header of the pictures
    shutil.rmtree(folder, ignore_errors=True)
    db = str(folder / "queue.db")
    run_cli(db, "config", "set", "backoff-base", "1")
    jobs = [
        ("build-1042", "make -j4 build", "0"),
        ("test-1042", "pytest -q tests/", "0"),
        ("flaky-api", "curl -fsS https://api.example/health", "1"),
        ("resize-img-7", "convert in.png -resize 50% out.png", "0"),
    ]
    for job_id, command, retries in jobs:
        end = "exit 7" if "flaky" in job_id else "true"
        enqueue(db, "-c", f"echo running {command}; sleep 0.2; {end}", "--id", job_id,
                "--max-retries", retries)  # fmt: skip
    for n in range(6):
        enqueue(db, "-c", f"echo report {n}", "--queue", "reports")
    assert run_worker(db, "--count", "3").returncode == 0
    enqueue(db, "-c", "sleep 60", "--id", "nightly-backup", "--queue", "ops")
    enqueue(db, "-c", "echo later", "--delay", "3600", "--queue", "reports")
    enqueue(db, "-c", "echo stale report", "--id", "old-report", "--queue", "reports")
    assert run_cli(db, "cancel", "old-report").returncode == 0
    web: WebProcess = web_process(db)
    page.set_viewport_size({"width": 1100, "height": 760})
    page.goto(web.url + "/")
    page.wait_for_selector("svg.chart")
    page.screenshot(path=str(DOCS / "web-overview.png"))
    page.goto(f"{web.url}/jobs/flaky-api")
    page.screenshot(path=str(DOCS / "web-job.png"), full_page=True)
    for name in ("web-overview.png", "web-job.png"):
        assert (DOCS / name).stat().st_size < 150_000
    web.stop()
    shutil.rmtree(folder, ignore_errors=True)

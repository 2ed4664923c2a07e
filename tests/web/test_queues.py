"""The queues page and its actions (pause, resume, limit, pause/resume all), the paused
queues on the overview and in ``/metrics``, and ``why`` on a waiting job's page, over a
real store through the ASGI app."""

from __future__ import annotations

import logging

import httpx
import pytest

from queuectl.models import JobState
from queuectl.queue import Queue
from tests.web.conftest import ClientFactory
from tests.web.test_metrics import samples

pytestmark = pytest.mark.timeout(120)
JSON = {"accept": "application/json"}
ACTIONS = ("queue-pause", "queue-resume", "queue-limit", "queue-pause-all", "queue-resume-all")


def row(page: str, name: str) -> str:
    """The table row of queue ``name`` on the queues page."""
    start = page.index(f'<tr data-queue="{name}">')
    return page[start : page.index("</tr>", start)]


async def test_queues_page_shows_what_queue_list_shows(
    queue: Queue, client: httpx.AsyncClient
) -> None:
    empty = await client.get("/queues")
    assert empty.status_code == 200 and "no queues" in empty.text
    assert 'href="/queues" aria-current="page"' in empty.text
    await queue.enqueue(
        {"id": "m1", "command": "true", "queue": "mail"},
        {"id": "m2", "command": "true", "queue": "mail", "delay": 3600},
        {"id": "d1", "command": "true"},
        {"id": "l1", "command": "true", "queue": "later", "delay": 3600},
    )
    await queue.pause_queues(["mail"])
    await queue.limit_queue("mail", 3)
    page = (await client.get("/queues")).text
    header = "".join(f"<th>{c}</th>" for c in ("QUEUE", "PAUSED", "LIMIT"))
    assert header in page.replace(' class="num"', "")
    for state in JobState:
        assert f">{state.value.upper()}</th>" in page
    assert ">OLDEST DUE</th>" in page
    mail = row(page, "mail")
    assert '<span class="paused">yes</span>' in mail and '<td class="num" data-limit>3<' in mail
    # pending 2, processing 0, ...: the counts in JobState's order, as `queue list`.
    assert '<td class="num">2</td><td class="num">0</td>' in mail
    assert 'data-action="resume"' in mail and "<time datetime=" in mail  # OLDEST DUE
    # A queue whose only job is not due yet has no oldest due job.
    later = row(page, "later")
    assert '<td>-</td>\n<td class="row-actions">' in later and "<time" not in later
    default = row(page, "default")
    assert '<td data-paused="no">no</td>' in default and "data-limit>-<" in default
    assert 'data-action="pause"' in default
    await queue.pause_queues(all_queues=True)
    page = (await client.get("/queues")).text
    assert "paused: every queue" in page
    assert '<span class="paused">all</span>' in row(page, "default")


async def test_each_queue_action_changes_the_store_and_logs_one_line(
    queue: Queue, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue({"id": "m1", "command": "true", "queue": "mail"})
    caplog.set_level(logging.INFO, logger="queuectl.web")
    paused = await client.post("/actions/queue-pause", data={"queue": "mail"}, headers=JSON)
    assert paused.json() == {"action": "queue-pause", "ids": ["mail"], "message": "paused mail"}
    assert (await queue.queue_settings()).paused("mail")
    assert "web action queue-pause: mail (client 127.0.0.1)" in caplog.text
    # A browser is sent back with the message, and sees the queue paused.
    limited = await client.post(
        "/actions/queue-limit", data={"queue": "mail", "limit": "2", "next": "/queues"}
    )
    assert limited.status_code == 303 and limited.headers["location"] == "/queues"
    page = (await client.get("/queues")).text
    assert "mail: at most 2 running" in page and "data-limit>2<" in row(page, "mail")
    assert (await queue.queue_settings()).limit("mail") == 2
    assert "web action queue-limit: mail (client 127.0.0.1)" in caplog.text
    unlimited = await client.post(
        "/actions/queue-limit", data={"queue": "mail", "limit": "0"}, headers=JSON
    )
    assert unlimited.json()["message"] == "mail: no limit"
    assert (await queue.queue_settings()).limit("mail") is None
    resumed = await client.post("/actions/queue-resume", data={"queue": "mail"}, headers=JSON)
    assert resumed.json()["message"] == "resumed mail"
    assert not (await queue.queue_settings()).paused("mail")
    again = await client.post("/actions/queue-resume", data={"queue": "mail"}, headers=JSON)
    assert again.json()["message"] == "mail was not paused"
    assert "web action queue-resume: mail (client 127.0.0.1)" in caplog.text
    everything = await client.post("/actions/queue-pause-all", data={}, headers=JSON)
    assert everything.json()["message"].startswith("paused every queue")
    assert (await queue.queue_settings()).all_paused
    held = await client.post("/actions/queue-resume", data={"queue": "mail"}, headers=JSON)
    assert "mail stays paused by pause all" in held.json()["message"]
    assert (await queue.queue_settings()).paused("mail")
    lifted = await client.post("/actions/queue-resume-all", data={}, headers=JSON)
    assert lifted.json()["message"] == "resumed every queue"
    settings = await queue.queue_settings()
    assert not settings.all_paused and not settings.paused("mail")
    assert "web action queue-resume-all: - (client 127.0.0.1)" in caplog.text


async def test_bad_queue_actions_are_refused_and_change_nothing(
    queue: Queue, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue({"id": "m1", "command": "true", "queue": "mail"})
    await queue.limit_queue("mail", 4)
    caplog.set_level(logging.INFO, logger="queuectl.web")
    negative = await client.post(
        "/actions/queue-limit", data={"queue": "mail", "limit": "-1"}, headers=JSON
    )
    assert negative.status_code == 400
    assert negative.json() == {"error": "a limit must be 0 (none) or more, not -1"}
    assert "web action queue-limit refused: a limit must be 0" in caplog.text
    # A browser gets the library's words on the page it came from.
    await client.post(
        "/actions/queue-limit", data={"queue": "mail", "limit": "-3", "next": "/queues"}
    )
    said = (await client.get("/queues")).text
    assert "Error: a limit must be 0 (none) or more, not -3; nothing was changed." in said
    word = await client.post(
        "/actions/queue-limit", data={"queue": "mail", "limit": "two"}, headers=JSON
    )
    assert word.status_code == 400 and "whole number" in word.json()["error"]
    assert (await queue.queue_settings()).limit("mail") == 4
    # An unknown queue cannot be resumed (a typo must not look resumed): 400, nothing done.
    typo = await client.post("/actions/queue-resume", data={"queue": "mial"}, headers=JSON)
    assert typo.status_code == 400 and "no queue named 'mial'" in typo.json()["error"]
    for name in ("queue-pause", "queue-resume", "queue-limit"):
        nameless = await client.post(f"/actions/{name}", data={"limit": "1"}, headers=JSON)
        assert nameless.status_code == 400
    blank = await client.post("/actions/queue-pause", data={"queue": " "}, headers=JSON)
    assert blank.status_code == 400
    settings = await queue.queue_settings()
    assert not settings.all_paused and list(settings.queues) == ["mail"]
    assert not settings.paused("mail")


async def test_read_only_and_cross_site_refuse_every_queue_action(
    queue: Queue, make_client: ClientFactory
) -> None:
    await queue.enqueue({"id": "m1", "command": "true", "queue": "mail"})
    await queue.pause_queues(["mail"])
    form = {"queue": "mail", "limit": "1"}
    async with make_client(read_only=True) as client:
        page = (await client.get("/queues")).text
        assert "data-action" not in page and "paused" in page
        for name in ACTIONS:
            assert (await client.post(f"/actions/{name}", data=form)).status_code == 405
    async with make_client() as client:
        for name in ACTIONS:
            answer = await client.post(
                f"/actions/{name}",
                data=form,
                headers={"origin": "http://attacker.example", **JSON},
            )
            assert answer.status_code == 403
            sneaky = await client.post(
                f"/actions/{name}", data=form, headers={"sec-fetch-site": "cross-site", **JSON}
            )
            assert sneaky.status_code == 403
    settings = await queue.queue_settings()
    assert settings.paused("mail") and settings.limit("mail") is None and not settings.all_paused


async def test_overview_and_metrics_show_paused_queues(
    queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue(
        {"id": "m1", "command": "true", "queue": "mail"}, {"id": "d1", "command": "true"}
    )
    overview = (await client.get("/")).text
    assert "Paused queues: none." in overview
    got = samples((await client.get("/metrics")).text)
    assert got[("queuectl_queue_paused", (("queue", "mail"),))] == 0
    await queue.pause_queues(["mail", "later"])  # "later" has no jobs yet
    overview = (await client.get("/")).text
    assert 'Paused queues: <a href="/queues">later</a>, <a href="/queues">mail</a>.' in overview
    assert '<span class="paused">yes</span>' in overview
    got = samples((await client.get("/metrics")).text)
    assert got[("queuectl_queue_paused", (("queue", "mail"),))] == 1
    assert got[("queuectl_queue_paused", (("queue", "later"),))] == 1
    assert got[("queuectl_queue_paused", (("queue", "default"),))] == 0
    await queue.resume_queues(["mail", "later"])
    await queue.pause_queues(all_queues=True)
    assert "Paused queues: every queue" in (await client.get("/")).text
    got = samples((await client.get("/metrics")).text)
    assert got[("queuectl_queue_paused", (("queue", "default"),))] == 1
    assert got[("queuectl_queue_paused", (("queue", "mail"),))] == 1


async def test_a_waiting_jobs_page_says_why_as_queuectl_why_does(
    queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue({"id": "m1", "command": "true", "queue": "mail"})
    await queue.pause_queues(["mail"])
    page = (await client.get("/jobs/m1")).text
    reasons = (await queue.why("m1")).reasons
    assert [r.code for r in reasons] == ["queue_paused", "no_worker"]
    for reason in reasons:
        assert f'<li>{reason.message} <code class="reason">[{reason.code}]</code></li>' in page
    # A finished job's page has no "why" (its state says it all).
    await queue.cancel(["m1"])
    assert "Why it waits" not in (await client.get("/jobs/m1")).text

"""Dependencies on the dashboard (reference §19.1, §20.2): a job's page lists the jobs
it waits on and those waiting on it, each with its state and a link, as ``queuectl
show`` words them; the jobs list marks a waiting job ``pending (waiting)`` as
``queuectl list`` does."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from queuectl.queue import Queue
from tests.helpers import run_cli
from tests.inproc import run_burst

pytestmark = pytest.mark.timeout(120)


def row_of(page: str, job_id: str) -> str:
    """The ``<tr>`` of ``job_id`` in a jobs table."""
    match = re.search(rf'<tr data-id="{re.escape(job_id)}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {job_id}"
    return match.group(1)


def field(page: str, name: str) -> str:
    """A field of the job page, as text: tags dropped, whitespace folded."""
    match = re.search(rf'<th scope="row">{re.escape(name)}</th><td>(.*?)</td>', page, re.S)
    assert match, f"no field {name!r}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).split())


def shown_field(db: str, job_id: str, name: str) -> str:
    """The same field of ``queuectl show`` (plain text, as when piped)."""
    out = run_cli(db, "show", job_id).stdout
    for line in out.splitlines():
        if line.startswith(name + "  "):
            return " ".join(line[len(name) :].split())
    raise AssertionError(f"no {name!r} in:\n{out}")


async def test_a_job_page_lists_its_dependencies_and_dependents_as_show_does(
    db: str, queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue(
        {"id": "build", "command": "true"},
        {"id": "test", "command": "true", "after": "build"},
        {"id": "deploy", "command": "true", "after": "test"},
        {"id": "notify", "command": "true", "after": ["test"], "after_mode": "finished"},
    )
    jobs = (await client.get("/jobs")).text
    waiting = (
        '<span class="state state-pending">pending</span><span class="waiting"> (waiting)</span>'
    )
    for job_id in ("test", "deploy", "notify"):
        assert waiting in row_of(jobs, job_id)
    assert "(waiting)" not in row_of(jobs, "build")

    page = (await client.get("/jobs/test")).text
    assert field(page, "state") == "pending (waiting)" == shown_field(db, "test", "state")
    assert field(page, "after") == "build (pending)" == shown_field(db, "test", "after")
    assert field(page, "waited on by") == "deploy (pending), notify (pending)"
    assert field(page, "waited on by") == shown_field(db, "test", "waited on by")
    for job_id in ("build", "deploy", "notify"):
        assert f'<a href="/jobs/{job_id}">{job_id}</a>' in page
    assert '<span class="state state-pending">pending</span>)' in page
    notify = (await client.get("/jobs/notify")).text
    assert field(notify, "after (any end)") == "test (pending)"
    assert field(notify, "after (any end)") == shown_field(db, "notify", "after (any end)")
    build = (await client.get("/jobs/build")).text
    assert field(build, "state") == "pending"
    assert field(build, "waited on by") == "test (pending)"
    assert '<th scope="row">after</th>' not in build

    # Once the chain has run, each shows the other's new state; a dependency removed
    # since is named without a link (it has no page).
    assert await run_burst(db) == 0
    page = (await client.get("/jobs/test")).text
    assert field(page, "state") == "completed"
    assert field(page, "after") == "build (completed)"
    assert field(page, "waited on by") == "deploy (completed), notify (completed)"
    assert await queue.remove(["build"]) == ["build"]
    page = (await client.get("/jobs/test")).text
    assert field(page, "after") == "build (removed)" == shown_field(db, "test", "after")
    assert 'href="/jobs/build"' not in page
    assert "(waiting)" not in (await client.get("/jobs")).text


async def test_a_dependent_cancelled_by_its_dependency_links_back_to_it(
    db: str, queue: Queue, client: httpx.AsyncClient
) -> None:
    await queue.enqueue(
        {"id": "a", "command": "true"}, {"id": "b", "command": "true", "after": "a"}
    )
    await queue.cancel(["a"])
    page = (await client.get("/jobs/b")).text
    assert field(page, "state") == "cancelled"
    assert field(page, "after") == "a (cancelled)" == shown_field(db, "b", "after")
    assert '<a href="/jobs/a">a</a> (<span class="state state-cancelled">cancelled</span>)' in page
    assert "(waiting)" not in (await client.get("/jobs")).text

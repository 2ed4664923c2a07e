"""The gate: token and cookie, the Host allow-list, cross-site POSTs, read-only."""

from __future__ import annotations

import pytest

from queuectl.queue import Queue
from queuectl.web.app import shown_target
from queuectl.web.security import header_host, host_allow_list, is_loopback, session_value
from tests.web.conftest import ORIGIN, ClientFactory

pytestmark = pytest.mark.sqlite_only
TOKEN = "tok-3f9a"


async def test_with_a_token_every_request_needs_it(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        for path in ("/", "/jobs", "/api/status", "/api/jobs", "/metrics", "/static/app.js"):
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert "needs its token" in answer.text
        assert (await client.get("/", headers={"authorization": "Bearer nope"})).status_code == 401
        bearer = await client.get("/api/status", headers={"authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        assert (await client.get("/jobs?token=wrong")).status_code == 401


async def test_the_token_link_becomes_a_cookie_and_a_clean_url(
    make_client: ClientFactory,
) -> None:
    async with make_client(token=TOKEN) as client:
        answer = await client.get(f"/jobs?state=dead&token={TOKEN}&queue=q")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/jobs?state=dead&queue=q"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert TOKEN not in cookie  # the cookie holds a value derived from it
        assert session_value(TOKEN) in cookie
        # httpx keeps the cookie: the cleaned URL and everything else now works.
        assert (await client.get("/jobs?state=dead&queue=q")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    async with make_client(token=TOKEN) as other:
        forged = {"cookie": f"queuectl_session={session_value('other')}"}
        assert (await other.get("/", headers=forged)).status_code == 401


async def test_hosts_outside_the_allow_list_are_refused(make_client: ClientFactory) -> None:
    async with make_client() as client:
        rebound = await client.get("/api/status", headers={"host": "attacker.example:8787"})
        assert rebound.status_code == 400
        assert "does not answer to host" in rebound.text
        for host in ("localhost:8787", "127.0.0.1", "[::1]:8787"):
            assert (await client.get("/api/status", headers={"host": host})).status_code == 200


async def test_cross_site_posts_are_refused(queue: Queue, make_client: ClientFactory) -> None:
    await queue.enqueue({"id": "j", "command": "true"})
    async with make_client() as client:
        form = {"id": "j"}
        json_ = {"accept": "application/json"}
        for headers in (
            {"origin": "http://attacker.example"},
            {"origin": "http://127.0.0.1:9999"},
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
            {"origin": ORIGIN, "sec-fetch-site": "cross-site"},
        ):
            answer = await client.post("/actions/retry-dead", data=form, headers=headers)
            assert answer.status_code == 403, headers
            assert answer.text.startswith("Forbidden: cross-site request refused")
        # Same origin, and a script with neither header, reach the action (which
        # then refuses a job that is not dead: 409, not 403).
        for headers in ({"origin": ORIGIN, "sec-fetch-site": "same-origin"}, {}):
            answer = await client.post(
                "/actions/retry-dead", data=form, headers={**headers, **json_}
            )
            assert answer.status_code == 409, headers


async def test_read_only_offers_no_actions_and_refuses_every_post(
    queue: Queue, make_client: ClientFactory
) -> None:
    await queue.enqueue({"id": "dead1", "command": "exit 1", "max_retries": 0})
    async with make_client(read_only=True) as client:
        for path in ("/dlq", "/jobs", "/", "/jobs/dead1"):
            page = (await client.get(path)).text
            assert '<form method="post"' not in page and "data-action" not in page
            assert "read-only" in page
        for path in ("/actions/retry-dead", "/actions/retry-dead-matching", "/", "/nothing"):
            assert (await client.post(path, data={"id": "dead1"})).status_code == 405


async def test_every_answer_carries_the_hardening_headers(client) -> None:
    answer = await client.get("/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_loopback_and_allow_list_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.3.4.5") and not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert host_allow_list("0.0.0.0", token="t") is None
    assert host_allow_list("10.0.0.5", token="t") == {"localhost", "127.0.0.1", "::1", "10.0.0.5"}
    assert header_host("[::1]:8787") == "::1" and header_host("Example.com:80") == "example.com"
    assert header_host("127.0.0.1") == "127.0.0.1"


def test_no_password_of_a_store_url_is_shown() -> None:
    assert (
        shown_target("postgresql://app:hunter2@db.example:5432/q?schema=x")
        == "postgresql://app@db.example:5432/q?schema=x"
    )
    assert shown_target("/var/lib/q.db") == "/var/lib/q.db"

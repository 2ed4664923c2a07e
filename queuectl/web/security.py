"""The dashboard's gate: every request passes here before any route sees it.

In order: the Host header must be one this server answers to (DNS rebinding: a
page of another site that re-points its name at 127.0.0.1 still sends its own
name); with a token, the request must carry it (``?token=`` once, exchanged for a
cookie, or ``Authorization: Bearer``); a POST is refused in ``--read-only`` (405)
and when it comes from another site (403: ``Origin`` not ours, or a
``Sec-Fetch-Site`` other than ``same-origin``). A request with neither header is a
script's, not a browser's, and is allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

COOKIE = "queuectl_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: On every answer: only our own script and styles run, no framing, no sniffing.
HARDENING = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allow_list(bind: str, *, token: str | None) -> frozenset[str] | None:
    """Host names the server answers to; ``None`` means any (a wildcard bind with a token).

    Loopback names always; the bound name too. A server bound to every interface
    with a token cannot know the names it is reached by; the token guards it.
    """
    name = bind.strip("[]").lower()
    if name in ("0.0.0.0", "::", "") and token:
        return None
    return LOOPBACK_NAMES | {name}


def session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so a leaked cookie is not the token."""
    return hmac.new(token.encode(), b"queuectl web session", hashlib.sha256).hexdigest()


def header_host(value: str) -> str:
    """``Host`` without its port: ``[::1]:8787`` → ``::1``, ``example:80`` → ``example``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass
class Gate:
    """Settings of the gate, shared with the routes (they hide actions in read-only)."""

    token: str | None = None
    read_only: bool = False
    allowed_hosts: frozenset[str] | None = field(default_factory=lambda: LOOPBACK_NAMES)


class GateMiddleware:
    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, text, extra = refusal
            await _plain(send, status, text, extra)
            return

        async def hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HARDENING]}
            await send(message)

        await self.app(scope, receive, hardened)

    def _refusal(
        self, scope: Scope, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        gate = self.gate
        host = headers.get("host", "")
        allowed = gate.allowed_hosts
        if allowed is not None and header_host(host) not in allowed:
            return 400, f"Bad Request: this server does not answer to host {host!r}", []
        if gate.token is not None:
            denied = self._check_token(scope, headers, gate.token)
            if denied is not None:
                return denied
        if scope["method"] in SAFE_METHODS:
            return None
        if gate.read_only:
            return 405, "Method Not Allowed: this dashboard is read-only", [(b"allow", b"GET")]
        if cross_site(scope, headers):
            return 403, "Forbidden: cross-site request refused", []
        return None

    def _check_token(
        self, scope: Scope, headers: dict[str, str], token: str
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given:
            if not hmac.compare_digest(given[-1].encode(), token.encode()):
                return 401, "Unauthorized: wrong token", [(b"www-authenticate", b"Bearer")]
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            cookie = (
                f"{COOKIE}={session_value(token)}; Path=/; HttpOnly; SameSite=Strict"
            ).encode()
            return 303, "See Other", [(b"location", location.encode()), (b"set-cookie", cookie)]
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(
            auth[7:].strip().encode(), token.encode()
        ):
            return None
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no cookie
            jar = SimpleCookie()
        morsel = jar.get(COOKIE)
        if morsel is not None and hmac.compare_digest(
            morsel.value.encode(), session_value(token).encode()
        ):
            return None
        return (
            401,
            "Unauthorized: this dashboard needs its token (open it once with ?token=..., "
            "or send Authorization: Bearer ...)",
            [(b"www-authenticate", b"Bearer")],
        )


def cross_site(scope: Scope, headers: dict[str, str]) -> bool:
    """A browser's request made by a page of another origin."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
    return origin.lower() != own


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    headers.extend(HARDENING)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

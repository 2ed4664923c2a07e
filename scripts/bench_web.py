"""The dashboard's benchmark (issue 13): ``python scripts/bench.py --only web [--quick]``.

Everything runs against real processes over a real SQLite file: ``queuectl web`` on a
free port, spoken to over HTTP on loopback, and workers started as ``bench.py`` starts
them. Four measurements:

* **latency**: each page (``/``, ``/jobs``, ``/jobs/ID``), ``/api/jobs`` and a
  ``/metrics`` scrape, median and p99 over keep-alive requests, on a store with no
  history and on one with 10^6 finished jobs (W6's history); the full/empty ratio.
* **memory**: RSS of the ``web`` process once it answered its first request (idle), and
  after it served every measured request.
* **store reads of live pages**: SQL statements the ``web`` process runs per second
  with 0, 1 and 20 open live pages (each an event stream that fetches its fragment
  again when the poller's generation moves, as ``static/app.js`` does), while nothing
  changes and while a worker drains jobs. The statements are counted inside the
  ``web`` process by a trace callback on every SQLite connection it opens
  (``COUNTING_WEB``): every statement, reads and transaction control alike.
* **workers unhindered**: W2 (drain ``true`` jobs, ``--count 4``) and W4
  (enqueue-to-start latency) alone and under a dashboard load (20 live pages, one slow
  client reading a large answer a little at a time, a ``/metrics`` scrape every
  second), interleaved A B B A per round; the change of the medians.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_peers import Queuectl
from benchlib import (
    PY,
    QUEUECTL,
    Bench,
    BenchError,
    build_sqlite_history,
    latency_samples,
    latency_stats,
    median,
    note,
    proc_rss_mib,
    queuectl_env,
    running,
)

#: A job that exists in both stores (W6's history keeps 1,000 pending jobs).
JOB = "later-500"
URLS = ("/", "/jobs", f"/jobs/{JOB}", "/api/jobs", "/metrics")
#: Live pages: what a person keeps open, spread over the live views.
LIVE_PAGES = ("/", "/jobs", "/jobs?state=pending", "/workers")
LIVE_COUNT = 20
TARGET_MS = 100.0
TARGET_RATIO = 2.0
TARGET_RSS_MIB = 60.0
#: "A few store queries per second in all" for 20 open pages (the poller's reads).
TARGET_STATEMENTS_PER_S = 5.0
TARGET_CHANGE = 0.10

#: ``queuectl web`` with every SQLite statement counted: a trace callback on each
#: connection, the running total written to argv[1] ten times a second.
COUNTING_WEB = """
import os, sqlite3, sys, threading, time
out = sys.argv[1]
count = 0
lock = threading.Lock()
real_connect = sqlite3.connect

def trace(_statement):
    global count
    with lock:
        count += 1

def connect(*args, **kwargs):
    conn = real_connect(*args, **kwargs)
    conn.set_trace_callback(trace)
    return conn

sqlite3.connect = connect

def dump():
    while True:
        with open(out + ".tmp", "w") as f:
            f.write(f"{count}\\n")
        os.replace(out + ".tmp", out)
        time.sleep(0.1)

threading.Thread(target=dump, daemon=True).start()
from queuectl.cli import main
sys.argv = ["queuectl", "web", "--port", "0"]
main()
"""


class WebServer:
    """A ``queuectl web`` process on a free port; its URL read from its first line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            raise BenchError(f"queuectl web did not print its URL: {line!r}")
        self.port = int(found.group(1))

    def get(self, path: str, conn: http.client.HTTPConnection | None = None) -> bytes:
        own = conn is None
        conn = conn or self.connect()
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            body = answer.read()
            if answer.status != 200:
                raise BenchError(f"GET {path}: {answer.status} {body[:200]!r}")
            return body
        finally:
            if own:
                conn.close()

    def connect(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def rss_mib(self) -> tuple[float, float]:
        return proc_rss_mib(self.proc.pid)


@contextlib.contextmanager
def web_server(db: Path, *, counted: Path | None = None) -> Iterator[WebServer]:
    """``queuectl web`` over ``db`` (with its statements counted into ``counted``)."""
    args: list[str | Path] = [QUEUECTL, "web", "--port", "0"]
    if counted is not None:
        args = [PY, "-c", COUNTING_WEB, counted]
    with running(
        args,
        env=queuectl_env(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        server = WebServer(proc)
        server.get("/api/status")
        yield server


def statements(counted: Path) -> int:
    try:
        return int(counted.read_text())
    except (FileNotFoundError, ValueError):
        return 0


class LivePage(threading.Thread):
    """One open page as ``static/app.js`` keeps it: an event stream, and its fragment
    fetched again whenever the poller's generation moves."""

    def __init__(self, server: WebServer, path: str) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.path = path
        self.events = 0
        self.fragments = 0
        self.connected = threading.Event()
        self._sock: socket.socket | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        fragments = self.server.connect()
        stream = self.server.connect(timeout=3600)
        with contextlib.suppress(OSError, http.client.HTTPException):
            stream.request("GET", "/events")
            answer = stream.getresponse()
            self._sock = stream.sock
            self.connected.set()
            generation = None
            while not self._halt.is_set():
                line = answer.readline()
                if not line:
                    return
                if not line.startswith(b"data:"):
                    continue
                self.events += 1
                seen = json.loads(line[5:])["generation"]
                if generation is not None and seen != generation:
                    fragments.request("GET", self.path, headers={"X-Queuectl-Fragment": "1"})
                    fragments.getresponse().read()
                    self.fragments += 1
                generation = seen
        self.connected.set()

    def close(self) -> None:
        self._halt.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def live_pages(server: WebServer, n: int) -> Iterator[list[LivePage]]:
    pages = [LivePage(server, LIVE_PAGES[i % len(LIVE_PAGES)]) for i in range(n)]
    for page in pages:
        page.start()
    try:
        for page in pages:
            if not page.connected.wait(30):
                raise BenchError("a live page could not open its event stream")
        yield pages
    finally:
        for page in pages:
            page.close()
        for page in pages:
            page.join(5)


SLOW_REQUEST = b"GET /api/jobs?limit=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


class SlowClient(threading.Thread):
    """A client that asks for a large answer (every job) and reads 1 KiB a second."""

    def __init__(self, server: WebServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(OSError):
                sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                with sock:
                    sock.sendall(SLOW_REQUEST)
                    while not self._halt.wait(1.0):
                        if not sock.recv(1024):
                            break

    def close(self) -> None:
        self._halt.set()


class Scraper(threading.Thread):
    """Prometheus: ``/metrics`` once a second."""

    def __init__(self, server: WebServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.scrapes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(1.0):
            with contextlib.suppress(OSError, BenchError, http.client.HTTPException):
                self.server.get("/metrics")
                self.scrapes += 1

    def close(self) -> None:
        self._halt.set()


@contextlib.contextmanager
def dashboard_load(db: Path) -> Iterator[WebServer]:
    """A dashboard over ``db`` as people and Prometheus use it, for as long as it lasts."""
    with web_server(db) as server, live_pages(server, LIVE_COUNT):
        others: list[SlowClient | Scraper] = [SlowClient(server), Scraper(server)]
        for thread in others:
            thread.start()
        try:
            yield server
        finally:
            for thread in others:
                thread.close()


# The measurements -----------------------------------------------------------------


def page_latency(server: WebServer, samples: int) -> dict[str, dict[str, float]]:
    """Per URL: p50, p99 and max in ms over keep-alive requests (after two to warm up)."""
    conn = server.connect()
    found: dict[str, dict[str, float]] = {}
    try:
        for url in URLS:
            for _ in range(2):
                server.get(url, conn)
            times = []
            for _ in range(samples):
                start = time.perf_counter()
                server.get(url, conn)
                times.append((time.perf_counter() - start) * 1000)
            found[url] = latency_stats(times)
    finally:
        conn.close()
    return found


def latency_and_memory(bench: Bench) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for label, history in (("empty", 0), ("full", bench.sizes.w6_jobs)):
        path = bench.fresh(f"web-{label}")
        db = path / "q.db"
        build_sqlite_history(db, history)
        note(f"web: {label} store ({history:,} finished jobs) built")
        with web_server(db) as server:
            time.sleep(0.5)
            idle_rss, _ = server.rss_mib()
            latency = page_latency(server, max(5, bench.sizes.w6_samples))
            rss, hwm = server.rss_mib()
        figures[label] = {
            "jobs": history,
            "latency_ms": latency,
            "rss_idle_mib": round(idle_rss, 1),
            "rss_after_mib": round(rss, 1),
            "rss_peak_mib": round(hwm, 1),
        }
        bench.clean(path)
    figures["ratio"] = {
        url: round(figures["full"]["latency_ms"][url]["p50"] / empty["p50"], 2)
        for url, empty in figures["empty"]["latency_ms"].items()
        if empty["p50"] > 0
    }
    return figures


def store_reads(bench: Bench) -> dict[str, Any]:
    """Statements per second of the ``web`` process with 0, 1 and 20 live pages, while
    the store stands still (idle) and while a worker drains jobs (busy: the snapshot
    changes at every poll and every page fetches its fragment again)."""
    seconds = max(2.0, bench.sizes.w5_seconds)
    path = bench.fresh("web-reads")
    db, counted = path / "q.db", path / "statements"
    found: dict[str, Any] = {"seconds": seconds}

    def window(server: WebServer, pages: int) -> tuple[float, float]:
        with live_pages(server, pages) as opened:
            time.sleep(1.5)  # streams open, first snapshot read
            before, fetched = statements(counted), sum(p.fragments for p in opened)
            time.sleep(seconds)
            spent = statements(counted) - before
            return spent / seconds, (sum(p.fragments for p in opened) - fetched) / seconds

    with web_server(db, counted=counted) as server:
        for pages in (0, 1, LIVE_COUNT):
            found[f"idle_{pages}_pages"] = round(window(server, pages)[0], 2)
        env = queuectl_env(db)
        n = max(100, int(seconds * 2 * 40 + 200))
        lines = "".join(json.dumps({"command": "sleep 0.02"}) + "\n" for _ in range(n))
        subprocess.run([QUEUECTL, "enqueue"], input=lines.encode(), env=env, check=True)
        with running(
            [QUEUECTL, "worker", "start", "--count", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ):
            for pages in (1, LIVE_COUNT):
                rate, fragments = window(server, pages)
                found[f"busy_{pages}_pages"] = round(rate, 2)
                found[f"busy_{pages}_pages_fragments"] = round(fragments, 1)
    bench.clean(path)
    return found


def _drain(bench: Bench, loaded: bool) -> float:
    path = bench.fresh(f"web-w2-{'loaded' if loaded else 'alone'}")
    db = path / "q.db"
    n = bench.sizes.w2_jobs
    try:
        with dashboard_load(db) if loaded else contextlib.nullcontext():
            result = Queuectl().drain(path, "true", n, 4)
        if not result.exactly_once:
            raise BenchError("W2 under the dashboard did not run every job exactly once")
        return n / result.seconds
    finally:
        bench.clean(path)


def _w4(bench: Bench, loaded: bool, n: int) -> list[float]:
    path = bench.fresh(f"web-w4-{'loaded' if loaded else 'alone'}")
    db = path / "q.db"
    try:
        build_sqlite_history(db, 0, pending=0)
        with (
            dashboard_load(db) if loaded else contextlib.nullcontext(),
            Queuectl().latency(path, db) as enqueue,
        ):
            return [after for after, _ in latency_samples(enqueue, path, n)]
    finally:
        bench.clean(path)


def unhindered(bench: Bench) -> dict[str, Any]:
    """W2 and W4 alone and under the dashboard, A B B A in every round."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    waits: dict[bool, list[float]] = {False: [], True: []}
    per_round = max(3, bench.sizes.w4_samples // bench.sizes.rounds)
    for round_no in range(bench.sizes.rounds):
        for loaded in (False, True, True, False):
            rates[loaded].append(_drain(bench, loaded))
        for loaded in (True, False, False, True):
            waits[loaded].extend(_w4(bench, loaded, per_round))
        note(
            f"web round {round_no + 1}: W2 {median(rates[False]):.0f} vs "
            f"{median(rates[True]):.0f} jobs/s, W4 p50 {median(waits[False]):.1f} vs "
            f"{median(waits[True]):.1f} ms (alone vs dashboard)"
        )
    w2 = {k: round(median(v), 1) for k, v in (("alone", rates[False]), ("dashboard", rates[True]))}
    w4 = {"alone": latency_stats(waits[False]), "dashboard": latency_stats(waits[True])}
    return {
        "w2_jobs": bench.sizes.w2_jobs,
        "w2_count": 4,
        "w2_jobs_per_s": w2,
        "w2_runs": {"alone": rates[False], "dashboard": rates[True]},
        "w4_samples": len(waits[False]),
        "w4_ms": w4,
        # Positive: the dashboard made it worse.
        "w2_change": round(1 - w2["dashboard"] / w2["alone"], 3),
        "w4_p50_change": round(w4["dashboard"]["p50"] / w4["alone"]["p50"] - 1, 3),
    }


def run_web(bench: Bench) -> dict[str, Any]:
    return {
        **latency_and_memory(bench),
        "store_reads": store_reads(bench),
        "workers": unhindered(bench),
    }


# The report -----------------------------------------------------------------------


def _goal(name: str, value: float, goal: float, *, higher: bool = False) -> dict[str, Any]:
    ok = value >= goal if higher else value <= goal
    sign = ">=" if higher else "<="
    return {"target": name, "value": value, "goal": f"{sign} {goal:g}", "ok": ok}


def targets(web: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's targets that a ``web`` run measured."""
    found = []
    for url, stats in web["full"]["latency_ms"].items():
        found.append(_goal(f"web {url} p50 ms at {web['full']['jobs']:,}", stats["p50"], TARGET_MS))
    for url, ratio in web["ratio"].items():
        found.append(_goal(f"web {url} full/empty", ratio, TARGET_RATIO))
    found.append(_goal("web idle RSS MiB", web["empty"]["rss_idle_mib"], TARGET_RSS_MIB))
    reads = web["store_reads"]
    found.append(
        _goal(
            f"web statements/s, {LIVE_COUNT} idle pages",
            reads[f"idle_{LIVE_COUNT}_pages"],
            TARGET_STATEMENTS_PER_S,
        )
    )
    # While jobs change, each distinct view renders once per change, not once per page.
    busy = reads[f"busy_{LIVE_COUNT}_pages"] / max(reads["busy_1_pages"], 0.1)
    found.append(
        _goal(f"web statements, {LIVE_COUNT} vs 1 busy page", round(busy, 2), len(LIVE_PAGES))
    )
    workers = web["workers"]
    found.append(_goal("web: W2 slower by", workers["w2_change"], TARGET_CHANGE))
    found.append(_goal("web: W4 p50 slower by", workers["w4_p50_change"], TARGET_CHANGE))
    return found


def table_rows(web: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    full = web["full"]["jobs"]
    for url, empty in web["empty"]["latency_ms"].items():
        big = web["full"]["latency_ms"][url]
        rows.append(
            (
                "web",
                f"GET {url}",
                f"empty / {full:,} jobs",
                f"{empty['p50']:.1f} / {big['p50']:.1f} ms",
                f"x{web['ratio'].get(url, float('nan')):.2f}",
            )
        )
    for label in ("empty", "full"):
        m = web[label]
        rows.append(
            (
                "web",
                "RSS",
                f"{label}: idle / after",
                f"{m['rss_idle_mib']:.1f} / {m['rss_after_mib']:.1f} MiB",
                "",
            )
        )
    reads = web["store_reads"]
    for key, value in reads.items():
        if key != "seconds":
            rows.append(("web", "store", key.replace("_", " "), f"{value:g} /s", ""))
    w = web["workers"]
    rows.append(
        (
            "web",
            "W2 c4",
            "alone / dashboard",
            f"{w['w2_jobs_per_s']['alone']:.0f} / {w['w2_jobs_per_s']['dashboard']:.0f} jobs/s",
            f"{-100 * w['w2_change']:+.1f} %",
        )
    )
    rows.append(
        (
            "web",
            "W4 p50",
            "alone / dashboard",
            f"{w['w4_ms']['alone']['p50']:.1f} / {w['w4_ms']['dashboard']['p50']:.1f} ms",
            f"{100 * w['w4_p50_change']:+.1f} %",
        )
    )
    return rows

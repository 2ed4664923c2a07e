"""scripts/bench.py keeps working: a small run without peers writes every workload's keys.

Not a timed test: the numbers of a shared CI machine mean nothing; the shape does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg

ROOT = Path(__file__).resolve().parents[2]

#: Each run takes tens of seconds: the ``slow`` session (which CI runs) has them.
pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
def test_quick_bench_without_peers_writes_every_workload(tmp_path: Path) -> None:
    """Issue 4's workloads; the dashboard's (``web``) has a test of its own below."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--no-peers",
            "--only",
            "W1a,W1b,W2,W3,W4,W5,W6",
            "--jobs",
            "30",
            "--w6-jobs",
            "3000",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"meta", "targets", "W1a", "W1b", "W2", "W3", "W4", "W5", "W6"} <= set(data)
    assert data["meta"]["loadavg_before"] and data["meta"]["machine"]["cores"]
    assert data["W1a"]["ms"]["queuectl enqueue"] > 0
    assert data["W1b"]["jobs_per_s"] > 0
    cells = {(c["system"], c["count"]) for c in data["W2"]["runs"]}
    assert {("queuectl", 1), ("queuectl", 4), ("queuectl -p2", 4)} <= cells
    assert all(c["exactly_once"] for c in data["W2"]["runs"])
    assert data["W3"]["runs"][0]["efficiency"] > 0
    assert data["W4"]["queuectl"]["samples"] > 0
    assert set(data["W4"]["queuectl"]["after_return_ms"]) == {"p50", "p99", "max"}
    idle = data["W5"]["systems"]["queuectl"]
    assert idle["rss_mib"] > 0 and idle["cpu_percent"] >= 0
    assert {"status_ms", "list_pending_ms", "claim_ms", "w4_p50_ms"} <= set(data["W6"]["ratio"])
    assert {t["target"] for t in data["targets"]} >= {"W1a enqueue ms", "W4 p50 ms"}
    assert "queuectl benchmarks" in result.stdout


@pytest.mark.postgres
@pytest.mark.timeout(960)
def test_quick_bench_on_postgres_runs_beside_sqlite(tmp_path: Path) -> None:
    """``--db``: W2, W4 and W6 on PostgreSQL and SQLite in one run, exactly once."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--no-peers",
            "--only",
            "W2,W4,W6",
            "--jobs",
            "30",
            "--w6-jobs",
            "2000",
            "--workdir",
            str(tmp_path / "work"),
            "--db",
            pg.require(),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(out.read_text())["postgres"]
    cells = {(r["system"], r["count"]): r for r in found["W2"]["runs"]}
    assert {s for s, _ in cells} == {"sqlite", "postgres"}
    assert all(r["exactly_once"] for r in cells.values()), cells
    assert set(found["W4"]) == {"sqlite", "postgres"}
    assert set(found["W6"]) >= {"sqlite", "postgres"}
    schemas = pg.run_sync(
        pg._fetch, pg.require(), "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_%'"
    )
    assert schemas == []


@pytest.mark.timeout(320)
def test_quick_web_bench_runs_alone_and_writes_its_figures(tmp_path: Path) -> None:
    """``--only web``: the dashboard's latency, memory, store reads and its effect on W2/W4."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--no-peers",
            "--only",
            "web",
            "--jobs",
            "30",
            "--w6-jobs",
            "2000",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data) >= {"meta", "targets", "web"} and "W2" not in data
    web = data["web"]
    urls = {"/", "/jobs", "/jobs/later-500", "/api/jobs", "/metrics"}
    for label in ("empty", "full"):
        assert set(web[label]["latency_ms"]) == urls
        assert all(s["p50"] > 0 for s in web[label]["latency_ms"].values())
        assert 0 < web[label]["rss_idle_mib"] <= web[label]["rss_peak_mib"]
    assert web["full"]["jobs"] == 2000 and set(web["ratio"]) == urls
    reads = web["store_reads"]
    # Statements are counted in the web process: none without a page, some with one.
    assert reads["idle_0_pages"] == 0 and reads["idle_1_pages"] > 0
    assert reads["busy_20_pages_fragments"] > 0
    workers = web["workers"]
    assert set(workers["w2_jobs_per_s"]) == {"alone", "dashboard"}
    assert set(workers["w4_ms"]["dashboard"]) == {"p50", "p99", "max"}
    assert any(t["target"] == "web idle RSS MiB" for t in data["targets"])
    assert "GET /metrics" in result.stdout


@pytest.mark.timeout(120)
def test_quick_bench_with_a_baseline_runs_both_builds_in_the_same_rounds(tmp_path: Path) -> None:
    """``--baseline VENV`` (here this very venv): W2 has a baseline twin of every queuectl
    row, each drained exactly once in its own store, and the report pairs them."""
    out, md = tmp_path / "bench.json", tmp_path / "tables.md"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--no-peers",
            "--only",
            "W2",
            "--jobs",
            "20",
            "--baseline",
            sys.prefix,
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
            "--markdown",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    cells = {(c["system"], c["count"]): c for c in data["W2"]["runs"]}
    assert set(cells) == {
        (system, count) for system in ("queuectl", "queuectl (baseline)") for count in (1, 4)
    } | {("queuectl -p2", 4), ("queuectl -p2 (baseline)", 4)}
    assert all(c["exactly_once"] and c["jobs_per_s"] > 0 for c in cells.values())
    assert data["meta"]["baseline"] == sys.prefix
    assert [t["id"] for t in data["issue15"]] == list(range(1, 9))
    assert all("baseline" in t for t in data["issue15"])
    assert "queuectl (baseline)" in result.stdout and "targets (issue 15)" in result.stdout
    table = md.read_text()
    assert "| W2 | queuectl c4 jobs/s |" in table and "Issue 15's targets" in table

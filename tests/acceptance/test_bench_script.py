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
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--no-peers",
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

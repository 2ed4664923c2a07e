"""Issue 15's targets table (scripts/bench_targets.py), computed from a synthetic run.

In-process and untimed: the figures are made up so that each target's verdict is known.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_targets import baseline_pairs, issue15_targets

B = " (baseline)"


def _drain(system: str, count: int, rate: float, once: bool = True, **extra: Any) -> dict[str, Any]:
    return {"system": system, "count": count, "jobs_per_s": rate, "exactly_once": once, **extra}


def _lat(p50: float, p99: float, call_p50: float = 0.0) -> dict[str, Any]:
    return {
        "after_return_ms": {"p50": p50, "p99": p99, "max": p99},
        "from_call_ms": {"p50": call_p50, "p99": call_p50, "max": call_p50},
    }


def synthetic() -> dict[str, Any]:
    """After: targets 1, 3, 6, 7 and 8 hold; 2, 4 and 5 do not. Baseline: only 8 holds."""
    return {
        "meta": {"baseline": "/tmp/before/.venv"},
        "W1a": {"ms": {"python -c 'import asyncio'": 50.0}},
        "W1b": {
            "jobs": 100_000,
            "jobs_per_s": 45_000,
            "big": {"jobs": 1_000_000, "peak_rss_mib": 70.0},
            "baseline": {
                "jobs": 100_000,
                "jobs_per_s": 30_000,
                "big": {"jobs": 1_000_000, "peak_rss_mib": 1400.0},
            },
        },
        "W2": {
            "runs": [
                _drain("queuectl", 1, 900),
                _drain("queuectl", 4, 1000),
                _drain("queuectl -p2", 4, 1100),
                _drain("queuectl" + B, 1, 800),
                _drain("queuectl" + B, 4, 800),
                _drain("queuectl -p2" + B, 4, 700, once=True),
                _drain("bare asyncio", 1, 1000),
                _drain("bare asyncio", 4, 1150),
                _drain("task-spooler", 4, 1200),
            ]
        },
        "W3": {
            "runs": [
                _drain("queuectl", 8, 70, efficiency=0.97),
                _drain("queuectl" + B, 8, 60, efficiency=0.90),
                _drain("bare asyncio", 8, 75, efficiency=0.98),
            ]
        },
        "W4": {
            "queuectl": _lat(2.5, 9.0),
            "queuectl (CLI)": _lat(-20, -10, call_p50=70.0),
            "queuectl" + B: _lat(4.0, 5.0),
            "queuectl (CLI)" + B: _lat(-20, -10, call_p50=140.0),
        },
        "W5": {
            "systems": {
                "queuectl": {"rss_mib": 28.0, "cpu_percent": 0.1},
                "queuectl -p2": {"rss_mib": 54.0, "cpu_percent": 0.2},
                "queuectl" + B: {"rss_mib": 27.0, "cpu_percent": 0.1},
                "queuectl -p2" + B: {"rss_mib": 94.0, "cpu_percent": 0.2},
            }
        },
        "W6": {"ratio": {"status_ms": 1.1, "claim_ms": 0.6}},
        "postgres": {
            "W2": {
                "runs": [
                    _drain("sqlite", 4, 1000),
                    _drain("postgres", 4, 850),
                    _drain("sqlite" + B, 4, 900),
                    _drain("postgres" + B, 4, 600),
                    _drain("procrastinate", 4, 300),
                    _drain("procrastinate (async)", 4, 400),
                ]
            },
            "W4": {"sqlite": _lat(3.0, 4.0), "sqlite" + B: _lat(4.0, 6.0)},
        },
    }


def test_every_target_has_one_row_with_its_verdict_after_and_before() -> None:
    rows = {row["id"]: row for row in issue15_targets(synthetic())}
    assert sorted(rows) == list(range(1, 9))
    assert {i: rows[i]["ok"] for i in rows} == {
        1: True,  # 900/1000 = 0.90 and 1000/1150 = 0.87, both >= 0.85
        2: False,  # best 1100 / 1200 = 0.92
        3: True,  # 0.97 / 0.98 = 0.99
        4: False,  # p99 9 ms holds, p50 2.5 holds, CLI 70 / 50 = 1.4 > 1.25
        5: False,  # 45,000 jobs/s < 50,000; 70 MiB holds
        6: True,  # 850/1000 = 0.85; 850 / 400 (the faster Procrastinate) = 2.1
        7: True,  # 54 <= 2 x 28
        8: True,
    }
    assert {i: rows[i]["baseline_ok"] for i in rows} == {
        1: False,  # 800 / 1150
        2: False,
        3: False,  # 0.90 / 0.98
        4: False,
        5: False,
        6: False,  # 600 / 900
        7: False,  # 94 > 2 x 27
        8: True,  # W5 27 MiB, 0.1 %, every drain once (W6 runs for the build under test only)
    }
    assert "1.4" in rows[4]["value"] and "2.8" in rows[4]["baseline"]
    assert "2.12" in rows[6]["value"]  # against async Procrastinate (400), not sync (300)
    assert "W6 worst full/empty (status_ms) 1.1" in rows[8]["value"]
    assert "W6" not in rows[8]["baseline"]


def test_a_target_the_run_did_not_measure_says_so_and_a_broken_drain_fails_target_8() -> None:
    results = synthetic()
    del results["postgres"]
    results["W3"]["runs"][0]["exactly_once"] = False
    rows = {row["id"]: row for row in issue15_targets(results)}
    assert rows[6]["ok"] is None and rows[6]["value"].count("-") == 2
    assert rows[8]["ok"] is False and "exactly once no" in rows[8]["value"]
    # Without a baseline in the run there are no baseline columns.
    del results["meta"]["baseline"]
    assert all("baseline" not in row for row in issue15_targets(results))


@pytest.mark.parametrize("work", ["W2", "W4"])
def test_after_against_baseline_pairs_each_figure_with_its_twin(work: str) -> None:
    pairs = {(p["workload"], p["what"]): p for p in baseline_pairs(synthetic())}
    if work == "W2":
        c4 = pairs[("W2", "queuectl c4 jobs/s")]
        assert (c4["after"], c4["baseline"], c4["ratio"]) == (1000, 800, 1.25)
        assert pairs[("W2", "queuectl -p2 c4 jobs/s")]["ratio"] == pytest.approx(1.571, abs=1e-3)
        assert ("PG W2", "postgres c4 jobs/s") in pairs
        assert not any("bare" in what or "spooler" in what for _, what in pairs)
    else:
        cli = pairs[("W4", "queuectl (CLI) from_call p50 ms")]
        assert cli["ratio"] == 0.5 and cli["higher_is_better"] is False
        assert pairs[("PG W4", "sqlite p50 ms")]["ratio"] == 0.75

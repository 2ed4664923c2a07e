"""Issue 15's targets, computed from one run's results (``bench.py``'s JSON), and the
build under test against its ``--baseline``.

Nothing here measures: every figure comes from the results dict, so the tables can be
rebuilt from a saved ``--json`` file and tested on a synthetic one. A target whose
figures the run did not measure is listed with ``ok = None`` ("not measured"), so the
table always has one line per target of the issue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BASELINE = " (baseline)"
BARE = "bare asyncio"
TSP = "task-spooler"
W3_COUNT = 8
#: W6's "flat": every figure of the full store within this factor of the empty one's.
W6_FLAT = 2.0


def _drain(results: dict[str, Any], work: str, system: str, count: int) -> dict[str, Any] | None:
    for cell in results.get(work, {}).get("runs", []):
        if cell["system"] == system and cell["count"] == count:
            return dict(cell)
    return None


def _rate(results: dict[str, Any], system: str, count: int, work: str = "W2") -> float | None:
    cell = _drain(results, work, system, count)
    return None if cell is None else float(cell["jobs_per_s"])


def _pg_rate(results: dict[str, Any], system: str, count: int) -> float | None:
    return _rate(results.get("postgres", {}), system, count)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class _Check:
    """The sub-checks of one target: each a named value against a threshold."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, float | None, bool | None]] = []

    def add(self, name: str, value: float | None, goal: float, *, higher: bool) -> None:
        ok = None if value is None else (value >= goal if higher else value <= goal)
        self.parts.append((name, value, ok))

    def flag(self, name: str, ok: bool | None) -> None:
        self.parts.append((name, None, ok))

    def text(self) -> str:
        shown = []
        for name, value, ok in self.parts:
            if value is not None:
                shown.append(
                    f"{name} {value:,.0f}" if abs(value) >= 1000 else f"{name} {value:.3g}"
                )
            elif ok is not None:
                shown.append(f"{name} {'yes' if ok else 'no'}")
            else:
                shown.append(f"{name} -")
        return ", ".join(shown)

    def ok(self) -> bool | None:
        oks = [ok for _, _, ok in self.parts]
        if any(ok is False for ok in oks):
            return False
        return None if not oks or any(ok is None for ok in oks) else True


Spec = tuple[int, str, str, Callable[[dict[str, Any], str, _Check], None]]


def _t1(r: dict[str, Any], sfx: str, c: _Check) -> None:
    for count in (1, 4):
        value = _div(_rate(r, "queuectl" + sfx, count), _rate(r, BARE, count))
        c.add(f"c{count}", value, 0.85, higher=True)


def _t2(r: dict[str, Any], sfx: str, c: _Check) -> None:
    rates = [_rate(r, "queuectl" + sfx, 4), _rate(r, "queuectl -p2" + sfx, 4)]
    best = max((x for x in rates if x is not None), default=None)
    c.add("best of -p1/-p2", _div(best, _rate(r, TSP, 4)), 1.0, higher=True)


def _t3(r: dict[str, Any], sfx: str, c: _Check) -> None:
    ours, bare = _drain(r, "W3", "queuectl" + sfx, W3_COUNT), _drain(r, "W3", BARE, W3_COUNT)
    value = _div(ours and ours["efficiency"], bare and bare["efficiency"])
    c.add("eff ratio", value, 0.98, higher=True)


def _t4(r: dict[str, Any], sfx: str, c: _Check) -> None:
    lib = r.get("W4", {}).get("queuectl" + sfx, {}).get("after_return_ms", {})
    c.add("p50 ms", lib.get("p50"), 3.0, higher=False)
    c.add("p99 ms", lib.get("p99"), 10.0, higher=False)
    cli = r.get("W4", {}).get("queuectl (CLI)" + sfx, {}).get("from_call_ms", {})
    asyncio_ms = r.get("W1a", {}).get("ms", {}).get("python -c 'import asyncio'")
    c.add(
        "CLI spawn-to-start / import asyncio", _div(cli.get("p50"), asyncio_ms), 1.25, higher=False
    )


def _t5(r: dict[str, Any], sfx: str, c: _Check) -> None:
    w1b = r.get("W1b", {})
    if sfx:
        w1b = w1b.get("baseline", {})
    c.add("jobs/s", w1b.get("jobs_per_s"), 50_000, higher=True)
    big = w1b.get("big") or {}
    peak = big.get("peak_rss_mib") if big.get("jobs", 0) >= 1_000_000 else None
    c.add("10^6 lines peak MiB", peak, 100, higher=False)


def _t6(r: dict[str, Any], sfx: str, c: _Check) -> None:
    pg = _pg_rate(r, "postgres" + sfx, 4)
    c.add("vs sqlite", _div(pg, _pg_rate(r, "sqlite" + sfx, 4)), 0.8, higher=True)
    peers = [_pg_rate(r, name, 4) for name in ("procrastinate", "procrastinate (async)")]
    faster = max((x for x in peers if x is not None), default=None)
    c.add("vs procrastinate (faster task)", _div(pg, faster), 2.0, higher=True)


def _t7(r: dict[str, Any], sfx: str, c: _Check) -> None:
    idle = r.get("W5", {}).get("systems", {})
    two = idle.get("queuectl -p2" + sfx, {}).get("rss_mib")
    one = idle.get("queuectl" + sfx, {}).get("rss_mib")
    c.add("-p2 RSS / (2 x one)", _div(two, None if one is None else 2 * one), 1.0, higher=False)


def _t8(r: dict[str, Any], sfx: str, c: _Check) -> None:
    idle = r.get("W5", {}).get("systems", {}).get("queuectl" + sfx, {})
    c.add("W5 MiB", idle.get("rss_mib"), 40, higher=False)
    c.add("W5 CPU %", idle.get("cpu_percent"), 0.5, higher=False)
    if not sfx:  # W6 runs for the build under test only
        ratios = r.get("W6", {}).get("ratio") or {}
        worst = max(ratios, key=lambda k: ratios[k], default=None)
        name = f"W6 worst full/empty ({worst})" if worst else "W6 worst full/empty"
        c.add(name, ratios.get(worst) if worst else None, W6_FLAT, higher=False)
    c.flag("exactly once", _exactly_once(r, sfx))


def _exactly_once(r: dict[str, Any], sfx: str) -> bool | None:
    """Whether every drain of this build (W2, W3, PostgreSQL W2) ran each job once."""
    cells = [
        cell
        for source in (r.get("W2", {}), r.get("W3", {}), r.get("postgres", {}).get("W2", {}))
        for cell in source.get("runs", [])
        if _of_build(cell["system"], sfx)
    ]
    return all(cell["exactly_once"] for cell in cells) if cells else None


def _of_build(system: str, sfx: str) -> bool:
    ours = system.startswith("queuectl") or system.split(" (")[0] in ("sqlite", "postgres")
    return ours and (system.endswith(sfx) if sfx else not system.endswith(BASELINE))


TARGETS: list[Spec] = [
    (1, "W2 c1 and c4 vs bare asyncio", ">= 0.85x", _t1),
    (2, "W2 c4 (best of -p1, -p2) vs task-spooler", ">= 1.0x", _t2),
    (3, "W3 efficiency vs bare asyncio, start-up included", ">= 0.98x", _t3),
    (4, "W4 after return; CLI spawn to start", "p50 <= 3 ms, p99 <= 10 ms; <= 1.25x", _t4),
    (5, "W1b 100,000 lines; 10^6 lines", ">= 50,000 jobs/s; <= 100 MiB", _t5),
    (6, "PostgreSQL W2 c4 vs SQLite; vs Procrastinate", ">= 0.8x; >= 2x", _t6),
    (7, "W5 c4 idle: --processes 2 vs 2 single workers", "<= 1.0x", _t7),
    (
        8,
        "No regression: W5 idle, W6 flat (build under test only), exactly once",
        "<= 40 MiB, <= 0.5 %; <= 2x; all",
        _t8,
    ),
]


def issue15_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target of issue 15: the values measured, the baseline's if the run had
    one, the threshold, and whether it holds (``None``: not measured in this run)."""
    rows = []
    has_baseline = bool(results.get("meta", {}).get("baseline"))
    for number, name, goal, compute in TARGETS:
        after = _Check()
        compute(results, "", after)
        row: dict[str, Any] = {
            "id": number,
            "target": name,
            "goal": goal,
            "value": after.text(),
            "ok": after.ok(),
        }
        if has_baseline:
            before = _Check()
            compute(results, BASELINE, before)
            row["baseline"] = before.text()
            row["baseline_ok"] = before.ok()
        rows.append(row)
    return rows


def holds(ok: bool | None) -> str:
    return "not measured" if ok is None else ("yes" if ok else "NO")


# After against the baseline ----------------------------------------------------------


class _Pairs(list[dict[str, Any]]):
    def add(self, work: str, what: str, after: Any, before: Any, *, higher: bool) -> None:
        if after is None or not before:
            return
        self.append(
            {
                "workload": work,
                "what": what,
                "after": after,
                "baseline": before,
                "ratio": round(after / before, 3),
                "higher_is_better": higher,
            }
        )


def baseline_pairs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each queuectl figure that the run has for both builds: after, baseline, after ÷
    baseline, and which way is better (``higher``)."""
    pairs = _Pairs()
    ms = results.get("W1a", {}).get("ms", {})
    after, before = ms.get("queuectl enqueue"), ms.get("queuectl enqueue" + BASELINE)
    pairs.add("W1a", "enqueue -c true, ms", after, before, higher=False)
    w1b = results.get("W1b", {})
    base = w1b.get("baseline", {})
    pairs.add("W1b", "jobs/s", w1b.get("jobs_per_s"), base.get("jobs_per_s"), higher=True)
    big, base_big = w1b.get("big") or {}, base.get("big") or {}
    what = f"{big.get('jobs', 0):,} lines, peak MiB"
    pairs.add("W1b", what, big.get("peak_rss_mib"), base_big.get("peak_rss_mib"), higher=False)
    _drain_pairs(results, pairs)
    w4 = results.get("W4", {})
    for name, key in (("queuectl", "after_return_ms"), ("queuectl (CLI)", "from_call_ms")):
        for q in ("p50", "p99"):
            a = w4.get(name, {}).get(key, {}).get(q)
            b = w4.get(name + BASELINE, {}).get(key, {}).get(q)
            pairs.add("W4", f"{name} {key.removesuffix('_ms')} {q} ms", a, b, higher=False)
    idle = results.get("W5", {}).get("systems", {})
    for name in ("queuectl", "queuectl -p2"):
        a, b = idle.get(name, {}), idle.get(name + BASELINE, {})
        pairs.add("W5", f"{name} RSS MiB", a.get("rss_mib"), b.get("rss_mib"), higher=False)
        pairs.add("W5", f"{name} CPU %", a.get("cpu_percent"), b.get("cpu_percent"), higher=False)
    _postgres_pairs(results, pairs)
    return list(pairs)


def _drain_pairs(results: dict[str, Any], pairs: _Pairs) -> None:
    for work, key in (("W2", "jobs_per_s"), ("W3", "efficiency")):
        for cell in results.get(work, {}).get("runs", []):
            name = cell["system"]
            if not name.startswith("queuectl") or name.endswith(BASELINE):
                continue
            other = _drain(results, work, name + BASELINE, cell["count"]) or {}
            what = f"{name} c{cell['count']} {key.replace('_per_s', '/s')}"
            pairs.add(work, what, cell[key], other.get(key), higher=True)


def _postgres_pairs(results: dict[str, Any], pairs: _Pairs) -> None:
    pgr = results.get("postgres", {})
    for cell in pgr.get("W2", {}).get("runs", []):
        if cell["system"] in ("sqlite", "postgres"):
            other = _pg_rate(results, cell["system"] + BASELINE, cell["count"])
            what = f"{cell['system']} c{cell['count']} jobs/s"
            pairs.add("PG W2", what, cell["jobs_per_s"], other, higher=True)
    for name in ("sqlite", "postgres"):
        for q in ("p50", "p99"):
            a = pgr.get("W4", {}).get(name, {}).get("after_return_ms", {}).get(q)
            b = pgr.get("W4", {}).get(name + BASELINE, {}).get("after_return_ms", {}).get(q)
            pairs.add("PG W4", f"{name} {q} ms", a, b, higher=False)

#!/usr/bin/env python3
"""queuectl's benchmark suite: the workloads of issue 4 against the physical limit and the peers.

Run it with the interpreter that has queuectl installed (it uses the ``queuectl``
script beside ``sys.executable``)::

    python scripts/bench.py                       # everything, with peers, 3 rounds
    python scripts/bench.py --quick --no-peers    # a small smoke run
    python scripts/bench.py --only W2,W4 --json out.json --plot out.png

Workloads (see docs/benchmarks.md for the method):

* W1a  median wall time of one ``queuectl enqueue -c true`` process
* W1b  jobs/s of one ``queuectl enqueue`` reading 100,000 JSON Lines from stdin
* W2   drain 2,000 ``true`` jobs with ``worker start --burst`` at --count 1, 4, 16 and
       ``--processes 2``: jobs/s including worker start, and an exactly-once check
* W3   200 x ``sleep 0.1`` at --count 8: efficiency = ideal 2.5 s / wall
* W4   enqueue-to-start latency with an idle worker in another process
* W5   CPU % and RSS of an idle ``worker start --count 4``
* W6   status, list, one claim and W4 with 10^6 jobs in the database vs an empty one
* web  the dashboard (bench_web.py): page, API and /metrics latency at 10^6 jobs vs
       empty, RSS of an idle ``web``, store statements/s with 20 live pages, and W2/W4
       alone vs under a dashboard load (``--only web`` runs it alone)

Peers run in the same rounds, interleaved (A B A B ...); every figure is the median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_peers import (
    RQ,
    Bare,
    Drain,
    Huey,
    PeerSetup,
    Queuectl,
    QueuectlCli,
    TaskSpooler,
    ensure_python_peers,
    ensure_tsp,
    redis_server,
)
from bench_targets import baseline_pairs, holds, issue15_targets
from benchlib import (
    FULL,
    PY,
    QUEUECTL,
    QUICK,
    THIS,
    Bench,
    BenchError,
    Build,
    Sizes,
    build_sqlite_history,
    create_store,
    git_revision,
    group_pids,
    latency_samples,
    latency_summary,
    loadavg,
    machine,
    median,
    note,
    proc_cpu_seconds,
    proc_rss_mib,
    run,
    timed,
    w6_measure,
    w6_ratio,
    warm_bytecode,
)

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1a", "W1b", "W2", "W3", "W4", "W5", "W6", "web")


W3_SLEEP_S = 0.1
W3_COUNT = 8
W5_COUNT = 4


class SqliteBench(Bench):
    """The workloads on the SQLite store, with the peers interleaved."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, work: Path) -> None:
        super().__init__(sizes, work)
        self.args = args
        self.peers = PeerSetup()
        self.baseline: Build | None = getattr(args, "baseline_build", None)

    def builds(self) -> list[Build]:
        """The build under test, then the ``--baseline`` one if given."""
        return [THIS] + ([self.baseline] if self.baseline else [])

    def systems(self) -> list[Any]:
        """The peers that could be set up, in the order they run in each round."""
        found: list[Any] = [Bare()]
        if self.peers.python is not None:
            found.append(Huey(self.peers.python))
            if self.peers.redis_url is not None:
                found.append(RQ(self.peers.python, self.peers.redis_url))
        if self.peers.tsp is not None:
            found.append(TaskSpooler(self.peers.tsp))
        return found if self.args.peers else []

    # W1a -----------------------------------------------------------------

    def w1a(self) -> dict[str, Any]:
        db = self.fresh("w1a") / "q.db"
        env = Queuectl.env(db)
        create_store(env)
        probes: dict[str, list[str | Path]] = {
            "queuectl enqueue": [QUEUECTL, "enqueue", "-c", "true"],
            "python -c pass": [PY, "-c", "pass"],
            "python -c 'import asyncio'": [PY, "-c", "import asyncio"],
        }
        if self.baseline:
            # Its own store: the two builds' schemas may differ.
            base_db = self.fresh("w1a-baseline") / "q.db"
            create_store(Queuectl.env(base_db), python=self.baseline.python)
            probes["queuectl enqueue (baseline)"] = [
                self.baseline.queuectl,
                "enqueue",
                "-c",
                "true",
            ]
        if self.peers.tsp and self.args.peers:
            probes["tsp true"] = [self.peers.tsp, "true"]
        samples: dict[str, list[float]] = {k: [] for k in probes}
        with self._tsp_env() as tsp_env:
            for _ in range(self.sizes.w1a_runs):
                for name, argv in probes.items():
                    e = tsp_env if name.startswith("tsp") else env
                    if name.endswith("(baseline)"):
                        e = Queuectl.env(base_db)
                    samples[name].append(1000 * timed(lambda a=argv, e=e: run(a, env=e)))
        profile = import_profile(env)
        return {
            "ms": {k: round(median(v), 1) for k, v in samples.items()},
            "samples_ms": {k: [round(x, 1) for x in v] for k, v in samples.items()},
            "import_profile": profile,
        }

    @contextlib.contextmanager
    def _tsp_env(self) -> Iterator[dict[str, str]]:
        if not (self.peers.tsp and self.args.peers):
            yield {}
            return
        path = self.fresh("w1a-tsp")
        with TaskSpooler(self.peers.tsp)._server(path, 4) as env:
            yield env

    # W1b -----------------------------------------------------------------

    def w1b(self) -> dict[str, Any]:
        n = self.sizes.w1b_jobs
        lines = "".join(
            f'{{"id":"w1b-{i}","command":"echo {i}","priority":{i % 3}}}\n' for i in range(n)
        ).encode()
        runs: dict[str, list[float]] = {b.label: [] for b in self.builds()}
        for _ in range(self.sizes.rounds):
            for build in self.builds():
                path = self.fresh(f"w1b-{build.label}")
                env = Queuectl.env(path / "q.db")
                create_store(env, python=build.python)
                argv = [build.queuectl, "enqueue"]
                runs[build.label].append(timed(lambda a=argv, e=env: run(a, input=lines, env=e)))
                self.clean(path)
        found = {}
        for build in self.builds():
            seconds = runs[build.label]
            found[build.label] = {
                "jobs": n,
                "seconds": [round(s, 3) for s in seconds],
                "jobs_per_s": round(n / median(seconds)),
                "big": self._w1b_memory(10 * n, build),
            }
        result = found[THIS.label]
        if self.baseline:
            result["baseline"] = found[self.baseline.label]
        return result

    def _w1b_memory(self, n: int, build: Build = THIS) -> dict[str, Any]:
        """One ``enqueue`` of ``n`` JSON Lines from a file: wall time and peak RSS (issue 15)."""
        path = self.fresh("w1b-big")
        env = Queuectl.env(path / "q.db")
        create_store(env, python=build.python)
        lines = path / "jobs.jsonl"
        with lines.open("w") as f:
            for i in range(n):
                f.write(f'{{"id":"big-{i}","command":"echo {i}","priority":{i % 3}}}\n')
        with lines.open("rb") as stdin:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [str(build.queuectl), "enqueue"], stdin=stdin, stdout=subprocess.DEVNULL, env=env
            )
            # wait4: the peak RSS of this one child, not of every child so far.
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.clean(path)
        if proc.returncode != 0:
            raise BenchError(f"enqueue of {n:,} lines exited {proc.returncode}")
        return {
            "jobs": n,
            "seconds": round(seconds, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        }

    # W2 / W3 ---------------------------------------------------------------

    def drain_grid(
        self, command: str, n: int, counts: tuple[int, ...], label: str
    ) -> list[dict[str, Any]]:
        """Every system at every count, ``rounds`` times, interleaved; medians per cell."""
        cells: dict[tuple[str, int], list[Drain]] = {}
        order: list[tuple[Any, int]] = []
        for count in counts:
            for build in self.builds():
                order.append((Queuectl(build=build), count))
                if count >= 2:
                    order.append((Queuectl(processes=2, build=build), count))
            order.extend((system, count) for system in self.systems())
        for round_no in range(self.sizes.rounds):
            for system, count in order:
                path = self.fresh(f"{label}-{system.name}-{count}")
                try:
                    result = system.drain(path, command, n, count)
                except BenchError as exc:
                    note(f"{label} {system.name} --count {count}: {exc}")
                    continue
                finally:
                    self.clean(path)
                cells.setdefault((system.name, count), []).append(result)
                note(
                    f"{label} round {round_no + 1}: {system.name:<14} count {count:>2}: "
                    f"{n / result.seconds:8.0f} jobs/s  {result.seconds:6.3f} s"
                    f"{'' if result.exactly_once else '  NOT EXACTLY ONCE'}"
                )
        return [
            {
                "system": name,
                "count": count,
                "seconds": [round(r.seconds, 4) for r in runs],
                "wall_s": round(median([r.seconds for r in runs]), 4),
                "jobs_per_s": round(n / median([r.seconds for r in runs]), 1),
                "exactly_once": all(r.exactly_once for r in runs),
                **(
                    {"span_s": round(median([r.span_s for r in runs]), 4)}
                    if all(r.span_s is not None for r in runs)
                    else {}
                ),
            }
            for (name, count), runs in cells.items()
        ]

    def w2(self) -> dict[str, Any]:
        n = self.sizes.w2_jobs
        return {
            "jobs": n,
            "command": "true",
            "runs": self.drain_grid("true", n, self.sizes.w2_counts, "W2"),
        }

    def w3(self) -> dict[str, Any]:
        n = self.sizes.w3_jobs
        ideal = n * W3_SLEEP_S / W3_COUNT
        runs = self.drain_grid(f"sleep {W3_SLEEP_S}", n, (W3_COUNT,), "W3")
        for cell in runs:
            cell["efficiency"] = round(ideal / cell["wall_s"], 3)
            if "span_s" in cell:
                # Without the worker's start-up: first attempt start to last end.
                cell["efficiency_after_start"] = round(ideal / cell["span_s"], 3)
        return {"jobs": n, "count": W3_COUNT, "ideal_s": ideal, "runs": runs}

    # W4 --------------------------------------------------------------------

    def w4(self) -> dict[str, Any]:
        systems: list[Any] = []
        for build in self.builds():
            systems += [Queuectl(build=build), QueuectlCli(build)]
        systems += [s for s in self.systems() if hasattr(s, "latency")]
        samples: dict[str, list[tuple[float, float]]] = {}
        per_round = max(1, -(-self.sizes.w4_samples // self.sizes.rounds))
        for _ in range(self.sizes.rounds):
            for system in systems:
                path = self.fresh(f"w4-{system.name}")
                try:
                    with system.latency(path) as enqueue:
                        samples.setdefault(system.name, []).extend(
                            latency_samples(enqueue, path, per_round)
                        )
                except BenchError as exc:
                    note(f"W4 {system.name}: {exc}")
                finally:
                    self.clean(path)
        return {name: latency_summary(values) for name, values in samples.items()}

    # W5 --------------------------------------------------------------------

    def w5(self) -> dict[str, Any]:
        # One process, and --processes 2 (issue 15: the pair against two single workers).
        systems: list[Any] = []
        for build in self.builds():
            systems += [Queuectl(build=build), Queuectl(processes=2, build=build)]
        systems += [s for s in self.systems() if hasattr(s, "idle")]
        found: dict[str, Any] = {}
        for system in systems:
            path = self.fresh(f"w5-{system.name}")
            try:
                with system.idle(path, W5_COUNT) as leaders:
                    found[system.name] = idle_usage(leaders, self.sizes.w5_seconds)
            except BenchError as exc:
                note(f"W5 {system.name}: {exc}")
            finally:
                self.clean(path)
        return {"count": W5_COUNT, "seconds": self.sizes.w5_seconds, "systems": found}

    # W6 --------------------------------------------------------------------

    def w6(self) -> dict[str, Any]:
        n = self.sizes.w6_jobs
        figures: dict[str, dict[str, float]] = {}
        for label, history in (("empty", 0), ("full", n)):
            path = self.fresh(f"w6-{label}")
            db = path / "q.db"
            built = timed(lambda d=db, h=history: build_sqlite_history(d, h))
            note(f"W6: built the {label} database ({history:,} finished jobs) in {built:.1f} s")
            figures[label] = w6_measure(
                str(db), self.sizes.w6_samples, partial(self._latency, path, db)
            )
            figures[label]["build_s"] = round(built, 1)
            self.clean(path)
        ratios = w6_ratio(figures)
        return {"jobs": n, "empty": figures["empty"], "full": figures["full"], "ratio": ratios}

    # web (issue 13) -------------------------------------------------------------

    def web(self) -> dict[str, Any]:
        from bench_web import run_web

        return run_web(self)

    @staticmethod
    def _latency(path: Path, db: Path, n: int) -> list[tuple[float, float]]:
        with Queuectl().latency(path, db) as enqueue:
            return latency_samples(enqueue, path, n)


def import_profile(env: dict[str, str]) -> list[dict[str, Any]]:
    """``-X importtime`` of one ``queuectl enqueue``: the costliest top-level imports."""
    code = (
        "import sys; sys.argv = ['queuectl', 'enqueue', '-c', 'true'];"
        " import queuectl.cli as c; c.main()"
    )
    out = run([PY, "-X", "importtime", "-c", code], env=env)
    rows = []
    for line in out.stderr.decode().splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and len(m.group(3)) <= 2:
            rows.append({"module": m.group(4), "cumulative_ms": int(m.group(2)) / 1000})
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:12]


def idle_usage(leaders: list[int], seconds: float) -> dict[str, float]:
    """CPU % (of one core) and RSS of the idle process groups led by ``leaders``."""
    time.sleep(1.0)
    pids = [p for leader in leaders for p in group_pids(leader)]
    cpu0 = sum(proc_cpu_seconds(p) for p in pids)
    start = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - start
    cpu1 = sum(proc_cpu_seconds(p) for p in pids)
    rss = [proc_rss_mib(p) for p in pids]
    return {
        "processes": len(pids),
        "cpu_percent": round(100 * (cpu1 - cpu0) / wall, 3),
        "rss_mib": round(sum(r[0] for r in rss), 1),
        "hwm_mib": round(sum(r[1] for r in rss), 1),
    }


# Targets and report -------------------------------------------------------------


def _cell(results: dict[str, Any], work: str, system: str, count: int) -> dict[str, Any] | None:
    for cell in results.get(work, {}).get("runs", []):
        if cell["system"] == system and cell["count"] == count:
            return dict(cell)
    return None


def _rate(results: dict[str, Any], system: str, count: int) -> float | None:
    cell = _cell(results, "W2", system, count)
    return None if cell is None else float(cell["jobs_per_s"])


def _ratio_target(
    results: dict[str, Any], name: str, a: tuple[str, int], b: tuple[str, int], goal: float
) -> dict[str, Any] | None:
    ra, rb = _rate(results, *a), _rate(results, *b)
    if ra is None or rb is None:
        return None
    value = ra / rb
    return {"target": name, "value": round(value, 2), "goal": f">= {goal:g}", "ok": value >= goal}


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each issue-4 target that this run measured: value, goal, and whether it holds."""
    q, q2 = "queuectl", "queuectl -p2"
    found: list[dict[str, Any] | None] = [
        _ratio_target(results, "W2 c4 vs task-spooler", (q, 4), ("task-spooler", 4), 1.0),
        _ratio_target(results, "W2 c4 vs huey", (q, 4), ("huey", 4), 2.0),
        _ratio_target(results, "W2 c1 vs bare asyncio", (q, 1), ("bare asyncio", 1), 0.9),
        _ratio_target(results, "W2 c4: -p2 vs -p1", (q2, 4), (q, 4), 1.0),
        _ratio_target(results, "W2 c16: -p2 vs -p1", (q2, 16), (q, 16), 1.0),
    ]
    w3 = _cell(results, "W3", q, W3_COUNT)
    if w3:
        found.append(_goal("W3 efficiency", w3["efficiency"], 0.95, higher=True))
    w4 = results.get("W4", {}).get(q)
    if w4:
        found.append(_goal("W4 p50 ms", w4["after_return_ms"]["p50"], 5, higher=False))
        found.append(_goal("W4 p99 ms", w4["after_return_ms"]["p99"], 50, higher=False))
    w5 = results.get("W5", {}).get("systems", {}).get(q)
    if w5:
        found.append(_goal("W5 idle CPU %", w5["cpu_percent"], 0.5, higher=False))
        found.append(_goal("W5 RSS MiB", w5["rss_mib"], 40, higher=False))
    w1a = results.get("W1a", {}).get("ms", {}).get("queuectl enqueue")
    if w1a is not None:
        found.append(_goal("W1a enqueue ms", w1a, 60, higher=False))
    w1b = results.get("W1b", {}).get("jobs_per_s")
    if w1b is not None:
        found.append(_goal("W1b jobs/s", w1b, 50_000, higher=True))
    big = results.get("W1b", {}).get("big")
    if big is not None and big["jobs"] >= 1_000_000:
        found.append(_goal("W1b 10^6 lines peak MiB", big["peak_rss_mib"], 100, higher=False))
    for key, value in results.get("W6", {}).get("ratio", {}).items():
        found.append(_goal(f"W6 {key} full/empty", value, 2, higher=False))
    if "web" in results:
        from bench_web import targets

        found.extend(targets(results["web"]))
    return [t for t in found if t is not None]


def _goal(name: str, value: float, goal: float, *, higher: bool) -> dict[str, Any]:
    ok = value >= goal if higher else value <= goal
    return {
        "target": name,
        "value": value,
        "goal": f"{'>=' if higher else '<='} {goal:g}",
        "ok": ok,
    }


def report(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title="queuectl benchmarks", show_lines=False)
    for column in ("workload", "system", "setting", "result", "vs queuectl"):
        table.add_column(column, justify="right" if column in ("result", "vs queuectl") else "left")
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)
    targets = Table(title="targets (issues 4 and 13)")
    for column in ("target", "value", "goal", "holds"):
        targets.add_column(column)
    for t in results.get("targets", []):
        targets.add_row(t["target"], str(t["value"]), t["goal"], "yes" if t["ok"] else "[red]NO[/]")
    console.print(targets)
    console.print(issue15_table(results, Table))
    pairs = baseline_pairs(results)
    if pairs:
        versus = Table(title="after vs baseline (" + str(results["meta"].get("baseline")) + ")")
        for column in ("workload", "what", "after", "baseline", "after / baseline"):
            versus.add_column(column, justify="left" if column in ("workload", "what") else "right")
        for p in pairs:
            versus.add_row(
                p["workload"], p["what"], f"{p['after']:g}", f"{p['baseline']:g}", _ratio_text(p)
            )
        console.print(versus)
    meta = results["meta"]
    console.print(
        f"load average before {meta['loadavg_before']}, after {meta['loadavg_after']}; "
        f"{meta['machine']['cores']} cores, {meta['machine']['cpu']}"
    )


def issue15_table(results: dict[str, Any], table_type: Any) -> Any:
    """The issue-15 targets as a rich table (``table_type`` is ``rich.table.Table``)."""
    rows = results.get("issue15", [])
    baseline = any("baseline" in row for row in rows)
    table = table_type(title="targets (issue 15)")
    columns = ["#", "target", "goal", "value", "holds"]
    columns += ["baseline value", "baseline holds"] if baseline else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = [str(row["id"]), row["target"], row["goal"], row["value"], _holds(row["ok"])]
        if baseline:
            cells += [row.get("baseline", ""), _holds(row.get("baseline_ok"))]
        table.add_row(*cells)
    return table


def _holds(ok: bool | None) -> str:
    return "[red]NO[/]" if ok is False else holds(ok)


def _ratio_text(pair: dict[str, Any]) -> str:
    better = (pair["ratio"] >= 1) == pair["higher_is_better"]
    return f"{pair['ratio']:.2f}x ({'better' if better else 'worse'})"


def _w1b_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    if "W1b" not in results:
        return rows
    w1b = results["W1b"]
    builds = [("queuectl", w1b)]
    if "baseline" in w1b:
        builds.append(("queuectl (baseline)", w1b["baseline"]))
    for name, r in builds:
        rows.append(("W1b", name, f"{r['jobs']:,} JSONL jobs", f"{r['jobs_per_s']:,} jobs/s", ""))
        if "big" in r:
            b = r["big"]
            rows.append(
                (
                    "W1b",
                    name,
                    f"{b['jobs']:,} JSONL jobs, one run",
                    f"{b['seconds']:g} s, peak {b['peak_rss_mib']:g} MiB",
                    "",
                )
            )
    return rows


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    if "W1a" in results:
        base = results["W1a"]["ms"].get("queuectl enqueue")
        for name, ms in results["W1a"]["ms"].items():
            rows.append(("W1a", name, "one process", f"{ms:.1f} ms", _x(base, ms)))
    rows.extend(_w1b_rows(results))
    for work in ("W2", "W3"):
        rows.extend(_drain_rows(results, work))
    for name, lat in results.get("W4", {}).items():
        # The CLI's figure is from spawning `queuectl enqueue` (its "after return" is < 0).
        cli = "(CLI)" in name
        key, setting = (
            ("from_call_ms", "from spawn") if cli else ("after_return_ms", "after return")
        )
        base = results["W4"].get("queuectl", {}).get(key, {}).get("p50")
        a = lat[key]
        rows.append(
            (
                "W4",
                name,
                f"p50 / p99 {setting}",
                f"{a['p50']:.1f} / {a['p99']:.1f} ms",
                "" if cli else _x(base, a["p50"]),
            )
        )
    for name, use in results.get("W5", {}).get("systems", {}).items():
        rows.append(
            (
                "W5",
                name,
                f"idle, {use['processes']} process(es)",
                f"{use['cpu_percent']:.2f} % CPU, {use['rss_mib']:.1f} MiB",
                "",
            )
        )
    w6 = results.get("W6")
    if w6:
        for key, ratio in w6["ratio"].items():
            rows.append(
                (
                    "W6",
                    "queuectl",
                    key,
                    f"{w6['empty'][key]:g} -> {w6['full'][key]:g}",
                    f"{ratio:g}x of empty",
                )
            )
    if "web" in results:
        from bench_web import table_rows as web_rows

        rows.extend(web_rows(results["web"]))
    return rows


def _drain_rows(results: dict[str, Any], work: str) -> list[tuple[str, ...]]:
    rows = []
    for cell in sorted(
        results.get(work, {}).get("runs", []), key=lambda c: (c["count"], c["system"] != "queuectl")
    ):
        base = _cell(results, work, "queuectl", cell["count"])
        value = f"{cell['jobs_per_s']:,.0f} jobs/s"
        if work == "W3":
            value += f", eff {cell['efficiency']:.2f}"
            if "efficiency_after_start" in cell:
                value += f" ({cell['efficiency_after_start']:.2f} after start)"
        once = "" if cell["exactly_once"] else " (NOT exactly once)"
        rel = _x(base["jobs_per_s"], cell["jobs_per_s"], higher=True) if base else ""
        rows.append((work, cell["system"], f"--count {cell['count']}", value + once, rel))
    return rows


def _x(base: float | None, value: float, *, higher: bool = False) -> str:
    """The peer as a ratio to queuectl (>1: the peer is better)."""
    if not base or not value or base < 0 or value < 0:
        return ""
    return f"{(value / base):.2f}x" if higher else f"{(base / value):.2f}x"


def markdown(results: dict[str, Any]) -> str:
    """The run's tables in Markdown, for docs/benchmarks.md."""
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        f"Run `{meta['command']}` at {meta['started']} on {m['cores']} x {m['cpu']}, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}; queuectl {meta['queuectl']}. Load average before "
        f"{meta['loadavg_before']}, after {meta['loadavg_after']}."
        + (
            f" Baseline: the build in `{meta['baseline']}` (revision "
            f"{meta.get('baseline_revision', 'unknown')}), rows `(baseline)`."
            if meta.get("baseline")
            else ""
        ),
        "",
        "| workload | system | setting | result | vs queuectl |",
        "|---|---|---|---:|---:|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in table_rows(results)]
    lines += ["", "| target | value | goal | holds |", "|---|---:|---|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['ok'] else '**no**'} |"
        for t in results.get("targets", [])
    ]
    rows = results.get("issue15", [])
    if rows:
        baseline = any("baseline" in row for row in rows)
        lines += ["", "Issue 15's targets:", ""]
        head = "| # | target | goal | value | holds |" + (
            " baseline | baseline holds |" if baseline else ""
        )
        lines += [head, "|---" * head.count(" | ") + "|---|"]
        for row in rows:
            cells = [str(row["id"]), row["target"], row["goal"], row["value"], _md_holds(row["ok"])]
            if baseline:
                cells += [row.get("baseline", ""), _md_holds(row.get("baseline_ok"))]
            lines.append(f"| {' | '.join(cells)} |")
    pairs = baseline_pairs(results)
    if pairs:
        lines += [
            "",
            f"After against the baseline (`{meta.get('baseline')}`), same rounds:",
            "",
            "| workload | what | after | baseline | after ÷ baseline |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {p['workload']} | {p['what']} | {p['after']:g} | {p['baseline']:g} | "
            f"{_ratio_text(p)} |"
            for p in pairs
        ]
    return "\n".join(lines) + "\n"


def _md_holds(ok: bool | None) -> str:
    return "**no**" if ok is False else holds(ok)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        note("no plot: matplotlib is not installed (pip install 'queuectl[bench]')")
        return False
    series: dict[str, list[tuple[int, float]]] = {}
    for cell in results.get("W2", {}).get("runs", []):
        series.setdefault(cell["system"], []).append((cell["count"], cell["jobs_per_s"]))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, points in sorted(series.items()):
        points.sort()
        style = "-o" if name.startswith("queuectl") else "--s"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name)
    ax.set_xscale("log", base=2)
    counts = sorted({c for pts in series.values() for c, _ in pts})
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("concurrent slots (--count, huey -w, rq workers, tsp -S)")
    ax.set_ylabel("jobs/s (incl. worker start)")
    ax.set_title(f"W2: drain {results['W2']['jobs']:,} `true` jobs")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def setup_peers(bench: SqliteBench, stack: contextlib.ExitStack) -> None:
    if not bench.args.peers:
        return
    peers = bench.peers
    try:
        peers.python = ensure_python_peers()
    except BenchError as exc:
        peers.notes.append(f"huey/rq skipped: cannot install them ({exc})")
    try:
        peers.tsp = ensure_tsp()
    except BenchError as exc:
        peers.notes.append(f"task-spooler skipped: {exc}")
    if peers.tsp is None:
        peers.notes.append("task-spooler skipped: not installed")
    peers.redis_url = stack.enter_context(redis_server(bench.fresh("redis"), bench.args.redis_url))
    if peers.redis_url is None:
        peers.notes.append("rq skipped: no redis-server and no Redis at 127.0.0.1:6379")
    for text in peers.notes:
        note(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--only", help="comma-separated workloads, e.g. W2,W4")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="write the W2 plot (PNG) here")
    parser.add_argument("--markdown", type=Path, help="write the tables as Markdown here")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="report (table, plot, Markdown) from a saved --json file instead of running",
    )
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--redis-url", help="Redis for RQ (default: a private redis-server for this run)"
    )
    parser.add_argument("--rounds", type=int, help="rounds of interleaved runs (default 3)")
    parser.add_argument("--jobs", type=int, help="W2 job count (default 2,000)")
    parser.add_argument("--w6-jobs", type=int, help="W6 history size (default 1,000,000)")
    parser.add_argument(
        "--workdir", type=Path, help="where runs keep their files (default: a temp dir)"
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="also run W2, W4 and W6 on this PostgreSQL server (postgresql://...), beside "
        "the SQLite store and Procrastinate, in schemas of their own (bench_postgres.py)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="VENV",
        help="another queuectl build's virtualenv (its bin/python and bin/queuectl): its "
        "queuectl rows run interleaved in the same rounds, as 'queuectl (baseline)' "
        "(W1a, W1b, W2, W3, W4, W5 and PostgreSQL W2/W4; W6 only for the build under test)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="with py-spy installed: profile one extra W2 drain at --count 1 and 4 (and "
        "W1a's enqueue) into DIR, untimed: flame graphs, collapsed stacks and a summary",
    )
    args = parser.parse_args(argv)
    only = [w.strip() for w in (args.only or ",".join(WORKLOADS)).split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    args.only = only
    args.baseline_build = None
    if args.baseline is not None:
        try:
            args.baseline_build = Build.from_venv(args.baseline.absolute())
        except BenchError as exc:
            parser.error(str(exc))
    return args


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.rounds:
        changes["rounds"] = args.rounds
    if args.jobs:
        changes["w2_jobs"] = args.jobs
    if args.w6_jobs:
        changes["w6_jobs"] = args.w6_jobs
    return Sizes(**{**asdict(sizes), **changes})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        results["targets"] = evaluate(results)
        results["issue15"] = issue15_targets(results)
        return finish(args, results)
    sizes = sizes_for(args)
    if not QUEUECTL.exists():
        print(
            f"error: {QUEUECTL} not found; install queuectl into this interpreter", file=sys.stderr
        )
        return 1
    base = args.workdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="queuectl-bench-", dir=base))
    for name in ("json", "plot", "markdown", "profile"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    # Helpers run `python -c`, which imports from the current folder first: from a
    # checkout's root that would be its queuectl/, not the installed one.
    os.chdir(work)
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(
                [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
            ),
            "machine": machine(),
            "queuectl": git_revision(ROOT),
            "quick": args.quick,
            "sizes": asdict(sizes),
            "loadavg_before": loadavg(),
        }
    }
    if args.baseline_build is not None:
        venv = args.baseline_build.python.parent.parent
        results["meta"]["baseline"] = str(venv)
        results["meta"]["baseline_revision"] = git_revision(venv.parent)
        if "W6" in args.only:
            # W6 builds its 10^6-job store with this build's schema and claims in-process.
            results["meta"]["baseline_notes"] = ["W6 runs for the build under test only"]
    bench = SqliteBench(args, sizes, work)
    results["meta"]["packages"] = {b.label or "queuectl": warm_bytecode(b) for b in bench.builds()}
    try:
        with contextlib.ExitStack() as stack:
            setup_peers(bench, stack)
            results["meta"]["peer_notes"] = bench.peers.notes
            results["meta"]["load"] = {}
            results.update(bench.measure(args.only, results["meta"]["load"]))
            if args.db:
                results["postgres"] = run_postgres(args, sizes)
            if args.profile:
                from bench_profile import profile_all

                results["meta"]["profile"] = profile_all(args.profile, bench)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["meta"]["loadavg_after"] = loadavg()
    results["targets"] = evaluate(results)
    results["issue15"] = issue15_targets(results)
    return finish(args, results)


def run_postgres(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """W2, W4 and W6 on PostgreSQL beside SQLite and Procrastinate (``bench_postgres``)."""
    from bench_postgres import run_all

    note("PostgreSQL (W2, W4, W6) ...")
    return run_all(
        args.db,
        replace(sizes, w2_counts=tuple(c for c in sizes.w2_counts if c <= 4)),
        only=[w for w in args.only if w in ("W2", "W4", "W6")],
        procrastinate=args.peers,
        baseline=args.baseline_build,
    )


def finish(args: argparse.Namespace, results: dict[str, Any]) -> int:
    report(results)
    if "postgres" in results:
        from bench_postgres import report as postgres_report

        print(postgres_report(results["postgres"]))
    if args.json and args.json != args.from_json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot and "W2" in results:
        plot(results, args.plot)
    if args.markdown:
        args.markdown.write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

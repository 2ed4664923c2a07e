"""``bench.py --profile DIR``: where a queuectl drain's time goes, with py-spy.

One extra W2 drain at ``--count 1`` and at ``--count 4`` (never timed into the
results) is recorded twice with ``py-spy record --idle --threads``: once as an SVG flame
graph, once as collapsed stacks (``--format raw``). The stacks give a short text
summary: the top-level split of the samples (the event loop's thread in
``create_subprocess_shell``, idle, or elsewhere; the database thread busy or idle) and
the 15 leaf functions with the most busy samples. ``queuectl enqueue -c true`` (W1a)
lives ~100 ms, too short for one recording: 20 runs at 1,000 Hz are summed instead
(collapsed stacks and the summary, no SVG).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from bench_peers import Queuectl
from benchlib import PY, QUEUECTL, Bench, BenchError, create_store, note, queuectl_env, run

PROFILE_COUNTS = (1, 4)
RATE_HZ = 250
ENQUEUE_RUNS = 20
ENQUEUE_RATE_HZ = 1000
TOP = 15

#: Leaf frames (file, function) where a thread waits rather than works: py-spy's ``--idle``
#: keeps them, and its raw output does not mark them. aiosqlite's worker loop is its own
#: leaf only while it blocks in ``tx.get()`` (a C call); what it runs is deeper.
_IDLE = {
    ("selectors.py", "select"),
    ("aiosqlite/core.py", "_connection_worker_thread"),
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("queue.py", "get"),
}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\)")


def py_spy() -> str | None:
    """py-spy beside this interpreter, else on ``PATH``."""
    beside = PY.with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """``frame;frame;... count`` lines (root first) into a counter of stacks."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            stacks[tuple(head.split(";"))] += int(count)
    return stacks


def thread_kinds(stacks: Counter[tuple[str, ...]]) -> dict[str, str]:
    """Thread id -> "event loop thread" (the main thread), "database thread" (aiosqlite's
    worker, or a thread in asyncpg) or "other threads", from every stack of the thread
    (py-spy names a thread only once it has seen its name)."""
    kinds: dict[str, str] = {}
    for stack in stacks:
        m = _THREAD.match(stack[0]) if stack else None
        if m is None:
            continue
        tid, text = m.group("tid"), ";".join(stack)
        if "MainThread" in stack[0] or (len(stack) > 1 and stack[1].startswith("<module> (")):
            kinds[tid] = "event loop thread"
        elif ("aiosqlite" in text or "asyncpg" in text) and kinds.get(tid) is None:
            kinds[tid] = "database thread"
    return kinds


def _kind(stack: tuple[str, ...], kinds: dict[str, str]) -> str:
    m = _THREAD.match(stack[0]) if stack else None
    return kinds.get(m.group("tid") if m else "", "other threads")


def _parts(frame: str) -> tuple[str, str]:
    """(file, function without its class) of a ``func (file:line)`` frame."""
    m = _FRAME.match(frame)
    if m is None:
        return "", frame
    return m.group("file"), m.group("func").rsplit(".", 1)[-1]


def _leaf(stack: tuple[str, ...]) -> str:
    """The leaf frame without its line number: ``func (file)``."""
    if len(stack) == 1 and _THREAD.match(stack[0]):
        return "(no Python frame)"
    return re.sub(r":\d+\)$", ")", stack[-1])


def is_idle(stack: tuple[str, ...]) -> bool:
    file, func = _parts(stack[-1])
    return any(file.endswith(f) and func == name for f, name in _IDLE)


def summarize(stacks: Counter[tuple[str, ...]], title: str) -> str:
    """The top-level split and the top leaf functions of one recording, as text."""
    total = sum(stacks.values())
    if not total:
        return f"{title}: no samples\n"
    split: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    kinds = thread_kinds(stacks)
    for stack, count in stacks.items():
        kind = _kind(stack, kinds)
        if is_idle(stack):
            split[f"{kind}: idle"] += count
            continue
        leaves[_leaf(stack)] += count
        if kind == "event loop thread" and any("create_subprocess_shell" in f for f in stack):
            split[f"{kind}: in create_subprocess_shell"] += count
        elif kind == "event loop thread" and any("_find_and_load" in f for f in stack):
            split[f"{kind}: importing"] += count
        else:
            split[f"{kind}: busy elsewhere"] += count
    lines = [f"{title}: {total} samples (all threads)", "", "top-level split:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in sorted(split.items())]
    busy = sum(leaves.values())
    lines += ["", f"top {TOP} leaf functions (of {busy} busy samples):"]
    lines += [f"  {100 * n / busy:5.1f} %  {name}" for name, n in leaves.most_common(TOP)]
    return "\n".join(lines) + "\n"


def _record(
    spy: str, out: Path, argv: list[str], env: dict[str, str], *, raw: bool, rate: int
) -> None:
    args = [spy, "record", "--idle", "--threads", "-r", str(rate), "-o", str(out)]
    if raw:
        args += ["--format", "raw"]
    run([*args, "--", *argv], env=env, timeout=600)


def profile_drain(spy: str, bench: Bench, out: Path, count: int) -> str:
    """Two recorded drains of W2's size at ``count``: the SVG, then the collapsed stacks."""
    n = bench.sizes.w2_jobs
    queuectl = Queuectl()
    argv = [str(a) for a in queuectl.worker_args(count, burst=True)]
    for raw in (False, True):
        path = bench.fresh(f"profile-w2-{count}")
        db = path / "q.db"
        queuectl.enqueue_many(db, "true", n)
        target = out / f"w2-count{count}.{'txt' if raw else 'svg'}"
        _record(spy, target, argv, queuectl.env(db), raw=raw, rate=RATE_HZ)
        bench.clean(path)
    stacks = parse_collapsed((out / f"w2-count{count}.txt").read_text())
    return summarize(stacks, f"W2 drain of {n:,} `true` jobs, worker start --count {count} --burst")


def profile_enqueue(spy: str, bench: Bench, out: Path) -> str:
    """``queuectl enqueue -c true`` ``ENQUEUE_RUNS`` times, stacks summed."""
    path = bench.fresh("profile-w1a")
    env = queuectl_env(path / "q.db")
    create_store(env)
    total: Counter[tuple[str, ...]] = Counter()
    for i in range(ENQUEUE_RUNS):
        raw = path / f"enqueue-{i}.txt"
        _record(
            spy, raw, [str(QUEUECTL), "enqueue", "-c", "true"], env, raw=True, rate=ENQUEUE_RATE_HZ
        )
        total += parse_collapsed(raw.read_text())
    bench.clean(path)
    (out / "w1a-enqueue.txt").write_text(
        "".join(f"{';'.join(stack)} {n}\n" for stack, n in sorted(total.items()))
    )
    return summarize(total, f"W1a: {ENQUEUE_RUNS} x `queuectl enqueue -c true`, summed")


def profile_all(out: Path, bench: Bench) -> dict[str, Any]:
    """Everything ``--profile`` records; the summaries go to ``out/summary.txt``."""
    spy = py_spy()
    if spy is None:
        note("--profile: py-spy is not installed (pip install py-spy); no profile")
        return {"skipped": "py-spy not installed"}
    out.mkdir(parents=True, exist_ok=True)
    texts = []
    try:
        for count in PROFILE_COUNTS:
            note(f"profile: W2 at --count {count} with py-spy ...")
            texts.append(profile_drain(spy, bench, out, count))
        note("profile: W1a enqueue with py-spy ...")
        texts.append(profile_enqueue(spy, bench, out))
    except BenchError as exc:
        note(f"--profile: {exc}")
        texts.append(f"profile stopped: {exc}\n")
    summary = "\n".join(texts)
    (out / "summary.txt").write_text(summary)
    print(summary)
    return {"dir": str(out), "summary": summary}

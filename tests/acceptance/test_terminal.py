"""The terminal experience, end to end with the installed ``queuectl``.

Every process runs in its own session and is stopped by process group; waits are
bounded polls. Timing is never asserted tighter than "before a generous deadline".
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    QUEUECTL,
    WorkerProcess,
    cli_env,
    cli_json,
    enqueue_lines,
    run_cli,
    run_worker,
    wait_for,
)
from tests.inproc import burst
from tests.terminal import PtyProcess, Tmux, strip_ansi


def pending_count(screen: str) -> int | None:
    """The pending count of the newest frame on the screen, if one is drawn."""
    found = re.findall(r"pending\s+([\d,]+)", screen)
    return int(found[-1].replace(",", "")) if found else None


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    # A short private socket path (sun_path is ~100 bytes), removed afterwards.
    folder = Path(tempfile.mkdtemp(prefix="qtmux-"))
    server = Tmux(folder / "s")
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def test_status_watch_in_tmux_sees_an_enqueue_and_quits_on_ctrl_c(
    tmux: Tmux, db_path: Path, tmp_path: Path
) -> None:
    run_cli(db_path, "status")  # create the database
    exit_file = tmp_path / "exit"
    # The wrapper shell traps ^C (a trap with a command is reset to the default in
    # the child), so it outlives queuectl to record the exit status and keep the
    # pane open for inspection.
    tmux.start(
        f"trap : INT; {QUEUECTL} status --watch --interval 0.2; echo $? > {exit_file}; sleep 60",
        env={"QUEUECTL_DB": str(db_path), "TERM": "xterm-256color"},
    )
    # A capture can land mid-frame: wait for a whole one.
    tmux.wait_for(
        lambda s: (
            pending_count(s) == 0
            and all(part in s for part in ("Ctrl-C to quit", "last minute", "dead, newest first"))
        )
    )
    assert tmux.alternate_screen()

    enqueue_lines(db_path, [{"id": "watched", "command": "true"}])
    tmux.wait_for(lambda s: pending_count(s) == 1)

    started = time.monotonic()
    tmux.keys("C-c")
    wait_for(exit_file.exists, timeout=30)
    assert exit_file.read_text().strip() in ("0", "130")
    assert time.monotonic() - started < 20  # promptly, on a loaded machine
    assert not tmux.alternate_screen(), "the terminal was left in the alternate screen"
    assert "Ctrl-C to quit" not in tmux.screen()  # the normal screen is back


def test_status_watch_in_a_pty_restores_the_terminal(db_path: Path) -> None:
    run_cli(db_path, "status")
    argv = [QUEUECTL, "status", "--watch", "--interval", "0.2"]
    with PtyProcess(argv, env=cli_env(db_path), rows=30, cols=90) as term:
        term.wait_for(lambda s: pending_count(s) == 0)
        run_cli(db_path, "enqueue", "-c", "true", "--id", "one")
        run_cli(db_path, "enqueue", "-c", "true", "--id", "two")
        term.wait_for(lambda s: pending_count(s) == 2)
        term.type(b"\x03")  # ^C through the terminal's line discipline: SIGINT
        assert term.wait(timeout=30) in (0, 130)
        raw = term.output
    enter, leave = raw.find(b"\x1b[?1049h"), raw.rfind(b"\x1b[?1049l")
    assert 0 <= enter < leave, "alternate screen not entered and left"
    assert raw.rfind(b"\x1b[?25h") > raw.rfind(b"\x1b[?25l"), "cursor left hidden"
    assert b"Traceback" not in raw


def test_status_watch_off_a_terminal_prints_plain_snapshots(db_path: Path) -> None:
    run_cli(db_path, "status")
    proc = subprocess.Popen(
        [QUEUECTL, "status", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(db_path),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 30
        while seen.count(b"\nJOBS\n") < 2 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        assert seen.count(b"\nJOBS\n") >= 2
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        text = (seen + out).decode()
        assert "\x1b" not in text and all(line == line.rstrip() for line in text.splitlines())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)


def test_status_watch_and_json_are_exclusive(db_path: Path) -> None:
    result = run_cli(db_path, "status", "--watch", "--json")
    assert result.returncode == 2 and "cannot be combined" in result.stderr


def read_until(stream: int, needle: bytes, timeout: float = 30) -> bytes:
    """Read from a pipe's fd until ``needle`` arrives (bounded)."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} never arrived; got {data!r}")
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream, 65536)
            if not chunk:
                raise AssertionError(f"stream closed before {needle!r}; got {data!r}")
            data += chunk
    return data


def test_logs_follow_streams_a_running_attempt_and_ends_with_it(
    db_path: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = f"echo first line; while [ ! -e {go} ]; do sleep 0.05; done; echo second line"
    run_cli(db_path, "enqueue", "-c", command, "--id", "stream")
    follow = subprocess.Popen(
        [QUEUECTL, "logs", "stream", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(db_path),
        start_new_session=True,
    )
    try:
        assert follow.stdout is not None and follow.stderr is not None
        # Not started yet: it says so on stderr and waits.
        read_until(follow.stderr.fileno(), b"waiting for attempt 1")
        with WorkerProcess(db_path, "--count", "1"):
            assert read_until(follow.stdout.fileno(), b"\n") == b"first line\n"
            # The line arrived while the command still runs (it waits for `go`).
            assert cli_json(db_path, "show", "stream")["state"] == "processing"
            assert follow.poll() is None
            go.touch()
            out, err = follow.communicate(timeout=30)
        assert follow.returncode == 0, err
        assert out == b"second line\n"
        assert b"Error" not in err
    finally:
        if follow.poll() is None:
            os.killpg(follow.pid, signal.SIGKILL)
            follow.communicate(timeout=10)


def test_logs_of_a_finished_job_print_the_kept_tail_and_say_it_was_cut(db_path: Path) -> None:
    run_cli(db_path, "config", "set", "output-limit", "100")
    command = "head -c 1000 /dev/zero | tr '\\0' x; echo END"
    run_cli(db_path, "enqueue", "-c", command, "--id", "chatty")
    run_cli(db_path, "enqueue", "-c", "echo short", "--id", "quiet")
    assert burst(db_path) == 0
    for follow in ([], ["--follow"]):
        result = run_cli(db_path, "logs", "chatty", *follow)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "x" * 96 + "END\n"
        assert "output cut: showing the last 100 of 1,004 bytes" in result.stderr
        short = run_cli(db_path, "logs", "quiet", *follow)
        # --follow names each attempt it follows (on stderr, apart from the output).
        assert short.stdout == "short\n"
        assert short.stderr == ("[attempt 1]\n" if follow else "")


def complete(db: Path, words: str, shell: str = "bash") -> list[str]:
    env = {"_QUEUECTL_COMPLETE": f"{shell}_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = run_cli(db, env=env)
    assert result.returncode == 0, result.stderr
    if shell == "zsh":  # zsh's protocol: type, value and help on three lines each
        return result.stdout.splitlines()[1::3]
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_completion_of_job_ids_and_state_names(db_path: Path) -> None:
    enqueue_lines(
        db_path,
        [
            {"id": "build-1", "command": "true"},
            {"id": "build-2", "command": "exit 1", "max_retries": 0},
            {"id": "deploy", "command": "true"},
        ],
    )
    assert complete(db_path, "queuectl show bu") == ["build-1", "build-2"]
    assert complete(db_path, "queuectl logs --follow d") == ["deploy"]
    assert complete(db_path, "queuectl dlq retry ") == []  # nothing is dead yet
    assert burst(db_path) == 0
    assert complete(db_path, "queuectl dlq retry ") == ["build-2"]  # only dead jobs
    assert complete(db_path, "queuectl list --state ") == [
        "pending",
        "processing",
        "completed",
        "failed",
        "dead",
        "cancelled",
    ]
    assert complete(db_path, "queuectl list --state d") == ["dead"]
    assert complete(db_path, "queuectl config set back") == ["backoff-base", "backoff-max"]
    assert complete(db_path, "queuectl show b", shell="zsh") == ["build-1", "build-2"]


def test_completion_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "q.db"
    assert complete(missing, "queuectl show ") == []
    assert not missing.parent.exists()


def test_bash_completion_script_completes_ids_in_a_real_bash(db_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    enqueue_lines(db_path, [{"id": "alpha-1", "command": "true"}, {"id": "beta", "command": "x"}])
    script = (
        'eval "$(_QUEUECTL_COMPLETE=bash_source queuectl)"; '
        "COMP_WORDS=(queuectl show al); COMP_CWORD=2; _queuectl_completion queuectl; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = cli_env(db_path, {"PATH": f"{Path(QUEUECTL).parent}:{os.environ['PATH']}"})
    result = subprocess.run(
        ["bash", "--norc", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["alpha-1"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_for_each_shell(shell: str, db_path: Path) -> None:
    result = run_cli(db_path, env={"_QUEUECTL_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0
    assert "_QUEUECTL_COMPLETE" in result.stdout and f"{shell}_complete" in result.stdout


def json_log(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines()]


def test_worker_json_log_has_one_object_per_transition(db_path: Path) -> None:
    run_cli(db_path, "config", "set", "backoff-max", "0.1")  # the retry waits 0.1 s
    enqueue_lines(
        db_path,
        [
            {"id": "ok", "command": "true"},
            {"id": "flaky", "command": "exit 3", "max_retries": 1},
        ],
    )
    result = run_worker(db_path, "--log-format", "json")
    assert result.returncode == 0, result.stderr
    records = json_log(result.stderr)  # every line parses
    by_action: dict[str, list[dict[str, object]]] = {}
    for rec in records:
        assert str(rec["ts"]).endswith("Z")
        by_action.setdefault(str(rec.get("action")), []).append(rec)
    (done,) = by_action["job_completed"]
    assert done["job_id"] == "ok" and done["exit_code"] == 0 and done["attempt"] == 1
    assert isinstance(done["duration"], float) and done["slot"] == 0
    (failed,) = by_action["job_failed"]
    assert failed["job_id"] == "flaky" and failed["exit_code"] == 3
    assert failed["max_attempts"] == 2 and str(failed["next_run_at"]).endswith("Z")
    (dead,) = by_action["job_dead"]
    assert dead["attempt"] == 2 and dead["level"] == "error"
    assert len(by_action["job_claimed"]) == 3


def test_worker_log_levels_and_interrupted_and_recovered_lines(
    db_path: Path, tmp_path: Path
) -> None:
    enqueue_lines(db_path, [{"id": "ok", "command": "true"}])
    quiet = run_worker(db_path, "-q")
    assert quiet.returncode == 0 and "ok" not in quiet.stderr  # -q: no routine lines
    plain = run_cli(db_path, "enqueue", "-c", "true", "--id", "ok2")
    assert plain.returncode == 0
    result = run_worker(db_path)
    assert re.search(
        r"INFO    ok2 completed in \S+s, exit code 0 \(attempt 1/4, slot 0\)", result.stderr
    )

    # Interrupted: a second signal kills the running job and hands it back.
    done = tmp_path / "done"  # once it exists, the job's later runs end at once
    run_cli(db_path, "enqueue", "-c", f"[ -e {done} ] || sleep 60", "--id", "sleeper")
    with WorkerProcess(db_path, "--log-format", "json") as w:
        wait_for(lambda: cli_json(db_path, "show", "sleeper")["state"] == "processing")
        w.signal(signal.SIGINT)
        assert w.proc is not None and w.proc.stderr is not None
        # Two signals that arrive together may be seen as one: send the second
        # once the worker said it is stopping.
        seen = read_until(w.proc.stderr.fileno(), b"stopping: no new jobs")
        w.signal(signal.SIGINT)
        _, rest = w.communicate(timeout=30)
    actions = [r.get("action") for r in json_log(seen.decode() + rest)]
    assert "job_interrupted" in actions

    # Recovered: a worker killed with SIGKILL mid-job; the next worker takes it back.
    with WorkerProcess(db_path, "--log-format", "json") as w:
        wait_for(lambda: cli_json(db_path, "show", "sleeper")["state"] == "processing")
        w.signal(signal.SIGKILL)
        w.wait(timeout=30)
    done.touch()
    run_cli(db_path, "config", "set", "backoff-max", "0.1")
    result = run_worker(db_path, "--log-format", "json", "-q")
    recovered = [r for r in json_log(result.stderr) if r.get("action") == "job_recovered"]
    assert recovered and recovered[0]["job_id"] == "sleeper"


def rich_imported(db: Path, args: list[str], stdin: str) -> tuple[bool, str]:
    """Run the CLI in-process in a fresh interpreter and report whether rich was loaded."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('RICH=%d\\n' % any("
        "m == 'rich' or m.startswith('rich.') for m in sys.modules)))\n"
        "from queuectl.cli import main\n"
        f"main({args!r})\n"
    )
    result = subprocess.run(
        [str(Path(QUEUECTL).with_name("python")), "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(db),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return "RICH=1" in result.stderr, result.stderr


def test_enqueue_fast_path_never_imports_rich(db_path: Path) -> None:
    small = json.dumps({"command": "true"})
    big = "\n".join(json.dumps({"command": "true"}) for _ in range(3000))
    assert rich_imported(db_path, ["enqueue"], small)[0] is False
    # A big batch, but stderr is a pipe: no bar, so still no rich.
    imported, stderr = rich_imported(db_path, ["enqueue"], big)
    assert imported is False and stderr.strip() == "RICH=0"


def test_progress_on_a_terminal_for_a_big_enqueue_dlq_retry_and_burst(
    db_path: Path, tmp_path: Path
) -> None:
    n = 3000
    bulk = tmp_path / "bulk.jsonl"
    bulk.write_text(
        "".join(json.dumps({"command": "true", "queue": "bulk"}) + "\n" for _ in range(n))
    )
    enqueue = ["sh", "-c", f"{QUEUECTL} enqueue < {bulk}"]
    with PtyProcess(enqueue, env=cli_env(db_path), stdout_pipe=True) as term:
        assert term.proc.stdout is not None
        ids = term.proc.stdout.read().split()
        assert term.wait() == 0
        shown = strip_ansi(term.output)
    assert len(ids) == n  # stdout: the ids, untouched by the bar
    assert f"enqueue: {n:,} in" in shown  # the bar's summary line stays on the terminal

    small = [
        {"id": f"s{i}", "command": "exit 1", "max_retries": 0, "queue": "small"} for i in range(20)
    ]
    # A job delayed past the drain: the burst does not wait for it, and the bar
    # ends finished saying so, not at "1 left" with a spinner.
    later = {"id": "later", "command": "true", "queue": "small", "delay": 3600}
    enqueue_lines(db_path, [*small, later])
    burst = [QUEUECTL, "worker", "start", "--burst", "-n", "4", "-q", "--queue", "small"]
    with PtyProcess(burst, env=cli_env(db_path)) as term:
        assert term.wait(timeout=40) == 0
        shown = strip_ansi(term.output)
    assert "20/20" in shown
    assert "0 done · 20 dead · 0 awaiting retry · 0 left · 1 not due yet" in shown

    retry = [QUEUECTL, "dlq", "retry", "--all"]
    with PtyProcess(retry, env=cli_env(db_path), stdout_pipe=True) as term:
        assert term.proc.stdout is not None
        moved = term.proc.stdout.read().decode().split()
        assert term.wait() == 0
        shown = strip_ansi(term.output)
    assert sorted(moved) == sorted(j["id"] for j in small)
    assert "dlq retry" in shown  # the bar was drawn (it erases itself)
    assert "20 job(s) moved back to pending." in shown

    # --json: never a bar, even on a terminal; stdout is exactly one JSON document.
    enqueue_json = ["sh", "-c", f"{QUEUECTL} enqueue --json < {bulk}"]
    with PtyProcess(enqueue_json, env=cli_env(db_path), stdout_pipe=True) as term:
        assert term.proc.stdout is not None
        document = json.loads(term.proc.stdout.read())
        assert term.wait() == 0
        assert strip_ansi(term.output).strip() == ""
    assert len(document) == n


def test_every_command_has_a_summary_and_an_example() -> None:
    import asyncclick as click

    from queuectl.cli import cli

    ctx = click.Context(cli)

    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            # list_commands/get_command, not .commands: some load on first use (cli.lazy).
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{path} {name}"
                yield from walk(sub, f"{path} {name}")

    commands = list(walk(cli, "queuectl"))
    assert len(commands) >= 15
    for path, command in commands:
        summary = command.get_short_help_str(limit=60)
        assert summary.strip(), f"{path} has no summary"
        assert not summary.endswith("..."), f"{path}: summary cut in listings: {summary}"
        assert "Example" in (command.help or ""), f"{path} --help has no example"


def test_version_and_help(db_path: Path) -> None:
    from queuectl import __version__

    result = run_cli(db_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"queuectl, version {__version__}"
    for args in (["--help"], ["worker", "--help"], ["dlq", "retry", "--help"], ["status", "-h"]):
        result = run_cli(db_path, *args)
        assert result.returncode == 0 and "Example" in result.stdout, args

#!/usr/bin/env bash
# The seed's three scenarios (reference §10.1, §5.4, §13), the terminal's tables, a chain
# of dependent jobs (§19.1) and a schedule (§19.2), one after the other, on a scratch
# database.
# Workers run with --burst here so the demo ends by itself; without it they run
# until Ctrl-C or `queuectl worker stop`.
set -euo pipefail

QUEUECTL_DB="${QUEUECTL_DB:-$(mktemp -d)/demo.db}"
export QUEUECTL_DB
bold=$'\e[1m'; plain=$'\e[0m'
[ -t 1 ] || { bold=""; plain=""; }

run() {
    printf '\n%s$ %s%s\n' "$bold" "$1" "$plain"
    bash -c "$1"
}

echo "Database: $QUEUECTL_DB"

echo; echo "== 1. A job that succeeds"
run "echo '{\"id\":\"S1-success\",\"command\":\"echo Success in Parallel\"}' | queuectl enqueue"
run "queuectl worker start --count 1 --burst"
run "queuectl logs S1-success"

echo; echo "== 2. A job that fails: one retry after 3 s, then the dead-letter queue"
run "queuectl config set max-retries 1"
run "queuectl config set back-off-base 3"
run "echo '{\"id\":\"S2-fail\",\"command\":\"exit 1\"}' | queuectl enqueue"
run "queuectl worker start --burst"
run "queuectl dlq list"
run "queuectl dlq retry S2-fail"

echo; echo "== 3. Two slow jobs on two worker coroutines run at the same time"
run "queuectl enqueue '{\"id\":\"job1\",\"command\":\"sleep 2\"}'"
run "queuectl list --state pending"
run "queuectl worker start --count 2 --burst    # drains job1 and the retried S2-fail"
run "echo '{\"id\":\"S3-A\",\"command\":\"sleep 2\"}' | queuectl enqueue"
run "echo '{\"id\":\"S3-B\",\"command\":\"sleep 2\"}' | queuectl enqueue"
run "queuectl worker start --count 2 --burst"
run "queuectl show S3-A"
run "queuectl status"

echo; echo "== 4. In the terminal: tables fitted to the window (plain text when piped)"
run "queuectl list"
run "queuectl enqueue -c 'sleep 1; echo built' --id build && queuectl enqueue -c 'exit 3' --id lint --max-retries 0"
run "queuectl worker start --count 2 --burst --log-format rich   # the coloured log"
run "queuectl status"
echo; echo "== 5. A chain: build, then test, then deploy; the test fails once and is retried"
work="$(mktemp -d)"   # app-test's marker file is made here: it fails the first time only
run "queuectl config set backoff-base 1    # retry after 1 s, to keep the demo short"
run "queuectl enqueue -c 'echo compiled' --id app-build"
run "queuectl enqueue -c 'test -e tried || { touch tried; echo flaky test failed; exit 1; }; echo tests passed' --id app-test --after app-build --cwd $work"
run "queuectl enqueue -c 'echo deployed' --id app-deploy --after app-test"
run "queuectl list --state pending"
run "queuectl why app-deploy"
run "queuectl worker start --burst"
run "queuectl show app-test"
run "queuectl show app-deploy"
rm -rf "$work"

echo; echo "== 6. A schedule: a job every night at 03:00 Berlin time, made once by a running worker"
run "queuectl schedule add nightly --cron '0 3 * * *' --tz Europe/Berlin -c 'echo backing up' --timeout 600"
run "queuectl schedule run nightly    # make its job now, once, rather than wait for 03:00"
run "queuectl worker start --burst"
run "queuectl schedule list"
run "queuectl status"
echo
echo "Now watch it live (Ctrl-C to quit), e.g. while a worker runs in another terminal:"
echo "  QUEUECTL_DB=$QUEUECTL_DB queuectl status --watch"
echo
echo "Or in the browser: start the dashboard over the same database (Ctrl-C to stop),"
echo "  QUEUECTL_DB=$QUEUECTL_DB queuectl web"
echo "and open http://127.0.0.1:8787/ (jobs, each attempt's output, the dead-letter queue, /metrics)."

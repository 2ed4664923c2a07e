-- Version 11: dependencies between jobs (reference §19.1).
--
-- A job that waits for dependencies stays `pending` but is not runnable: `unmet`
-- counts the dependencies it still waits for, and every index the claim and the
-- idle workers read holds only pending jobs with `unmet = 0`. So the claim never
-- scans nor joins dependencies, whatever the number of waiting jobs: the
-- transaction that finishes a dependency (a finished attempt, a recovery, a cancel)
-- marks its edges met and lowers its dependents' `unmet`, and the last one makes a
-- job runnable. The rules are in backends/bookkeeping.py; the statements in
-- dependencies.sql.

-- The ids it waits for, as given (a JSON array; NULL: none). Never changes.
ALTER TABLE jobs ADD COLUMN after_ids TEXT;
-- 'completed' (wait until every dependency completed) or 'finished' (in any way).
ALTER TABLE jobs ADD COLUMN after_mode TEXT NOT NULL DEFAULT 'completed'
    CHECK (after_mode IN ('completed', 'finished'));
-- How many of its dependencies it still waits for.
ALTER TABLE jobs ADD COLUMN unmet INTEGER NOT NULL DEFAULT 0;
-- The dependency whose end (dead or cancelled) cancelled it; `retry` of that job
-- brings it back.
ALTER TABLE jobs ADD COLUMN cancelled_by TEXT;

-- One row per dependency: job_id waits for depends_on. `met` is set once, in the
-- transaction that finished depends_on (or at enqueue when it had finished already).
CREATE TABLE job_deps (
    job_id     TEXT    NOT NULL,
    depends_on TEXT    NOT NULL,
    met        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, depends_on)
) WITHOUT ROWID;
-- The jobs waiting on one that just finished: one seek.
CREATE INDEX job_deps_by_dependency ON job_deps (depends_on, met);

-- The runnable indexes hold only jobs that wait for nothing.
DROP INDEX jobs_claim_pending;
CREATE INDEX jobs_claim_pending ON jobs (queue, priority DESC, seq, next_run_at)
    WHERE state = 'pending' AND unmet = 0;
DROP INDEX jobs_queue_waiting;
CREATE INDEX jobs_queue_waiting ON jobs (queue, next_run_at)
    WHERE state = 'pending' AND unmet = 0;
-- The pending jobs held by dependencies, per queue (`status`, `list` mark them).
CREATE INDEX jobs_blocked ON jobs (queue) WHERE state = 'pending' AND unmet > 0;
-- The jobs a dependency's end cancelled, found again by its `retry`.
CREATE INDEX jobs_cancelled_by ON jobs (cancelled_by) WHERE cancelled_by IS NOT NULL;

-- Version 7: the sixth state, `cancelled` (reference §5.1), and the cancel request of a
-- running job.
--
-- The state's CHECK constraint is part of the table's definition, which SQLite
-- cannot alter: the table is rebuilt by the procedure of the SQLite manual ("Making
-- Other Kinds Of Table Schema Changes", https://www.sqlite.org/lang_altertable.html):
-- create the new table, copy the rows, drop the old one, rename the new one, then
-- recreate its indexes and triggers. It runs inside the migration's transaction
-- (BEGIN IMMEDIATE), so a crash leaves version 6 as it was. No foreign key names
-- `jobs`, and no view reads it, so the steps about those have nothing to do.
--
-- seq keeps its values (they are copied), and the AUTOINCREMENT high-water mark
-- is carried over: a purged job's seq is never handed out again (FIFO among ties).

CREATE TABLE jobs_v7 (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    command     TEXT    NOT NULL,
    state       TEXT    NOT NULL
                CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead',
                                 'cancelled')),
    queue       TEXT    NOT NULL DEFAULT 'default',
    priority    INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    timeout_s   REAL,
    env         TEXT,
    cwd         TEXT,
    run_at      INTEGER,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    last_error  TEXT,
    exit_code   INTEGER,
    claims      INTEGER NOT NULL DEFAULT 0,
    worker_id   TEXT,
    lease_until INTEGER,
    -- When someone asked to cancel the job while it ran (epoch ms); the worker that
    -- holds the lease kills the command and finishes the attempt as cancelled.
    cancel_requested_at INTEGER
);

INSERT INTO jobs_v7 (seq, id, command, state, queue, priority, attempts, max_retries,
                     timeout_s, env, cwd, run_at, next_run_at, created_at, updated_at,
                     last_error, exit_code, claims, worker_id, lease_until)
SELECT seq, id, command, state, queue, priority, attempts, max_retries, timeout_s, env, cwd,
       run_at, next_run_at, created_at, updated_at, last_error, exit_code, claims, worker_id,
       lease_until
  FROM jobs;

-- The old high-water mark, before DROP TABLE takes the row of sqlite_sequence with it.
CREATE TEMP TABLE seq_v7 AS SELECT seq FROM sqlite_sequence WHERE name = 'jobs';

DROP TABLE jobs;

ALTER TABLE jobs_v7 RENAME TO jobs;

UPDATE sqlite_sequence
   SET seq = max(seq, coalesce((SELECT seq FROM temp.seq_v7), 0))
 WHERE name = 'jobs';

DROP TABLE temp.seq_v7;

CREATE INDEX jobs_due ON jobs (next_run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'processing';
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_retry_due ON jobs (next_run_at) WHERE state = 'failed';
CREATE INDEX jobs_dead_recent ON jobs (updated_at) WHERE state = 'dead';
CREATE INDEX jobs_claim_pending ON jobs (priority DESC, seq, next_run_at)
    WHERE state = 'pending';
-- What `purge` and the workers' retention read: finished jobs by the time they
-- ended, so a batch of old ones is found without walking the recent ones.
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE state IN ('completed', 'cancelled');

CREATE TRIGGER jobs_claimed AFTER UPDATE OF claims ON jobs
WHEN new.claims > old.claims
BEGIN
    INSERT INTO attempts (job_id, attempt, worker_id, started_at)
    VALUES (new.id, new.claims, new.worker_id, new.updated_at);
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF state ON jobs
WHEN new.state <> old.state
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
    ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;

-- `update --queue` moves a waiting job to another queue: its count moves with it
-- (a change of state and queue together is counted by jobs_count_update alone).
CREATE TRIGGER jobs_count_move AFTER UPDATE OF queue ON jobs
WHEN new.queue <> old.queue AND new.state = old.state
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
    ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

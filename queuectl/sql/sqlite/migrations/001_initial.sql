-- Version 1: jobs, their attempts, workers and the stored config.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE jobs (
    -- seq gives "oldest first" among ties; AUTOINCREMENT so a purge can never make
    -- a new job look older than a surviving one (rowid reuse breaks FIFO).
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    command     TEXT    NOT NULL,
    state       TEXT    NOT NULL
                CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead')),
    queue       TEXT    NOT NULL DEFAULT 'default',
    priority    INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    timeout_s   REAL,
    env         TEXT,
    cwd         TEXT,
    run_at      INTEGER,
    -- NULL unless the job waits to run (pending or failed).
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    last_error  TEXT,
    exit_code   INTEGER,
    -- The fencing token: +1 at every claim, never reset; numbers the attempts.
    claims      INTEGER NOT NULL DEFAULT 0,
    worker_id   TEXT,
    lease_until INTEGER
);

-- The claim walks this index in order and stops at the first due rows, so it costs
-- the same with a million completed jobs in the table.
CREATE INDEX jobs_runnable ON jobs (priority DESC, next_run_at, seq)
    WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'processing';
CREATE INDEX jobs_by_state ON jobs (state, seq);

CREATE TABLE attempts (
    job_id      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,
    exit_code   INTEGER,
    signal      INTEGER,
    error       TEXT,
    host        TEXT,
    pid         INTEGER,
    pgid        INTEGER,
    proc_start  TEXT,
    log_path    TEXT,
    output      BLOB,
    output_size INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, attempt)
);

-- Every claim opens its history row in the same statement, so a claim and its
-- attempt record can never be separated by a crash.
CREATE TRIGGER jobs_claimed AFTER UPDATE OF claims ON jobs
WHEN new.claims > old.claims
BEGIN
    INSERT INTO attempts (job_id, attempt, worker_id, started_at)
    VALUES (new.id, new.claims, new.worker_id, new.updated_at);
END;

CREATE TABLE workers (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    proc_start     TEXT,
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    queues         TEXT,
    jobs_done      INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE config (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Version 1: jobs, their attempts, workers and the stored config.
-- Times are bigint milliseconds since the Unix epoch (UTC), on the server's clock
-- (queuectl_now_ms), so that hosts with skewed clocks agree on every lease.
-- Everything lives in the schema the connection's search_path names first.

-- The store's "now". A test may pass its own clock; NULL means the server's.
-- now() is the transaction's start: stable within a statement, so a claim's
-- lease and its due-time test agree, and the planner can use it in index scans.
CREATE FUNCTION queuectl_now_ms(caller bigint) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(caller, floor(extract(epoch FROM now()) * 1000)::bigint) $$;

CREATE TABLE jobs (
    -- seq gives "oldest first" among ties and never goes backwards.
    seq         bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- "C": ids compare by code point, so a prefix is a range of the unique index.
    id          text    COLLATE "C" NOT NULL UNIQUE,
    command     text    NOT NULL,
    state       text    NOT NULL
                CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead')),
    queue       text    NOT NULL DEFAULT 'default',
    priority    integer NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    max_retries integer NOT NULL,
    timeout_s   double precision,
    env         text,
    cwd         text,
    run_at      bigint,
    -- NULL unless the job waits to run (pending or failed).
    next_run_at bigint,
    created_at  bigint  NOT NULL,
    updated_at  bigint  NOT NULL,
    last_error  text,
    exit_code   integer,
    -- The fencing token: +1 at every claim, never reset; numbers the attempts.
    claims      integer NOT NULL DEFAULT 0,
    worker_id   text,
    lease_until bigint
);

-- Claims take the highest priority first and, among equals, the oldest job (reference §5.3:
-- ties run oldest first). The claim walks this index in order, skipping rows held
-- by another transaction; finished jobs are not in it. next_run_at is a key
-- column only so that "due yet?" is checked on the index entry (an Index Cond):
-- jobs waiting for a retry or a later start are passed over without a heap visit.
CREATE INDEX jobs_runnable ON jobs (priority DESC, seq, next_run_at)
    WHERE state IN ('pending', 'failed');
-- When the next waiting job falls due (next_due_at, the idle poll). "next_run_at > 0"
-- holds for every real time, but the claim's condition does not imply it, so the
-- planner can never answer the claim from this index: a range of due jobs sorted
-- per claim is cheap for ten jobs and ruinous for a backlog of a hundred thousand.
CREATE INDEX jobs_due ON jobs (next_run_at)
    WHERE state IN ('pending', 'failed') AND next_run_at > 0;
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'processing';
CREATE INDEX jobs_held ON jobs (worker_id) WHERE state = 'processing';
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_queue ON jobs (queue, seq);
-- The live view's next retry and newest dead jobs, each from a small index.
CREATE INDEX jobs_retry_due ON jobs (next_run_at, seq) WHERE state = 'failed';
CREATE INDEX jobs_dead_recent ON jobs (updated_at, seq) WHERE state = 'dead';

CREATE TABLE attempts (
    job_id      text    NOT NULL,
    attempt     integer NOT NULL,
    worker_id   text,
    started_at  bigint  NOT NULL,
    finished_at bigint,
    outcome     text,
    exit_code   integer,
    signal      integer,
    error       text,
    host        text,
    pid         integer,
    pgid        integer,
    proc_start  text,
    log_path    text,
    -- The worker slot that runs it, for the live view.
    slot        integer,
    output      bytea,
    output_size bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, attempt)
);

-- What a restarting worker looks for: attempts on its host that may have left a
-- process group behind (unfinished, or recovered as lost by another host).
-- Attempts that ended recently ("completed / failed in the last minute"), covering.
CREATE INDEX attempts_finished ON attempts (finished_at, outcome)
    WHERE finished_at IS NOT NULL;

CREATE INDEX attempts_strays ON attempts (host)
    WHERE pgid IS NOT NULL AND (finished_at IS NULL OR outcome = 'lost');

CREATE TABLE workers (
    id             text    PRIMARY KEY,
    host           text    NOT NULL,
    pid            integer NOT NULL,
    proc_start     text,
    started_at     bigint  NOT NULL,
    heartbeat_at   bigint  NOT NULL,
    count          integer NOT NULL,
    queues         text,
    jobs_done      bigint  NOT NULL DEFAULT 0,
    stop_requested integer NOT NULL DEFAULT 0
);

CREATE TABLE config (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Bumped by every statement that makes a job claimable (enqueue, dlq retry,
-- recovery, an interrupted attempt): idle workers poll it once a second as the
-- fallback for a lost NOTIFY.
CREATE SEQUENCE queuectl_version;

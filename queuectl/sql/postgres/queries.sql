-- Named queries for the PostgreSQL store. Placeholders are named (:name) and
-- compiled to $n by the backend; casts are spelled ::type. :clock is NULL for
-- the server's clock (the default) or a test's fixed "now"; :now is the caller's
-- clock, used only to carry durations across (see backends/postgres.py).
-- Every write that belongs to one attempt is fenced by (id, claims, worker_id,
-- state = 'processing'), so a worker that lost its lease cannot touch a newer attempt.

-- name: insert_jobs
-- One statement for the whole batch: all or none. On the server's clock: a delay
-- counts from the server's now, and a job that is due when enqueued (by the
-- caller's clock) is due as long on the server's; a start given as a time in the
-- future is kept (it is real time, which the server's clock stands for).
WITH c AS (SELECT queuectl_now_ms(:clock) AS now),
ins AS (
    INSERT INTO jobs (id, command, state, queue, priority, max_retries, timeout_s, env, cwd,
                      run_at, next_run_at, created_at, updated_at, unique_key, after_ids,
                      after_mode, unmet)
    SELECT j.id, j.command, 'pending', j.queue, j.priority, j.max_retries, j.timeout_s, j.env,
           j.cwd, coalesce(c.now + j.delay_ms, j.run_at),
           coalesce(c.now + j.delay_ms,
                    CASE WHEN j.next_run_at <= :now::bigint
                         THEN c.now - (:now::bigint - j.next_run_at)
                         ELSE j.next_run_at END),
           c.now, c.now, j.unique_key, j.after_ids, j.after_mode, j.unmet
      FROM unnest(:ids::text[], :commands::text[], :queues::text[], :priorities::int[],
                  :max_retries::int[], :timeouts::float8[], :envs::text[], :cwds::text[],
                  :run_ats::bigint[], :next_run_ats::bigint[], :delays::bigint[],
                  :unique_keys::text[], :after_ids::text[], :after_modes::text[],
                  :unmets::int[])
           WITH ORDINALITY AS j (id, command, queue, priority, max_retries, timeout_s, env, cwd,
                                 run_at, next_run_at, delay_ms, unique_key, after_ids,
                                 after_mode, unmet, ord)
           CROSS JOIN c
     ORDER BY j.ord
    RETURNING 1
)
SELECT c.now, (SELECT count(*) FROM ins) AS n, nextval('queuectl_version') AS version FROM c;

-- name: insert_jobs_new
-- enqueue --skip-duplicates: a taken id or a held unique_key inserts nothing.
-- One statement for the whole batch: all or none. On the server's clock: a delay
-- counts from the server's now, and a job that is due when enqueued (by the
-- caller's clock) is due as long on the server's; a start given as a time in the
-- future is kept (it is real time, which the server's clock stands for).
WITH c AS (SELECT queuectl_now_ms(:clock) AS now),
ins AS (
    INSERT INTO jobs (id, command, state, queue, priority, max_retries, timeout_s, env, cwd,
                      run_at, next_run_at, created_at, updated_at, unique_key, after_ids,
                      after_mode, unmet)
    SELECT j.id, j.command, 'pending', j.queue, j.priority, j.max_retries, j.timeout_s, j.env,
           j.cwd, coalesce(c.now + j.delay_ms, j.run_at),
           coalesce(c.now + j.delay_ms,
                    CASE WHEN j.next_run_at <= :now::bigint
                         THEN c.now - (:now::bigint - j.next_run_at)
                         ELSE j.next_run_at END),
           c.now, c.now, j.unique_key, j.after_ids, j.after_mode, j.unmet
      FROM unnest(:ids::text[], :commands::text[], :queues::text[], :priorities::int[],
                  :max_retries::int[], :timeouts::float8[], :envs::text[], :cwds::text[],
                  :run_ats::bigint[], :next_run_ats::bigint[], :delays::bigint[],
                  :unique_keys::text[], :after_ids::text[], :after_modes::text[],
                  :unmets::int[])
           WITH ORDINALITY AS j (id, command, queue, priority, max_retries, timeout_s, env, cwd,
                                 run_at, next_run_at, delay_ms, unique_key, after_ids,
                                 after_mode, unmet, ord)
           CROSS JOIN c
     ORDER BY j.ord
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT c.now, ARRAY (SELECT id FROM ins) AS ids, nextval('queuectl_version') AS version FROM c;

-- name: existing_ids
SELECT id FROM jobs WHERE id = ANY (:ids::text[]);

-- name: key_holders
SELECT unique_key, id, state FROM jobs
 WHERE unique_key = ANY (:keys::text[]) AND state IN ('pending', 'failed', 'processing');

-- name: exchange
-- The worker's hot path in one statement (one round trip, one transaction):
-- record where commands started, finish attempts (fenced), then claim up to
-- :limit due jobs with FOR UPDATE SKIP LOCKED, so concurrent claimers on any
-- number of hosts never wait for each other and never take the same job.
-- The finishes' next states were decided by the caller from the stored config it
-- passes as :config; if that config changed meanwhile, nothing is done (fresh is
-- false) and the caller decides again with the config returned here.
WITH RECURSIVE c AS (SELECT queuectl_now_ms(:clock) AS now),
cfg AS (SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb) AS current FROM config),
ok AS (SELECT :config::jsonb IS NULL OR (SELECT current FROM cfg) = :config::jsonb AS fresh),
started AS (
    UPDATE attempts AS a
       SET host = s.host, pid = s.pid, pgid = s.pgid, proc_start = s.proc_start,
           log_path = s.log_path, slot = s.slot
      FROM unnest(:s_id::text[], :s_token::int[], :s_host::text[], :s_pid::int[],
                  :s_pgid::int[], :s_proc_start::text[], :s_log_path::text[],
                  :s_slot::int[])
           AS s (id, token, host, pid, pgid, proc_start, log_path, slot)
     WHERE a.job_id = s.id AND a.attempt = s.token AND (SELECT fresh FROM ok)
),
f AS (
    SELECT * FROM unnest(:f_id::text[], :f_token::int[], :f_outcome::text[],
                         :f_exit_code::int[], :f_signal::int[], :f_error::text[],
                         :f_output::bytea[], :f_output_size::bigint[], :f_state::text[],
                         :f_delay_ms::bigint[], :f_refund::int[], :f_host::text[],
                         :f_pid::int[], :f_pgid::int[], :f_proc_start::text[],
                         :f_log_path::text[], :f_slot::int[], :f_cancel_state::text[],
                         :f_tally::text[], :f_cancel_tally::text[])
        AS f (id, token, outcome, exit_code, signal, error, output, output_size, state,
              delay_ms, refund, host, pid, pgid, proc_start, log_path, slot, cancel_state,
              tally, cancel_tally)
),
-- A cancel request in force turns the end into f.cancel_state (retry.if_cancel_requested).
finished AS (
    UPDATE jobs AS j
       SET state = CASE WHEN j.cancel_requested_at IS NULL THEN f.state ELSE f.cancel_state END,
           next_run_at = CASE WHEN j.cancel_requested_at IS NULL THEN c.now + f.delay_ms END,
           attempts = j.attempts - CASE WHEN j.cancel_requested_at IS NULL THEN f.refund ELSE 0 END,
           last_error = f.error, exit_code = f.exit_code, worker_id = NULL, lease_until = NULL,
           updated_at = c.now
      FROM f, c
     WHERE j.id = f.id AND j.claims = f.token AND j.worker_id = :worker
       AND j.state = 'processing' AND (SELECT fresh FROM ok)
    RETURNING j.id, j.claims, j.state, j.queue
),
finished_attempts AS (
    UPDATE attempts AS a
       SET finished_at = c.now, outcome = f.outcome, exit_code = f.exit_code,
           signal = f.signal, error = f.error, output = f.output, output_size = f.output_size,
           host = coalesce(f.host, a.host), pid = coalesce(f.pid, a.pid),
           pgid = coalesce(f.pgid, a.pgid), proc_start = coalesce(f.proc_start, a.proc_start),
           log_path = coalesce(f.log_path, a.log_path), slot = coalesce(f.slot, a.slot)
      FROM finished AS d JOIN f ON f.id = d.id, c
     WHERE a.job_id = d.id AND a.attempt = d.claims
    -- A state other than the one decided: a cancel request was in force.
    RETURNING d.queue, CASE WHEN d.state = f.state THEN f.tally ELSE f.cancel_tally END AS tally,
              greatest(c.now - a.started_at, 0) AS ms, f.outcome,
              c.now / 60000 * 60000 AS minute
),
minutes AS (
    INSERT INTO finished_minutes (minute, outcome, n)
    SELECT minute, outcome, count(*) FROM finished_attempts GROUP BY minute, outcome
),
-- The finished-attempt counters (bookkeeping.tally decided the outcome; :buckets
-- are bookkeeping.BUCKETS_MS), as delta rows in this same statement.
tallied AS (
    INSERT INTO finished_counts (queue, outcome, n)
    SELECT queue, tally, count(*) FROM finished_attempts GROUP BY queue, tally
),
timed AS (
    INSERT INTO duration_buckets (queue, le_ms, n, sum_ms)
    SELECT queue, le, count(*), sum(ms)
      FROM (SELECT queue, ms, (SELECT min(b) FROM unnest(:buckets::bigint[]) AS b
                                WHERE b >= ms) AS le
              FROM finished_attempts) AS x
     GROUP BY queue, le
),
counted AS (
    UPDATE workers SET jobs_done = jobs_done + (SELECT count(*) FROM finished)
     WHERE id = :worker AND EXISTS (SELECT 1 FROM finished)
),
-- The dependents of the jobs that just ended, in this same transaction (reference
-- §19.1): cancelled down the chain, or closer to runnable (queuectl_settle).
settled AS (
    SELECT queuectl_settle(ARRAY (SELECT id FROM finished), ARRAY (SELECT state FROM finished),
                           (SELECT now FROM c), :why, :channel) AS freed
     WHERE EXISTS (SELECT 1 FROM finished
                    WHERE state IN ('completed', 'dead', 'cancelled'))
),
-- Runnable means indexed (DESIGN 17): the claim walks only the queues it may take
-- jobs from. `waiting` lists the queues that have waiting jobs by a loose scan of
-- jobs_runnable (queue, priority DESC, seq, next_run_at): one seek per queue.
-- `open` keeps those this worker serves that are not paused (nor held by `pause
-- --all`); `limited` gives each open limited queue its free slots
-- (queuectl_queue_slots locks the queue's row, in name order, so the claims of a
-- limited queue take turns, and counts its running jobs with a fresh snapshot).
-- `candidates` takes the best due jobs of each open queue from the same index (due
-- times checked on the index entries) and keeps the best :limit of them: a paused
-- queue's backlog is never stepped over.
all_paused AS (
    SELECT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused) AS held
),
waiting AS (
    (SELECT queue FROM jobs WHERE state IN ('pending', 'failed') AND unmet = 0 ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs AS j
             WHERE j.state IN ('pending', 'failed') AND j.unmet = 0 AND j.queue > w.queue
             ORDER BY j.queue LIMIT 1)
      FROM waiting AS w
     WHERE w.queue IS NOT NULL
),
open AS (
    SELECT w.queue FROM waiting AS w
     WHERE w.queue IS NOT NULL
       AND (:queues::text[] IS NULL OR w.queue = ANY (:queues::text[]))
       AND w.queue NOT IN (SELECT queue FROM queue_settings WHERE paused)
       AND NOT (SELECT held FROM all_paused) AND (SELECT fresh FROM ok)
),
limited AS (
    SELECT s.queue, queuectl_queue_slots(s.queue, s.lim, ARRAY (SELECT id FROM finished)) AS slots
      FROM (SELECT queue, lim FROM queue_settings
             WHERE lim IS NOT NULL AND :limit::int > 0 AND queue IN (SELECT queue FROM open)
             ORDER BY queue OFFSET 0) AS s
),
candidates AS (
    SELECT k.seq FROM open AS o
      LEFT JOIN limited AS l ON l.queue = o.queue
     CROSS JOIN LATERAL (
        SELECT j.seq, j.priority FROM jobs AS j
         WHERE j.queue = o.queue AND j.state IN ('pending', 'failed') AND j.unmet = 0
           AND j.next_run_at <= (SELECT now FROM c)
         ORDER BY j.priority DESC, j.seq
         LIMIT greatest(least(coalesce(l.slots, :limit::int), :limit::int), 0)
           FOR UPDATE OF j SKIP LOCKED) AS k
     ORDER BY k.priority DESC, k.seq
     LIMIT :limit::int
),
claimed AS (
    UPDATE jobs AS j
       SET state = 'processing', attempts = j.attempts + 1, claims = j.claims + 1,
           worker_id = :worker, lease_until = c.now + :lease_ms::bigint, updated_at = c.now,
           next_run_at = NULL
      FROM candidates AS k, c
     WHERE j.seq = k.seq
    RETURNING j.*
),
opened AS (
    INSERT INTO attempts (job_id, attempt, worker_id, started_at)
    SELECT id, claims, worker_id, updated_at FROM claimed
),
s AS (
    SELECT (SELECT fresh FROM ok) AS fresh,
           (SELECT current FROM cfg)::text AS config,
           (SELECT now FROM c) AS server_now,
           ARRAY (SELECT id FROM finished) AS held,
           ARRAY (SELECT state FROM finished) AS held_states,
           (SELECT freed FROM settled) AS freed,
           -- An attempt interrupted by a forced stop is claimable again at once, and
           -- a finished job of a limited queue frees a slot: tell the other workers.
           (SELECT count(pg_notify(:channel, 'j')) + count(nextval('queuectl_version'))
              FROM (SELECT 1 FROM finished AS d
                     WHERE d.state = 'pending'
                        OR EXISTS (SELECT 1 FROM queue_settings AS q
                                    WHERE q.queue = d.queue AND q.lim IS NOT NULL)
                     LIMIT 1) AS x) AS woke,
           -- Held queues do not count: a worker must not keep waking up for jobs
           -- it may not take.
           CASE WHEN (SELECT count(*) FROM claimed) < :limit::int
                     AND NOT (SELECT held FROM all_paused) THEN
               (SELECT min((SELECT min(j.next_run_at) FROM jobs AS j
                             WHERE j.queue = o.queue AND j.state IN ('pending', 'failed') AND j.unmet = 0
                               AND j.next_run_at > (SELECT now FROM c)
                               AND j.next_run_at > 0))  -- jobs_queue_waiting
                  FROM open AS o
                 WHERE o.queue NOT IN (SELECT queue FROM limited WHERE slots <= 0))
           END AS next_due
)
SELECT s.fresh, s.config, s.server_now, s.held, s.held_states, s.woke, s.next_due, claimed.*
  FROM s LEFT JOIN claimed ON true;

-- name: heartbeat
-- Extends this worker's leases; rows another transaction holds are skipped, not
-- waited for (they are being finished by this worker, recovered by a reaper, or
-- marked by a cancel), so a heartbeat can never deadlock with an exchange. A
-- skipped row still counts as held while its lease (as of this statement's
-- snapshot) runs: a cancel holding it for a moment must not look like a lost lease.
WITH c AS (SELECT queuectl_now_ms(:clock) AS now),
extended AS (
    UPDATE jobs SET lease_until = (SELECT now FROM c) + :lease_ms::bigint
     WHERE seq IN (SELECT seq FROM jobs WHERE state = 'processing' AND worker_id = :worker
                   FOR UPDATE SKIP LOCKED)
    RETURNING id, claims
),
held AS (
    SELECT id, claims, cancel_requested_at FROM jobs
     WHERE state = 'processing' AND worker_id = :worker
       AND (lease_until > (SELECT now FROM c) OR id IN (SELECT id FROM extended))
),
beat AS (
    UPDATE workers SET heartbeat_at = (SELECT now FROM c) WHERE id = :worker
    RETURNING stop_requested
)
SELECT ARRAY (SELECT id FROM held) AS ids, ARRAY (SELECT claims FROM held) AS tokens,
       ARRAY (SELECT id FROM held WHERE cancel_requested_at IS NOT NULL) AS cancel_ids,
       ARRAY (SELECT claims FROM held WHERE cancel_requested_at IS NOT NULL) AS cancel_tokens,
       (SELECT stop_requested FROM beat) AS stop;

-- name: unclaim
-- JobStore.unclaim: claims whose command never started (no pid, no end recorded on
-- the attempt row) and with no cancel request go back to pending as if never
-- claimed: attempts and claims step back, the attempt row goes, due now so each
-- keeps its (priority, seq) place; the other workers are told (as for a finish
-- that leaves a job pending).
WITH c AS (SELECT queuectl_now_ms(:clock) AS now),
back AS (
    UPDATE jobs AS j
       SET state = 'pending', attempts = j.attempts - 1, claims = j.claims - 1,
           worker_id = NULL, lease_until = NULL, next_run_at = c.now, updated_at = c.now
      FROM c, unnest(:ids::text[], :tokens::int[]) AS u (id, token)
     WHERE j.id = u.id AND j.claims = u.token AND j.worker_id = :worker
       AND j.state = 'processing' AND j.cancel_requested_at IS NULL
       AND EXISTS (SELECT 1 FROM attempts AS a
                    WHERE a.job_id = u.id AND a.attempt = u.token
                      AND a.pid IS NULL AND a.finished_at IS NULL)
    RETURNING j.id, j.claims + 1 AS token
),
gone AS (
    DELETE FROM attempts AS a USING back AS b WHERE a.job_id = b.id AND a.attempt = b.token
)
SELECT b.id, b.token,
       (SELECT count(pg_notify(:channel, 'j')) + count(nextval('queuectl_version'))
          FROM (SELECT 1 FROM back LIMIT 1) AS x) AS woke
  FROM back AS b;

-- name: expire_worker_leases
-- A worker known to be dead (its pid is gone on its host) loses its leases now
-- instead of when they run out.
UPDATE jobs SET lease_until = 0
 WHERE state = 'processing' AND worker_id = ANY (:workers::text[]);

-- name: select_expired
-- SKIP LOCKED: a row held by its worker's exchange is being finished right now.
SELECT j.id, j.claims, j.attempts, j.max_retries, j.worker_id, a.host, a.pgid, a.proc_start,
       a.started_at, a.log_path, queuectl_now_ms(:clock) AS server_now
  FROM jobs AS j
  LEFT JOIN attempts AS a ON a.job_id = j.id AND a.attempt = j.claims
 WHERE j.state = 'processing' AND j.lease_until <= queuectl_now_ms(:clock)
 ORDER BY j.seq
   FOR UPDATE OF j SKIP LOCKED;

-- name: recover
WITH c AS (SELECT queuectl_now_ms(:clock) AS now),
r AS (
    SELECT * FROM unnest(:r_id::text[], :r_token::int[], :r_state::text[],
                         :r_delay_ms::bigint[], :r_error::text[], :r_cancel_state::text[],
                         :r_tally::text[])
        AS r (id, token, state, delay_ms, error, cancel_state, tally)
),
att AS (
    -- This host's orphans were killed (on_lost) before this commit: forget their
    -- group id, which the kernel may hand to an unrelated process later.
    UPDATE attempts AS a
       SET finished_at = c.now, outcome = 'lost', error = r.error,
           pgid = CASE WHEN a.host = :host THEN NULL ELSE a.pgid END
      FROM r, c
     WHERE a.job_id = r.id AND a.attempt = r.token AND a.finished_at IS NULL
    RETURNING a.job_id, r.tally, greatest(c.now - a.started_at, 0) AS ms,
              c.now / 60000 * 60000 AS minute
),
ended AS (
    SELECT j.queue, att.tally, att.ms FROM att JOIN jobs AS j ON j.id = att.job_id
),
minutes AS (
    INSERT INTO finished_minutes (minute, outcome, n)
    SELECT minute, 'lost', count(*) FROM att GROUP BY minute
),
tallied AS (
    INSERT INTO finished_counts (queue, outcome, n)
    SELECT queue, tally, count(*) FROM ended GROUP BY queue, tally
),
timed AS (
    INSERT INTO duration_buckets (queue, le_ms, n, sum_ms)
    SELECT queue, le, count(*), sum(ms)
      FROM (SELECT queue, ms, (SELECT min(b) FROM unnest(:buckets::bigint[]) AS b
                                WHERE b >= ms) AS le
              FROM ended) AS x
     GROUP BY queue, le
),
upd AS (
    -- A job whose cancel was requested is cancelled, not retried (r.cancel_state).
    UPDATE jobs AS j
       SET state = CASE WHEN j.cancel_requested_at IS NULL THEN r.state ELSE r.cancel_state END,
           next_run_at = CASE WHEN j.cancel_requested_at IS NULL THEN c.now + r.delay_ms END,
           last_error = r.error,
           exit_code = NULL, worker_id = NULL, lease_until = NULL, updated_at = c.now
      FROM r, c
     WHERE j.id = r.id AND j.claims = r.token AND j.state = 'processing'
    RETURNING j.id, j.state
),
-- A lost attempt that ended its job settles the dependents in this transaction.
settled AS (
    SELECT queuectl_settle(ARRAY (SELECT id FROM upd), ARRAY (SELECT state FROM upd),
                           (SELECT now FROM c), :why, :channel) AS freed
)
SELECT count(*) AS n, nextval('queuectl_version') AS version,
       (SELECT freed FROM settled) AS freed
  FROM upd;

-- name: deregister_workers
DELETE FROM workers WHERE id = ANY (:workers::text[]);

-- name: compact_counts
-- Fold the count deltas into one row per (queue, state). Rows inserted meanwhile
-- are not in this statement's snapshot and stay for the next time.
WITH gone AS (DELETE FROM job_counts RETURNING queue, state, n)
INSERT INTO job_counts (queue, state, n)
SELECT queue, state, sum(n) FROM gone GROUP BY queue, state HAVING sum(n) <> 0;

-- name: counter_rows
-- How many delta rows the reaper would fold (compact_counts, compact_counters).
SELECT (SELECT count(*) FROM job_counts) AS jobs,
       (SELECT count(*) FROM finished_counts) + (SELECT count(*) FROM duration_buckets)
           + (SELECT count(*) FROM finished_minutes) AS finished;

-- name: compact_counters
-- Fold the finished-attempt deltas into one row per key, as compact_counts does.
WITH gone AS (DELETE FROM finished_counts RETURNING queue, outcome, n),
kept AS (
    INSERT INTO finished_counts (queue, outcome, n)
    SELECT queue, outcome, sum(n) FROM gone GROUP BY queue, outcome HAVING sum(n) <> 0
),
gone_minutes AS (DELETE FROM finished_minutes RETURNING minute, outcome, n),
-- The chart shows the last hour: minutes older than two hours are dropped here.
kept_minutes AS (
    INSERT INTO finished_minutes (minute, outcome, n)
    SELECT minute, outcome, sum(n) FROM gone_minutes
     WHERE minute >= queuectl_now_ms(NULL) - :kept_ms::bigint
     GROUP BY minute, outcome HAVING sum(n) <> 0
),
gone_durations AS (DELETE FROM duration_buckets RETURNING queue, le_ms, n, sum_ms)
INSERT INTO duration_buckets (queue, le_ms, n, sum_ms)
SELECT queue, le_ms, sum(n), sum(sum_ms) FROM gone_durations GROUP BY queue, le_ms
HAVING sum(n) <> 0;

-- name: requeue_dead
UPDATE jobs
   SET state = 'pending', attempts = 0, next_run_at = queuectl_now_ms(:clock),
       updated_at = queuectl_now_ms(:clock)
 WHERE id = :id AND state = 'dead'
RETURNING id;

-- name: requeue_dead_batch
-- `dlq retry --all` walks the dead jobs in seq order, one short statement per batch,
-- up to the newest job that existed when it began (:upto), so it always ends.
WITH moved AS (
    UPDATE jobs
       SET state = 'pending', attempts = 0, next_run_at = queuectl_now_ms(:clock),
           updated_at = queuectl_now_ms(:clock)
     WHERE seq IN (SELECT seq FROM jobs
                    WHERE state = 'dead' AND seq > :after::bigint AND seq <= :upto::bigint
                    ORDER BY seq LIMIT :limit::int
                      FOR UPDATE SKIP LOCKED)
    RETURNING id, seq
)
SELECT id, seq, (SELECT nextval('queuectl_version') WHERE EXISTS (SELECT 1 FROM moved)) AS v
  FROM moved ORDER BY seq;

-- name: max_seq
SELECT coalesce(max(seq), 0) AS upto FROM jobs;

-- name: bump_version
SELECT nextval('queuectl_version');

-- name: job_state
SELECT state FROM jobs WHERE id = :id;

-- name: get_job
SELECT * FROM jobs WHERE id = :id;

-- name: list_all
-- One query per filter, so each has a plan that uses its index (LIMIT NULL: all).
SELECT * FROM jobs ORDER BY seq DESC LIMIT :limit::bigint;

-- name: list_by_state
SELECT * FROM jobs WHERE state = :state ORDER BY seq DESC LIMIT :limit::bigint;

-- name: list_by_queue
SELECT * FROM jobs WHERE queue = :queue ORDER BY seq DESC LIMIT :limit::bigint;

-- name: list_by_state_queue
SELECT * FROM jobs WHERE state = :state AND queue = :queue ORDER BY seq DESC LIMIT :limit::bigint;

-- name: counts
-- Also says how many delta rows it summed, so a reader can ask for a compaction.
SELECT state, sum(n)::bigint AS n, count(*) AS rows FROM job_counts
 WHERE (:queues::text[] IS NULL OR queue = ANY (:queues::text[]))
 GROUP BY state;

-- name: probe
-- A worker's idle poll and --burst: the jobs of a paused queue are not waited for
-- (reference §17.2), and held queues (paused, or as busy as their limit) have nothing due.
-- Per queue with waiting jobs (a loose scan of jobs_runnable), one seek of
-- jobs_queue_waiting: a paused backlog is never walked.
WITH RECURSIVE all_paused AS (
    SELECT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused) AS held
),
waiting AS (
    (SELECT queue FROM jobs WHERE state IN ('pending', 'failed') AND unmet = 0 ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs AS j
             WHERE j.state IN ('pending', 'failed') AND j.unmet = 0 AND j.queue > w.queue
             ORDER BY j.queue LIMIT 1)
      FROM waiting AS w
     WHERE w.queue IS NOT NULL
)
SELECT (SELECT coalesce(sum(n), 0) FROM job_counts
         WHERE state IN ('processing', 'failed')
           AND (:queues::text[] IS NULL OR queue = ANY (:queues::text[]))
           AND queue NOT IN (SELECT queue FROM queue_settings WHERE paused)
           AND NOT (SELECT held FROM all_paused))::bigint AS busy,
       EXISTS (SELECT 1 FROM waiting AS w
                WHERE w.queue IS NOT NULL
                  AND (:queues::text[] IS NULL OR w.queue = ANY (:queues::text[]))
                  AND w.queue NOT IN (SELECT queue FROM queue_held)
                  AND EXISTS (SELECT 1 FROM jobs AS j
                               WHERE j.queue = w.queue AND j.state IN ('pending', 'failed') AND j.unmet = 0
                                 AND j.next_run_at <= queuectl_now_ms(:clock)
                                 AND j.next_run_at > 0))  -- jobs_queue_waiting
           AND NOT (SELECT held FROM all_paused) AS due,
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM queuectl_version) AS version;

-- name: history
SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, exit_code, signal,
       error, host, pid, output_size, length(output) AS kept
  FROM attempts WHERE job_id = :id ORDER BY attempt;

-- name: attempt_output
SELECT attempt, output, output_size, log_path, host, finished_at
  FROM attempts
 WHERE job_id = :id
   AND attempt = coalesce(:attempt::int, (SELECT max(attempt) FROM attempts WHERE job_id = :id));

-- name: stray_attempts
-- Attempts recorded on :host whose process group may still exist although no
-- worker holds their lease any more: unfinished, or recovered as lost (by a
-- worker on another host, which could not kill them).
SELECT a.job_id, a.attempt, j.attempts, j.max_retries, a.worker_id, a.host, a.pgid,
       a.proc_start, a.started_at, queuectl_now_ms(:clock) AS server_now
  FROM attempts AS a
  JOIN jobs AS j ON j.id = a.job_id
 WHERE a.host = :host AND a.pgid IS NOT NULL
   AND (a.finished_at IS NULL OR a.outcome = 'lost')
   AND NOT (j.state = 'processing' AND j.claims = a.attempt
            AND j.lease_until > queuectl_now_ms(:clock))
 ORDER BY a.job_id, a.attempt
   FOR UPDATE OF a SKIP LOCKED;

-- name: keep_lost_output
-- The tail of a lost attempt's output, read from its spool by a worker on its host.
UPDATE attempts SET output = :output::bytea, output_size = :size::bigint
 WHERE job_id = :id AND attempt = :attempt::int AND outcome = 'lost' AND output IS NULL
RETURNING attempt;

-- name: forget_strays
UPDATE attempts AS a SET pgid = NULL
  FROM unnest(:ids::text[], :tokens::int[]) AS s (id, token)
 WHERE a.job_id = s.id AND a.attempt = s.token;

-- name: running_jobs
-- Bounded by the number of processing jobs, i.e. by the worker slots.
SELECT j.id, j.command, j.claims, j.attempts, j.max_retries, j.worker_id, j.lease_until,
       a.slot, a.started_at, a.host, a.pid
  FROM jobs AS j
  JOIN attempts AS a ON a.job_id = j.id AND a.attempt = j.claims
 WHERE j.state = 'processing'
 ORDER BY a.started_at, j.id
 LIMIT :limit::int;

-- name: finished_since
SELECT outcome, count(*) AS n FROM attempts
 WHERE finished_at >= :since::bigint
 GROUP BY outcome;

-- name: next_retry
SELECT * FROM jobs WHERE state = 'failed' ORDER BY next_run_at, seq LIMIT 1;

-- name: recent_dead
SELECT * FROM jobs WHERE state = 'dead' ORDER BY updated_at DESC, seq DESC LIMIT :limit::int;

-- name: ids_by_prefix
SELECT id FROM jobs WHERE id >= :lo AND id < :hi ORDER BY id LIMIT :limit::int;

-- name: ids_by_prefix_state
-- Looks at no more than :scan ids of the prefix, so a key press stays cheap however
-- many jobs share it; the user types one more character to see past them.
SELECT id FROM (SELECT id, state FROM jobs WHERE id >= :lo AND id < :hi
                 ORDER BY id LIMIT :scan::int) AS first
 WHERE state = :state
 ORDER BY id LIMIT :limit::int;

-- name: register_worker
INSERT INTO workers (id, host, pid, proc_start, started_at, heartbeat_at, count, queues)
VALUES (:id, :host, :pid::int, :proc_start,
        :started_at::bigint + (queuectl_now_ms(:clock) - :now::bigint), queuectl_now_ms(:clock),
        :count::int, :queues)
ON CONFLICT (id) DO UPDATE
   SET host = excluded.host, pid = excluded.pid, proc_start = excluded.proc_start,
       heartbeat_at = excluded.heartbeat_at, count = excluded.count, queues = excluded.queues;

-- name: deregister_worker
DELETE FROM workers WHERE id = :id;

-- name: list_workers
-- server_now lets the caller see heartbeat ages on its own clock.
SELECT w.*, queuectl_now_ms(:clock) AS server_now FROM workers AS w ORDER BY started_at, id;

-- name: request_stop
UPDATE workers SET stop_requested = greatest(stop_requested, :mode::int) RETURNING id;

-- name: config_all
SELECT key, value FROM config;

-- name: config_set
INSERT INTO config (key, value)
SELECT * FROM unnest(:keys::text[], :values::text[])
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: queue_settings
SELECT queue, paused, lim FROM queue_settings ORDER BY queue;

-- name: queue_pause
INSERT INTO queue_settings (queue, paused)
SELECT q, true FROM unnest(:queues::text[]) AS q
ON CONFLICT (queue) DO UPDATE SET paused = true;

-- name: queue_resume
-- A queue exists while it has jobs or settings: a row with none left goes. (Two
-- changes to one row in one statement would keep only one: the rows are disjoint.)
WITH gone AS (DELETE FROM queue_settings WHERE queue = ANY (:queues::text[]) AND lim IS NULL)
UPDATE queue_settings SET paused = false
 WHERE queue = ANY (:queues::text[]) AND lim IS NOT NULL;

-- name: queue_resume_all
WITH gone AS (DELETE FROM queue_settings WHERE lim IS NULL)
UPDATE queue_settings SET paused = false WHERE lim IS NOT NULL;

-- name: queue_limit
INSERT INTO queue_settings (queue, lim) VALUES (:queue, :lim::int)
ON CONFLICT (queue) DO UPDATE SET lim = excluded.lim;

-- name: queue_unlimit
WITH gone AS (DELETE FROM queue_settings WHERE queue = :queue AND NOT paused)
UPDATE queue_settings SET lim = NULL WHERE queue = :queue AND paused;

-- name: queue_counts
SELECT queue, state, sum(n)::bigint AS n FROM job_counts GROUP BY queue, state;

-- name: due_ahead
-- `why`: is a due job of an open queue claimed before this one (a higher priority,
-- or equal and older)? Per queue with waiting jobs, a seek of jobs_runnable.
WITH RECURSIVE me AS (SELECT priority, seq FROM jobs WHERE id = :id),
waiting AS (
    (SELECT queue FROM jobs WHERE state IN ('pending', 'failed') AND unmet = 0 ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs AS j
             WHERE j.state IN ('pending', 'failed') AND j.unmet = 0 AND j.queue > w.queue
             ORDER BY j.queue LIMIT 1)
      FROM waiting AS w
     WHERE w.queue IS NOT NULL
)
SELECT EXISTS (
    SELECT 1 FROM waiting AS w, me
     WHERE w.queue IS NOT NULL
       AND (:queues::text[] IS NULL OR w.queue = ANY (:queues::text[]))
       AND w.queue NOT IN (SELECT queue FROM queue_held)
       AND EXISTS (SELECT 1 FROM jobs AS j
                    WHERE j.queue = w.queue AND j.state IN ('pending', 'failed') AND j.unmet = 0
                      AND j.next_run_at <= queuectl_now_ms(:clock)
                      AND (j.priority > me.priority
                           OR (j.priority = me.priority AND j.seq < me.seq)))) AS ahead;

-- Reads of the web dashboard and /metrics (backends/postgres_web.py).

-- name: web_page
-- Keyset pagination: a window of at most :scan jobs older than :before (by seq,
-- the primary key), then the page's filters on that window only.
SELECT * FROM (SELECT * FROM jobs WHERE seq < :before::bigint
                ORDER BY seq DESC LIMIT :scan::int) AS w
 WHERE (:queue::text IS NULL OR queue = :queue::text)
   AND (:text::text IS NULL OR strpos(command, :text::text) > 0
        OR left(id, length(:text::text)) = :text::text)
 ORDER BY seq DESC LIMIT :limit::int;

-- name: web_page_state
SELECT * FROM (SELECT * FROM jobs WHERE state = :state AND seq < :before::bigint
                ORDER BY seq DESC LIMIT :scan::int) AS w
 WHERE (:queue::text IS NULL OR queue = :queue::text)
   AND (:text::text IS NULL OR strpos(command, :text::text) > 0
        OR left(id, length(:text::text)) = :text::text)
 ORDER BY seq DESC LIMIT :limit::int;

-- name: web_window
SELECT count(*) AS n, min(seq) AS low FROM (SELECT seq FROM jobs WHERE seq < :before::bigint
                                             ORDER BY seq DESC LIMIT :scan::int) AS w;

-- name: web_window_state
SELECT count(*) AS n, min(seq) AS low FROM (SELECT seq FROM jobs
                                             WHERE state = :state AND seq < :before::bigint
                                             ORDER BY seq DESC LIMIT :scan::int) AS w;

-- name: web_queue_counts
SELECT queue, state, sum(n)::bigint AS n FROM job_counts GROUP BY queue, state;

-- name: web_finished_by_minute
-- Kept per minute by the finishing statements (delta rows, folded by the reaper):
-- an hour is a few hundred rows, however many attempts ended in it.
SELECT minute, outcome, sum(n)::bigint AS n FROM finished_minutes
 WHERE minute >= :since::bigint
 GROUP BY minute, outcome;

-- name: web_oldest_due
SELECT next_run_at FROM jobs
 WHERE state IN ('pending', 'failed') AND unmet = 0 AND next_run_at > 0 AND next_run_at <= :now::bigint
   AND queue = :queue
 ORDER BY next_run_at LIMIT 1;

-- name: web_finished_totals
-- Sums the delta rows (the reaper keeps them few: compact_counters).
SELECT queue, outcome, sum(n)::bigint AS n FROM finished_counts GROUP BY queue, outcome;

-- name: web_durations
SELECT queue, le_ms, sum(n)::bigint AS n, sum(sum_ms)::bigint AS sum_ms FROM duration_buckets
 GROUP BY queue, le_ms;

-- Schedules (reference §19.2). Rules in backends/bookkeeping.py, flow in backends/postgres.py.
-- Fire times are real times computed from cron by the caller; whether one is due
-- is judged by the store's clock (due_schedules), like every lease.

-- name: insert_schedule
INSERT INTO schedules (name, cron, tz, overlap, paused, job, next_fire_at, created_at, updated_at)
VALUES (:name, :cron, :tz, :overlap, :paused::int <> 0, :job, :next_fire_at::bigint,
        :now::bigint, :now::bigint)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: list_schedules
SELECT * FROM schedules ORDER BY name;

-- name: get_schedule
SELECT * FROM schedules WHERE name = :name;

-- name: remove_schedule
DELETE FROM schedules WHERE name = :name RETURNING name;

-- name: pause_schedule
UPDATE schedules SET paused = true, updated_at = :now WHERE name = :name RETURNING name;

-- name: resume_schedule
-- Fire times that passed while paused are not missed ones: start again from now.
UPDATE schedules
   SET next_fire_at = CASE WHEN paused THEN :next_fire_at::bigint ELSE next_fire_at END,
       paused = false, updated_at = :now::bigint
 WHERE name = :name
RETURNING name;

-- name: due_schedules
-- The due schedules, each with the store's now and the next fire time after them
-- (one row with NULLs when none is due). Reads schedules_due only.
WITH c AS (SELECT queuectl_now_ms(:clock) AS now)
SELECT c.now AS store_now,
       (SELECT min(next_fire_at) FROM schedules
         WHERE NOT paused AND next_fire_at > c.now) AS next_at,
       s.*
  FROM c LEFT JOIN schedules AS s ON NOT s.paused AND s.next_fire_at <= c.now;

-- name: fire_claim
-- The compare-and-set that makes a fire time this worker's: only if the schedule
-- (the same one: created_at) still waits for the fire time the worker read. A
-- racing worker waits for the row, then finds next_fire_at moved and changes nothing.
UPDATE schedules SET next_fire_at = :next_at::bigint, updated_at = :now::bigint
 WHERE name = :name AND created_at = :created_at::bigint AND next_fire_at = :due_at::bigint
   AND NOT paused
RETURNING overlap, last_job_id;

-- name: fire_done
UPDATE schedules
   SET skipped = skipped + :skipped::bigint,
       last_fire_at = coalesce(:fire_at::bigint, last_fire_at),
       last_job_id = coalesce(:job_id::text, last_job_id)
 WHERE name = :name;

-- name: run_claim
UPDATE schedules SET last_fire_at = :fire_at::bigint, last_job_id = :job_id, updated_at = :now::bigint
 WHERE name = :name AND created_at = :created_at::bigint
RETURNING name;

-- Dependencies (reference §19.1): what `show`, `why` and `status` read.

-- name: deps_of
SELECT d.depends_on AS id, p.state, d.met
  FROM job_deps AS d LEFT JOIN jobs AS p ON p.id = d.depends_on
 WHERE d.job_id = :id;

-- name: dependents_of
SELECT d.job_id AS id, j.state, d.met
  FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id
 WHERE d.depends_on = :id
 ORDER BY j.seq;

-- name: blocked_counts
SELECT queue, count(*) AS n FROM jobs WHERE state = 'pending' AND unmet > 0 GROUP BY queue;

-- Named queries for the SQLite store. Placeholders are named (:name).
-- Every write that belongs to one attempt is fenced by (id, claims, worker_id,
-- state = 'processing'), so a worker that lost its lease cannot touch a newer attempt.

-- name: insert_job
-- Positional, in this order: binding sixteen names per row costs more than the insert.
-- Every insert is counted by add_pending_counts in the same transaction (no trigger).
INSERT INTO jobs (id, command, state, queue, priority, max_retries, timeout_s, env, cwd,
                  run_at, next_run_at, created_at, updated_at, unique_key, after_ids,
                  after_mode, unmet)
VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_job_new
-- enqueue --skip-duplicates: a taken id or a held unique_key inserts nothing.
INSERT INTO jobs (id, command, state, queue, priority, max_retries, timeout_s, env, cwd,
                  run_at, next_run_at, created_at, updated_at, unique_key, after_ids,
                  after_mode, unmet)
VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: key_holder
SELECT id, state FROM jobs
 WHERE unique_key = :key AND state IN ('pending', 'failed', 'processing');

-- name: add_pending_counts
INSERT INTO job_counts (queue, state, n) VALUES (:queue, 'pending', :n)
ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n;

-- name: job_exists
SELECT 1 FROM jobs WHERE id = :id;

-- name: claim_any
-- One statement takes up to :limit due jobs, highest priority first and, among
-- equals, the oldest (reference §5.3: ties run oldest first); the jobs_claimed trigger opens
-- each attempt row. Runnable means indexed (DESIGN 17): the claim walks only the
-- queues it may take jobs from. `open` lists them from job_counts (a few rows): not
-- paused, not at their limit, not held by `pause --all`, each with its free slots.
-- `walk` merges their pending jobs in claim order: it seeds one job per open queue
-- from jobs_claim_pending (queue, priority DESC, seq, next_run_at), then keeps
-- taking the best row (ORDER BY in a recursive CTE makes its queue a priority
-- queue) and seeking that queue's next due job, until :limit rows. So a paused
-- queue's backlog is never stepped over, and a delayed job is skipped on its index
-- entry. Due retries come from jobs_retry_due, so the failed jobs still waiting are
-- never walked. A limited queue gives no more jobs than it has free slots.
-- SQLite runs one writer at a time, so the counts read here are exact.
WITH RECURSIVE
open (queue, slots) AS (
    SELECT c.queue, coalesce((SELECT s.slots FROM queue_slots AS s WHERE s.queue = c.queue),
                             :limit)
      FROM job_counts AS c
     WHERE c.state = 'pending' AND c.n > 0
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
),
walk (queue, slots, priority, seq, n) AS (
    SELECT o.queue, o.slots, j.priority, j.seq, 1
      FROM open AS o
      JOIN jobs AS j ON j.seq = (SELECT seq FROM jobs INDEXED BY jobs_claim_pending
                                  WHERE queue = o.queue AND state = 'pending' AND unmet = 0
                                    AND next_run_at <= :now
                                  ORDER BY priority DESC, seq LIMIT 1)
     WHERE o.slots > 0
    UNION ALL
    SELECT w.queue, w.slots, j.priority, j.seq, w.n + 1
      FROM walk AS w
      JOIN jobs AS j ON j.seq = coalesce(
               (SELECT seq FROM jobs INDEXED BY jobs_claim_pending
                 WHERE queue = w.queue AND state = 'pending' AND unmet = 0 AND priority = w.priority
                   AND seq > w.seq AND next_run_at <= :now
                 ORDER BY priority DESC, seq LIMIT 1),
               (SELECT seq FROM jobs INDEXED BY jobs_claim_pending
                 WHERE queue = w.queue AND state = 'pending' AND unmet = 0 AND priority < w.priority
                   AND next_run_at <= :now
                 ORDER BY priority DESC, seq LIMIT 1))
     WHERE w.n < w.slots
     ORDER BY 3 DESC, 4
     LIMIT :limit
),
cand (priority, seq, queue) AS (
    SELECT priority, seq, queue FROM walk
    UNION ALL
    SELECT * FROM (SELECT priority, seq, queue FROM jobs INDEXED BY jobs_retry_due
                    WHERE state = 'failed' AND next_run_at <= :now
                      AND queue NOT IN queue_held
                      AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
                    ORDER BY priority DESC, seq LIMIT :limit)
)
UPDATE jobs
   SET state = 'processing', attempts = attempts + 1, claims = claims + 1,
       worker_id = :worker, lease_until = :lease_until, updated_at = :now, next_run_at = NULL
 WHERE seq IN (SELECT seq FROM (SELECT priority, seq, queue,
                                       row_number() OVER (PARTITION BY queue
                                                          ORDER BY priority DESC, seq) AS rn
                                  FROM cand) AS k
                WHERE rn <= coalesce((SELECT slots FROM queue_slots AS q
                                       WHERE q.queue = k.queue), :limit)
                ORDER BY priority DESC, seq
                LIMIT :limit)
RETURNING *;

-- name: claim_queues
WITH RECURSIVE
open (queue, slots) AS (
    SELECT c.queue, coalesce((SELECT s.slots FROM queue_slots AS s WHERE s.queue = c.queue),
                             :limit)
      FROM job_counts AS c
     WHERE c.state = 'pending' AND c.n > 0
       AND c.queue IN (SELECT value FROM json_each(:queues))
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
),
walk (queue, slots, priority, seq, n) AS (
    SELECT o.queue, o.slots, j.priority, j.seq, 1
      FROM open AS o
      JOIN jobs AS j ON j.seq = (SELECT seq FROM jobs INDEXED BY jobs_claim_pending
                                  WHERE queue = o.queue AND state = 'pending' AND unmet = 0
                                    AND next_run_at <= :now
                                  ORDER BY priority DESC, seq LIMIT 1)
     WHERE o.slots > 0
    UNION ALL
    SELECT w.queue, w.slots, j.priority, j.seq, w.n + 1
      FROM walk AS w
      JOIN jobs AS j ON j.seq = coalesce(
               (SELECT seq FROM jobs INDEXED BY jobs_claim_pending
                 WHERE queue = w.queue AND state = 'pending' AND unmet = 0 AND priority = w.priority
                   AND seq > w.seq AND next_run_at <= :now
                 ORDER BY priority DESC, seq LIMIT 1),
               (SELECT seq FROM jobs INDEXED BY jobs_claim_pending
                 WHERE queue = w.queue AND state = 'pending' AND unmet = 0 AND priority < w.priority
                   AND next_run_at <= :now
                 ORDER BY priority DESC, seq LIMIT 1))
     WHERE w.n < w.slots
     ORDER BY 3 DESC, 4
     LIMIT :limit
),
cand (priority, seq, queue) AS (
    SELECT priority, seq, queue FROM walk
    UNION ALL
    SELECT * FROM (SELECT priority, seq, queue FROM jobs INDEXED BY jobs_retry_due
                    WHERE state = 'failed' AND next_run_at <= :now
                      AND queue IN (SELECT value FROM json_each(:queues))
                      AND queue NOT IN queue_held
                      AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
                    ORDER BY priority DESC, seq LIMIT :limit)
)
UPDATE jobs
   SET state = 'processing', attempts = attempts + 1, claims = claims + 1,
       worker_id = :worker, lease_until = :lease_until, updated_at = :now, next_run_at = NULL
 WHERE seq IN (SELECT seq FROM (SELECT priority, seq, queue,
                                       row_number() OVER (PARTITION BY queue
                                                          ORDER BY priority DESC, seq) AS rn
                                  FROM cand) AS k
                WHERE rn <= coalesce((SELECT slots FROM queue_slots AS q
                                       WHERE q.queue = k.queue), :limit)
                ORDER BY priority DESC, seq
                LIMIT :limit)
RETURNING *;

-- name: claim_shape_any
-- Read in the claim's transaction (so exact), which statement the claim takes:
-- `held`, whether any queue is paused or limited (`pause --all` included); `open`,
-- how many queues have pending jobs, and `queue`, one of them. With none held and
-- at most one open, claim_one_* seeks that queue directly; else claim_any/claim_queues
-- walk the open queues.
SELECT EXISTS (SELECT 1 FROM queue_settings) AS held, count(*) AS open, min(queue) AS queue
  FROM job_counts WHERE state = 'pending' AND n > 0;

-- name: claim_shape_queues
SELECT EXISTS (SELECT 1 FROM queue_settings) AS held, count(*) AS open, min(queue) AS queue
  FROM job_counts WHERE state = 'pending' AND n > 0
   AND queue IN (SELECT value FROM json_each(:queues));

-- name: claim_one_any
-- claim_any when no queue is paused or limited and at most one queue (:queue, or
-- NULL for none) has pending jobs (claim_shape_any, same transaction): its due jobs
-- straight from jobs_claim_pending in claim order (:limit index entries), merged with
-- the due retries of every queue as claim_any merges them, so the order is the same.
UPDATE jobs
   SET state = 'processing', attempts = attempts + 1, claims = claims + 1,
       worker_id = :worker, lease_until = :lease_until, updated_at = :now, next_run_at = NULL
 WHERE seq IN (SELECT seq FROM (
                   SELECT * FROM (SELECT priority, seq FROM jobs INDEXED BY jobs_claim_pending
                                   WHERE queue = :queue AND state = 'pending' AND unmet = 0
                                     AND next_run_at <= :now
                                   ORDER BY priority DESC, seq LIMIT :limit)
                   UNION ALL
                   SELECT * FROM (SELECT priority, seq FROM jobs INDEXED BY jobs_retry_due
                                   WHERE state = 'failed' AND next_run_at <= :now
                                   ORDER BY priority DESC, seq LIMIT :limit))
                ORDER BY priority DESC, seq
                LIMIT :limit)
RETURNING *;

-- name: claim_one_queues
UPDATE jobs
   SET state = 'processing', attempts = attempts + 1, claims = claims + 1,
       worker_id = :worker, lease_until = :lease_until, updated_at = :now, next_run_at = NULL
 WHERE seq IN (SELECT seq FROM (
                   SELECT * FROM (SELECT priority, seq FROM jobs INDEXED BY jobs_claim_pending
                                   WHERE queue = :queue AND state = 'pending' AND unmet = 0
                                     AND next_run_at <= :now
                                   ORDER BY priority DESC, seq LIMIT :limit)
                   UNION ALL
                   SELECT * FROM (SELECT priority, seq FROM jobs INDEXED BY jobs_retry_due
                                   WHERE state = 'failed' AND next_run_at <= :now
                                     AND queue IN (SELECT value FROM json_each(:queues))
                                   ORDER BY priority DESC, seq LIMIT :limit))
                ORDER BY priority DESC, seq
                LIMIT :limit)
RETURNING *;

-- name: next_due_any
-- When the next job this worker may take falls due: per open queue, one seek of
-- jobs_queue_waiting and of jobs_retry_due (held queues do not count: a worker
-- must not keep waking up for jobs it may not take).
WITH open (queue) AS (
    SELECT c.queue FROM job_counts AS c
     WHERE c.state IN ('pending', 'failed') AND c.n > 0
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
)
SELECT min(t) FROM (
    SELECT (SELECT min(next_run_at) FROM jobs INDEXED BY jobs_queue_waiting
             WHERE queue = o.queue AND state = 'pending' AND unmet = 0) AS t
      FROM open AS o
    UNION ALL
    SELECT (SELECT min(next_run_at) FROM jobs INDEXED BY jobs_retry_due
             WHERE state = 'failed' AND queue IN open));

-- name: next_due_queues
WITH open (queue) AS (
    SELECT c.queue FROM job_counts AS c
     WHERE c.state IN ('pending', 'failed') AND c.n > 0
       AND c.queue IN (SELECT value FROM json_each(:queues))
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
)
SELECT min(t) FROM (
    SELECT (SELECT min(next_run_at) FROM jobs INDEXED BY jobs_queue_waiting
             WHERE queue = o.queue AND state = 'pending' AND unmet = 0) AS t
      FROM open AS o
    UNION ALL
    SELECT (SELECT min(next_run_at) FROM jobs INDEXED BY jobs_retry_due
             WHERE state = 'failed' AND queue IN open));

-- name: record_start
UPDATE attempts
   SET host = :host, pid = :pid, pgid = :pgid, proc_start = :proc_start, log_path = :log_path,
       slot = :slot
 WHERE job_id = :id AND attempt = :token;

-- name: finish_job
-- A cancel request in force (cancel_requested_at) turns the end into :cancel_state
-- (retry.if_cancel_requested), read under the same write lock as the update.
-- `waited`: whether a job waits on this one (an unmet edge, one seek of
-- job_deps_by_dependency), so a finish settles dependents only when there are some.
UPDATE jobs
   SET state = CASE WHEN cancel_requested_at IS NULL THEN :state ELSE :cancel_state END,
       next_run_at = CASE WHEN cancel_requested_at IS NULL THEN :now + :delay_ms END,
       attempts = attempts - CASE WHEN cancel_requested_at IS NULL THEN :refund ELSE 0 END,
       last_error = :error, exit_code = :exit_code, worker_id = NULL, lease_until = NULL,
       updated_at = :now
 WHERE id = :id AND claims = :token AND worker_id = :worker AND state = 'processing'
RETURNING id, state, queue,
          EXISTS (SELECT 1 FROM job_deps AS d WHERE d.depends_on = jobs.id AND d.met = 0)
              AS waited;

-- name: finish_attempt
-- Runs after finish_job, in the same transaction, only when finish_job's fence let
-- the write through: the attempt row is then this worker's (its claim opened it).
UPDATE attempts
   SET finished_at = :now, outcome = :outcome, exit_code = :exit_code, signal = :signal,
       error = :error, output = :output, output_size = :output_size
 WHERE job_id = :id AND attempt = :token
RETURNING started_at;

-- name: finish_attempt_started
-- finish_attempt of an attempt whose start came in the same exchange (a short job's
-- start is held and sent with its end): record_start's values in the same update.
UPDATE attempts
   SET finished_at = :now, outcome = :outcome, exit_code = :exit_code, signal = :signal,
       error = :error, output = :output, output_size = :output_size,
       host = :host, pid = :pid, pgid = :pgid, proc_start = :proc_start, log_path = :log_path,
       slot = :slot
 WHERE job_id = :id AND attempt = :token
RETURNING started_at;

-- name: count_tallies
-- In the transaction that finished the attempts (bookkeeping.tally decided how):
-- every counter cell of the transaction, positional (kind, a, b, n, sum_ms), one
-- executemany (migration 013 says what a and b are per kind).
INSERT INTO counters (kind, a, b, n, sum_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (kind, a, b) DO UPDATE SET n = n + excluded.n, sum_ms = sum_ms + excluded.sum_ms;

-- name: forget_minutes
-- The chart shows the last hour; older minutes go with the reaper's sweep.
DELETE FROM counters WHERE kind = 'minute' AND a < :before;

-- name: count_done
UPDATE workers SET jobs_done = jobs_done + :n WHERE id = :worker;

-- name: unclaim_job
-- JobStore.unclaim: a claim whose command never started (no pid, no end recorded on
-- its attempt row) and with no cancel request goes back to pending as if the claim
-- never happened: attempts and claims step back (the jobs_claimed trigger fires
-- only when claims grows), due now so it keeps its (priority, seq) place.
UPDATE jobs
   SET state = 'pending', attempts = attempts - 1, claims = claims - 1, worker_id = NULL,
       lease_until = NULL, next_run_at = :now, updated_at = :now
 WHERE id = :id AND claims = :token AND worker_id = :worker AND state = 'processing'
   AND cancel_requested_at IS NULL
   AND EXISTS (SELECT 1 FROM attempts
                WHERE job_id = :id AND attempt = :token AND pid IS NULL AND finished_at IS NULL)
RETURNING id;

-- name: unclaim_attempt
-- After unclaim_job let the claim through: its attempt row goes, without a trace.
DELETE FROM attempts WHERE job_id = :id AND attempt = :token;

-- name: heartbeat_leases
-- Also says which of them someone asked to cancel.
UPDATE jobs SET lease_until = :lease_until
 WHERE state = 'processing' AND lease_until IS NOT NULL AND worker_id = :worker
RETURNING id, claims, cancel_requested_at;

-- name: heartbeat_worker
UPDATE workers SET heartbeat_at = :now WHERE id = :worker RETURNING stop_requested;

-- name: register_worker
INSERT OR REPLACE INTO workers (id, host, pid, proc_start, started_at, heartbeat_at, count, queues)
VALUES (:id, :host, :pid, :proc_start, :started_at, :now, :count, :queues);

-- name: deregister_worker
DELETE FROM workers WHERE id = :id;

-- name: list_workers
SELECT * FROM workers ORDER BY started_at, id;

-- name: request_stop
UPDATE workers SET stop_requested = max(stop_requested, :mode) RETURNING id;

-- name: expire_worker_leases
-- A worker known to be dead (its pid is gone on this host) loses its leases now
-- instead of when they run out.
UPDATE jobs SET lease_until = 0
 WHERE state = 'processing' AND lease_until IS NOT NULL AND worker_id = :worker;

-- name: select_expired
SELECT j.id, j.claims, j.attempts, j.max_retries, j.worker_id, a.host, a.pgid, a.proc_start,
       a.started_at, a.log_path
  FROM jobs AS j
  LEFT JOIN attempts AS a ON a.job_id = j.id AND a.attempt = j.claims
 WHERE j.state = 'processing' AND j.lease_until IS NOT NULL AND j.lease_until <= :now;

-- name: recover_attempt
-- This host's orphans were killed (on_lost) before this commit: forget their
-- group id, which the kernel may hand to an unrelated process later.
UPDATE attempts
   SET finished_at = :now, outcome = 'lost', error = :error,
       pgid = CASE WHEN host = :host THEN NULL ELSE pgid END
 WHERE job_id = :id AND attempt = :token AND finished_at IS NULL
RETURNING started_at, (SELECT queue FROM jobs WHERE id = :id) AS queue;

-- name: stray_attempts
-- Attempts recorded on :host whose process group may still exist although no
-- worker holds their lease any more: unfinished, or recovered as lost (by a
-- worker on another host, which could not kill them).
SELECT a.job_id, a.attempt, j.attempts, j.max_retries, a.worker_id, a.host, a.pgid,
       a.proc_start, a.started_at
  FROM attempts AS a
  JOIN jobs AS j ON j.id = a.job_id
 WHERE a.host = :host AND a.pgid IS NOT NULL
   AND (a.finished_at IS NULL OR a.outcome = 'lost')
   AND NOT (j.state = 'processing' AND j.claims = a.attempt AND j.lease_until > :now)
 ORDER BY a.job_id, a.attempt;

-- name: keep_lost_output
-- The tail of a lost attempt's output, read from its spool by a worker on its host.
UPDATE attempts SET output = :output, output_size = :size
 WHERE job_id = :id AND attempt = :attempt AND outcome = 'lost' AND output IS NULL
RETURNING attempt;

-- name: forget_stray
UPDATE attempts SET pgid = NULL WHERE job_id = :id AND attempt = :token;

-- name: recover_job
-- A job whose cancel was requested is cancelled, not retried (:cancel_state).
UPDATE jobs
   SET state = CASE WHEN cancel_requested_at IS NULL THEN :state ELSE :cancel_state END,
       next_run_at = CASE WHEN cancel_requested_at IS NULL THEN :now + :delay_ms END,
       last_error = :error, exit_code = NULL,
       worker_id = NULL, lease_until = NULL, updated_at = :now
 WHERE id = :id AND claims = :token AND state = 'processing' AND lease_until <= :now
RETURNING id, state;

-- name: requeue_dead
UPDATE jobs
   SET state = 'pending', attempts = 0, next_run_at = :now, updated_at = :now
 WHERE id = :id AND state = 'dead'
RETURNING id;

-- name: requeue_dead_batch
-- `dlq retry --all` walks the dead jobs in seq order, one short transaction per batch,
-- up to the newest job that existed when it began (:upto), so it always ends.
UPDATE jobs
   SET state = 'pending', attempts = 0, next_run_at = :now, updated_at = :now
 WHERE seq IN (SELECT seq FROM jobs
                WHERE state = 'dead' AND seq > :after AND seq <= :upto
                ORDER BY seq LIMIT :limit)
RETURNING id, seq;

-- name: max_seq
SELECT coalesce(max(seq), 0) AS upto FROM jobs;

-- name: get_job
SELECT * FROM jobs WHERE id = :id;

-- name: job_state
SELECT state FROM jobs WHERE id = :id;

-- name: list_all
-- One query per filter, so each has a plan that uses its index (LIMIT NULL: all).
SELECT * FROM jobs ORDER BY seq DESC LIMIT coalesce(:limit, -1);

-- name: list_by_state
SELECT * FROM jobs WHERE state = :state ORDER BY seq DESC LIMIT coalesce(:limit, -1);

-- name: list_by_queue
SELECT * FROM jobs WHERE queue = :queue ORDER BY seq DESC LIMIT coalesce(:limit, -1);

-- name: list_by_state_queue
SELECT * FROM jobs WHERE state = :state AND queue = :queue ORDER BY seq DESC LIMIT coalesce(:limit, -1);

-- name: counts
SELECT state, sum(n) AS n FROM job_counts GROUP BY state;

-- name: counts_queues
SELECT state, sum(n) AS n FROM job_counts
 WHERE queue IN (SELECT value FROM json_each(:queues)) GROUP BY state;

-- name: due_any
-- A worker's idle poll and --burst: jobs of held queues are not "due" for it.
WITH open (queue) AS (
    SELECT c.queue FROM job_counts AS c
     WHERE c.state IN ('pending', 'failed') AND c.n > 0
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
)
SELECT EXISTS (SELECT 1 FROM open AS o
                WHERE EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_queue_waiting
                               WHERE queue = o.queue AND state = 'pending' AND unmet = 0
                                 AND next_run_at <= :now))
    OR EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_retry_due
                WHERE state = 'failed' AND next_run_at <= :now AND queue IN open);

-- name: due_queues
WITH open (queue) AS (
    SELECT c.queue FROM job_counts AS c
     WHERE c.state IN ('pending', 'failed') AND c.n > 0
       AND c.queue IN (SELECT value FROM json_each(:queues))
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
)
SELECT EXISTS (SELECT 1 FROM open AS o
                WHERE EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_queue_waiting
                               WHERE queue = o.queue AND state = 'pending' AND unmet = 0
                                 AND next_run_at <= :now))
    OR EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_retry_due
                WHERE state = 'failed' AND next_run_at <= :now AND queue IN open);

-- name: busy_any
-- --burst does not wait for the jobs of a paused queue (reference §17.2).
SELECT coalesce(sum(n), 0) FROM job_counts
 WHERE state IN ('processing', 'failed')
   AND queue NOT IN (SELECT queue FROM queue_settings WHERE paused)
   AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused);

-- name: busy_queues
SELECT coalesce(sum(n), 0) FROM job_counts
 WHERE state IN ('processing', 'failed')
   AND queue IN (SELECT value FROM json_each(:queues))
   AND queue NOT IN (SELECT queue FROM queue_settings WHERE paused)
   AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused);

-- name: history
SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, exit_code, signal,
       error, host, pid, output_size, length(output) AS kept
  FROM attempts WHERE job_id = :id ORDER BY attempt;

-- name: attempt_output
SELECT attempt, output, output_size, log_path, host, finished_at
  FROM attempts
 WHERE job_id = :id
   AND attempt = coalesce(:attempt, (SELECT max(attempt) FROM attempts WHERE job_id = :id));

-- name: config_all
SELECT key, value FROM config;

-- name: config_set
INSERT INTO config (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: running_jobs
-- Bounded by the number of processing jobs, i.e. by the worker slots.
SELECT j.id, j.command, j.claims, j.attempts, j.max_retries, j.worker_id, j.lease_until,
       a.slot, a.started_at, a.host, a.pid
  FROM jobs AS j
  JOIN attempts AS a ON a.job_id = j.id AND a.attempt = j.claims
 WHERE j.state = 'processing'
 ORDER BY a.started_at, j.id
 LIMIT :limit;

-- name: finished_since
SELECT outcome, count(*) AS n FROM attempts
 WHERE finished_at >= :since
 GROUP BY outcome;

-- name: next_retry
-- INDEXED BY: without statistics the planner would take jobs_by_state and sort
-- every failed job; naming the index also makes a missing one an error, not a scan.
SELECT * FROM jobs INDEXED BY jobs_retry_due
 WHERE state = 'failed'
 ORDER BY next_run_at, seq
 LIMIT 1;

-- name: recent_dead
SELECT * FROM jobs INDEXED BY jobs_dead_recent
 WHERE state = 'dead'
 ORDER BY updated_at DESC, seq DESC
 LIMIT :limit;

-- name: ids_by_prefix
SELECT id FROM jobs WHERE id >= :lo AND id < :hi ORDER BY id LIMIT :limit;

-- name: ids_by_prefix_state
-- Looks at no more than :scan ids of the prefix, so a key press stays cheap however
-- many jobs share it; the user types one more character to see past them.
SELECT id FROM (SELECT id, state FROM jobs WHERE id >= :lo AND id < :hi ORDER BY id LIMIT :scan)
 WHERE state = :state
 LIMIT :limit;

-- name: queue_settings
SELECT queue, paused, lim FROM queue_settings ORDER BY queue;

-- name: queue_pause
INSERT INTO queue_settings (queue, paused) VALUES (:queue, 1)
ON CONFLICT (queue) DO UPDATE SET paused = 1;

-- name: queue_resume
UPDATE queue_settings SET paused = 0 WHERE queue = :queue;

-- name: queue_resume_all
UPDATE queue_settings SET paused = 0 WHERE paused;

-- name: queue_limit
INSERT INTO queue_settings (queue, lim) VALUES (:queue, :lim)
ON CONFLICT (queue) DO UPDATE SET lim = excluded.lim;

-- name: queue_prune
-- A queue exists while it has jobs or settings: a row with none left goes.
DELETE FROM queue_settings WHERE NOT paused AND lim IS NULL;

-- name: queue_counts
-- Jobs per queue and state, from the counters (one row per pair).
SELECT queue, state, n FROM job_counts WHERE n <> 0;

-- name: queue_exists
SELECT EXISTS (SELECT 1 FROM job_counts WHERE queue = :queue AND n <> 0)
    OR EXISTS (SELECT 1 FROM queue_settings WHERE queue = :queue);

-- name: due_ahead
-- `why`: is a due job of an open queue (among :queues) claimed before this one (a
-- higher priority, or equal and older)? One seek per open queue of
-- jobs_claim_pending, and a look at the due retries.
WITH open (queue) AS (
    SELECT c.queue FROM job_counts AS c
     WHERE c.state IN ('pending', 'failed') AND c.n > 0
       AND (:queues IS NULL OR c.queue IN (SELECT value FROM json_each(:queues)))
       AND c.queue NOT IN queue_held
       AND NOT EXISTS (SELECT 1 FROM queue_settings WHERE queue = '' AND paused)
)
SELECT EXISTS (
    SELECT 1 FROM open AS o
     WHERE EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_claim_pending
                    WHERE queue = o.queue AND state = 'pending' AND unmet = 0 AND priority > :priority
                      AND next_run_at <= :now)
        OR EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_claim_pending
                    WHERE queue = o.queue AND state = 'pending' AND unmet = 0 AND priority = :priority
                      AND seq < :seq AND next_run_at <= :now))
    OR EXISTS (
    SELECT 1 FROM jobs INDEXED BY jobs_retry_due
     WHERE state = 'failed' AND next_run_at <= :now
       AND (priority > :priority OR (priority = :priority AND seq < :seq))
       AND queue IN open);

-- name: job_order
SELECT priority, seq FROM jobs WHERE id = :id;

-- Reads of the web dashboard and /metrics (backends/sqlite_web.py).

-- name: web_page
-- Keyset pagination: a window of at most :scan jobs older than :before (by seq,
-- the primary key), then the page's filters on that window only.
SELECT * FROM (SELECT * FROM jobs WHERE seq < :before ORDER BY seq DESC LIMIT :scan)
 WHERE (:queue IS NULL OR queue = :queue)
   AND (:text IS NULL OR instr(command, :text) > 0 OR substr(id, 1, length(:text)) = :text)
 ORDER BY seq DESC LIMIT :limit;

-- name: web_page_state
SELECT * FROM (SELECT * FROM jobs INDEXED BY jobs_by_state
                WHERE state = :state AND seq < :before ORDER BY seq DESC LIMIT :scan)
 WHERE (:queue IS NULL OR queue = :queue)
   AND (:text IS NULL OR instr(command, :text) > 0 OR substr(id, 1, length(:text)) = :text)
 ORDER BY seq DESC LIMIT :limit;

-- name: web_window
-- How far the window of web_page reached: index only.
SELECT count(*) AS n, min(seq) AS low FROM (SELECT seq FROM jobs WHERE seq < :before
                                 ORDER BY seq DESC LIMIT :scan);

-- name: web_window_state
SELECT count(*) AS n, min(seq) AS low FROM (SELECT seq FROM jobs INDEXED BY jobs_by_state
                                 WHERE state = :state AND seq < :before
                                 ORDER BY seq DESC LIMIT :scan);

-- name: web_queue_counts
SELECT queue, state, n FROM job_counts;

-- name: web_finished_by_minute
-- Kept per minute by the finishing transactions: an hour is at most a few hundred
-- rows, however many attempts ended in it.
SELECT a AS minute, b AS outcome, n FROM counters WHERE kind = 'minute' AND a >= :since;

-- name: web_oldest_due
-- One seek per state: jobs_queue_waiting for the pending jobs, jobs_retry_due for
-- the retries (a queue's due backlog of another queue is never walked).
SELECT next_run_at FROM (
    SELECT * FROM (SELECT next_run_at FROM jobs INDEXED BY jobs_queue_waiting
                    WHERE state = 'pending' AND unmet = 0 AND queue = :queue AND next_run_at <= :now
                    ORDER BY next_run_at LIMIT 1)
    UNION ALL
    SELECT * FROM (SELECT next_run_at FROM jobs INDEXED BY jobs_retry_due
                    WHERE state = 'failed' AND next_run_at <= :now AND queue = :queue
                    ORDER BY next_run_at LIMIT 1))
 ORDER BY next_run_at LIMIT 1;

-- name: web_finished_totals
SELECT a AS queue, b AS outcome, n FROM counters WHERE kind = 'finished';

-- name: web_durations
SELECT a AS queue, b AS le_ms, n, sum_ms FROM counters WHERE kind = 'duration';

-- Schedules (reference §19.2). Rules in backends/bookkeeping.py, flow in backends/sqlite.py.

-- name: insert_schedule
INSERT INTO schedules (name, cron, tz, overlap, paused, job, next_fire_at, created_at, updated_at)
VALUES (:name, :cron, :tz, :overlap, :paused, :job, :next_fire_at, :now, :now)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: list_schedules
SELECT * FROM schedules ORDER BY name;

-- name: get_schedule
SELECT * FROM schedules WHERE name = :name;

-- name: remove_schedule
DELETE FROM schedules WHERE name = :name RETURNING name;

-- name: pause_schedule
UPDATE schedules SET paused = 1, updated_at = :now WHERE name = :name RETURNING name;

-- name: resume_schedule
-- Fire times that passed while paused are not missed ones: start again from now.
UPDATE schedules
   SET next_fire_at = CASE WHEN paused THEN :next_fire_at ELSE next_fire_at END,
       paused = 0, updated_at = :now
 WHERE name = :name
RETURNING name;

-- name: due_schedules
-- The due schedules, each with the store's now and the next fire time after them
-- (one row with NULLs when none is due). Reads schedules_due only.
SELECT :now AS store_now,
       (SELECT min(next_fire_at) FROM schedules
         WHERE paused = 0 AND next_fire_at > :now) AS next_at,
       s.*
  FROM (SELECT 1) LEFT JOIN schedules AS s
    ON s.paused = 0 AND s.next_fire_at <= :now;

-- name: fire_claim
-- The compare-and-set that makes a fire time this worker's: only if the schedule
-- (the same one: created_at) still waits for the fire time the worker read.
UPDATE schedules SET next_fire_at = :next_at, updated_at = :now
 WHERE name = :name AND created_at = :created_at AND next_fire_at = :due_at AND paused = 0
RETURNING overlap, last_job_id;

-- name: fire_done
UPDATE schedules
   SET skipped = skipped + :skipped, last_fire_at = coalesce(:fire_at, last_fire_at),
       last_job_id = coalesce(:job_id, last_job_id)
 WHERE name = :name;

-- name: run_claim
UPDATE schedules SET last_fire_at = :fire_at, last_job_id = :job_id, updated_at = :now
 WHERE name = :name AND created_at = :created_at
RETURNING name;

-- Dependencies (reference §19.1): what `show`, `why` and `status` read.

-- name: deps_of
-- `show`: each dependency with its state (NULL: removed since).
SELECT d.depends_on AS id, p.state, d.met
  FROM job_deps AS d LEFT JOIN jobs AS p ON p.id = d.depends_on
 WHERE d.job_id = :id;

-- name: dependents_of
-- `show`: the jobs that wait (or waited) on this one.
SELECT d.job_id AS id, j.state, d.met
  FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id
 WHERE d.depends_on = :id
 ORDER BY j.seq;

-- name: blocked_counts
-- Pending jobs held by dependencies, per queue (jobs_blocked).
SELECT queue, count(*) AS n FROM jobs INDEXED BY jobs_blocked
 WHERE state = 'pending' AND unmet > 0
 GROUP BY queue;

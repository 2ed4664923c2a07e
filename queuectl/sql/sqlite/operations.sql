-- Named queries for what a person does to jobs (cancel, retry, rm, purge, update).
-- The rules are decided in backends/operations.py from the states read here under
-- the write lock (BEGIN IMMEDIATE); these statements only apply the plan.

-- name: states_of
SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: cancel_waiting
UPDATE jobs SET state = 'cancelled', next_run_at = NULL, updated_at = :now
 WHERE id = :id AND state IN ('pending', 'failed')
RETURNING queue;

-- name: count_cancelled_waiting
-- A cancelled job that never ran counts in queuectl_jobs_finished_total too.
INSERT INTO counters (kind, a, b, n) VALUES ('finished', :queue, 'cancelled', :n)
ON CONFLICT (kind, a, b) DO UPDATE SET n = n + excluded.n;

-- name: request_cancel
-- The first request's time is kept; the worker holding the lease acts on it.
UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, :now)
 WHERE id = :id AND state = 'processing';

-- name: retry_job
UPDATE jobs
   SET state = 'pending', attempts = CASE WHEN :reset THEN 0 ELSE attempts END,
       next_run_at = :now, updated_at = :now, cancel_requested_at = NULL
 WHERE id = :id AND state IN ('dead', 'cancelled', 'failed');

-- name: retry_state_batch
-- `retry --state` walks the jobs of that state in seq order (jobs_by_state), one
-- short transaction per batch, up to the newest job that existed when it began.
UPDATE jobs
   SET state = 'pending', attempts = 0, next_run_at = :now, updated_at = :now,
       cancel_requested_at = NULL
 WHERE seq IN (SELECT seq FROM jobs
                WHERE state = :state AND seq > :after AND seq <= :upto
                  AND (:queue IS NULL OR queue = :queue)
                  -- A job that would wait to complete on a dependency that is dead
                  -- or cancelled stays (retrying that one brings it back).
                  AND NOT (after_mode = 'completed' AND EXISTS (
                      SELECT 1 FROM job_deps AS d JOIN jobs AS p ON p.id = d.depends_on
                       WHERE d.job_id = jobs.id AND p.state IN ('dead', 'cancelled')))
                ORDER BY seq LIMIT :limit)
RETURNING id, seq;

-- name: delete_job
DELETE FROM jobs WHERE id = :id AND state <> 'processing';

-- name: delete_attempts
DELETE FROM attempts WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: purge_finished_batch
-- Completed and cancelled jobs by age, from jobs_finished (its WHERE is repeated
-- word for word so the index applies); :states narrows to one of the two.
-- INDEXED BY: without statistics the planner would walk jobs_by_state instead,
-- every recent finished job included.
DELETE FROM jobs
 WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_finished
                WHERE state IN ('completed', 'cancelled')
                  AND state IN (SELECT value FROM json_each(:states))
                  AND updated_at < :before AND (:queue IS NULL OR queue = :queue)
                  -- Never a job that an unfinished job depends on (reference §16.4).
                  AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                                   WHERE d.depends_on = jobs.id
                                     AND w.state IN ('pending', 'failed', 'processing'))
                LIMIT :limit)
RETURNING id;

-- name: purge_dead_batch
DELETE FROM jobs
 WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_dead_recent
                WHERE state = 'dead' AND updated_at < :before
                  AND (:queue IS NULL OR queue = :queue)
                  -- Never a job that an unfinished job depends on (reference §16.4).
                  AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                                   WHERE d.depends_on = jobs.id
                                     AND w.state IN ('pending', 'failed', 'processing'))
                LIMIT :limit)
RETURNING id;

-- name: count_finished
SELECT count(*) FROM jobs INDEXED BY jobs_finished
 WHERE state IN ('completed', 'cancelled') AND state IN (SELECT value FROM json_each(:states))
   AND updated_at < :before AND (:queue IS NULL OR queue = :queue)
   -- Never a job that an unfinished job depends on (reference §16.4).
   AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                    WHERE d.depends_on = jobs.id
                      AND w.state IN ('pending', 'failed', 'processing'));

-- name: count_dead
SELECT count(*) FROM jobs INDEXED BY jobs_dead_recent
 WHERE state = 'dead' AND updated_at < :before AND (:queue IS NULL OR queue = :queue)
   -- Never a job that an unfinished job depends on (reference §16.4).
   AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                    WHERE d.depends_on = jobs.id
                      AND w.state IN ('pending', 'failed', 'processing'));

-- name: update_job
-- NULL keeps a field as it is. The job must still wait (pending or failed).
UPDATE jobs
   SET priority = coalesce(:priority, priority), queue = coalesce(:queue, queue),
       max_retries = coalesce(:max_retries, max_retries),
       timeout_s = coalesce(:timeout_s, timeout_s),
       run_at = CASE WHEN :move THEN :run_at ELSE run_at END,
       next_run_at = CASE WHEN :move THEN :next_run_at ELSE next_run_at END,
       updated_at = :now
 WHERE id = :id AND state IN ('pending', 'failed')
RETURNING *;

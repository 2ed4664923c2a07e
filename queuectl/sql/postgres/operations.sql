-- Named queries for what a person does to jobs (cancel, retry, rm, purge, update).
-- The rules are decided in backends/operations.py from the states read here with
-- the rows locked (FOR UPDATE, in id order so two such calls cannot deadlock);
-- these statements only apply the plan, in the same transaction.

-- name: states_of
SELECT id, state FROM jobs WHERE id = ANY (:ids::text[]);

-- name: lock_states
SELECT id, state FROM jobs WHERE id = ANY (:ids::text[]) ORDER BY id FOR UPDATE;

-- name: cancel_waiting
-- A cancelled job that never ran counts in queuectl_jobs_finished_total too (a delta
-- row, folded by the reaper like the others).
WITH cancelled AS (
    UPDATE jobs SET state = 'cancelled', next_run_at = NULL,
                    updated_at = queuectl_now_ms(:clock)
     WHERE id = ANY (:ids::text[]) AND state IN ('pending', 'failed')
    RETURNING queue
)
INSERT INTO finished_counts (queue, outcome, n)
SELECT queue, 'cancelled', count(*) FROM cancelled GROUP BY queue;

-- name: request_cancel
-- The first request's time is kept; the worker holding the lease acts on it.
UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, queuectl_now_ms(:clock))
 WHERE id = ANY (:ids::text[]) AND state = 'processing';

-- name: retry_jobs
UPDATE jobs
   SET state = 'pending', attempts = CASE WHEN id = ANY (:reset::text[]) THEN 0 ELSE attempts END,
       next_run_at = queuectl_now_ms(:clock), updated_at = queuectl_now_ms(:clock),
       cancel_requested_at = NULL
 WHERE id = ANY (:ids::text[]) AND state IN ('dead', 'cancelled', 'failed');

-- name: retry_state_batch
-- `retry --state` walks the jobs of that state in seq order, one short statement
-- per batch, up to the newest job that existed when it began.
WITH moved AS (
    UPDATE jobs
       SET state = 'pending', attempts = 0, next_run_at = queuectl_now_ms(:clock),
           updated_at = queuectl_now_ms(:clock), cancel_requested_at = NULL
     WHERE seq IN (SELECT seq FROM jobs
                    WHERE state = :state AND seq > :after::bigint AND seq <= :upto::bigint
                      AND (:queue::text IS NULL OR queue = :queue::text)
                      -- A job that would wait to complete on a dependency that is
                      -- dead or cancelled stays (retrying that one brings it back).
                      AND NOT (after_mode = 'completed' AND EXISTS (
                          SELECT 1 FROM job_deps AS d JOIN jobs AS p ON p.id = d.depends_on
                           WHERE d.job_id = jobs.id AND p.state IN ('dead', 'cancelled')))
                    ORDER BY seq LIMIT :limit::int
                      FOR UPDATE SKIP LOCKED)
    RETURNING id, seq
)
SELECT id, seq, (SELECT nextval('queuectl_version') WHERE EXISTS (SELECT 1 FROM moved)) AS v
  FROM moved ORDER BY seq;

-- name: delete_jobs
WITH gone AS (
    DELETE FROM jobs WHERE id = ANY (:ids::text[]) AND state <> 'processing' RETURNING id
)
DELETE FROM attempts WHERE job_id IN (SELECT id FROM gone);

-- name: purge_batch
-- Finished jobs by age: completed and cancelled ones from jobs_finished, dead ones
-- from jobs_dead_recent. SKIP LOCKED: workers purging at the same time share out
-- the rows instead of waiting for each other.
WITH victims AS (
    SELECT seq FROM jobs
     WHERE state IN ('completed', 'cancelled') AND state = ANY (:states::text[])
       AND updated_at < :before::bigint AND (:queue::text IS NULL OR queue = :queue::text)
       AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                        WHERE d.depends_on = jobs.id
                          AND w.state IN ('pending', 'failed', 'processing'))
    UNION ALL
    SELECT seq FROM jobs
     WHERE state = 'dead' AND 'dead' = ANY (:states::text[])
       AND updated_at < :before::bigint AND (:queue::text IS NULL OR queue = :queue::text)
       AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                        WHERE d.depends_on = jobs.id
                          AND w.state IN ('pending', 'failed', 'processing'))
),
picked AS (
    SELECT seq FROM jobs WHERE seq IN (SELECT seq FROM victims)
     LIMIT :limit::int FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM jobs WHERE seq IN (SELECT seq FROM picked) RETURNING id
),
attempts_gone AS (
    DELETE FROM attempts WHERE job_id IN (SELECT id FROM gone)
),
deps_gone AS (
    DELETE FROM job_deps WHERE job_id IN (SELECT id FROM gone)
)
SELECT count(*) AS n FROM gone;

-- name: purge_count
SELECT (SELECT count(*) FROM jobs
         WHERE state IN ('completed', 'cancelled') AND state = ANY (:states::text[])
           AND updated_at < :before::bigint AND (:queue::text IS NULL OR queue = :queue::text)
           AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                                    WHERE d.depends_on = jobs.id
                                      AND w.state IN ('pending', 'failed', 'processing')))
     + (SELECT count(*) FROM jobs
         WHERE state = 'dead' AND 'dead' = ANY (:states::text[])
           AND updated_at < :before::bigint AND (:queue::text IS NULL OR queue = :queue::text)
           AND NOT EXISTS (SELECT 1 FROM job_deps AS d JOIN jobs AS w ON w.id = d.job_id
                                    WHERE d.depends_on = jobs.id
                                      AND w.state IN ('pending', 'failed', 'processing')))
       AS n;

-- name: update_job
-- NULL keeps a field as it is. The job must still wait (pending or failed). A
-- new start given as a delay counts from the server's clock.
UPDATE jobs
   SET priority = coalesce(:priority::int, priority), queue = coalesce(:queue::text, queue),
       max_retries = coalesce(:max_retries::int, max_retries),
       timeout_s = coalesce(:timeout_s::float8, timeout_s),
       run_at = CASE WHEN :move::bool
                     THEN coalesce(queuectl_now_ms(:clock) + :delay_ms::bigint, :run_at::bigint)
                     ELSE run_at END,
       next_run_at = CASE WHEN :move::bool
                          THEN coalesce(queuectl_now_ms(:clock) + :delay_ms::bigint,
                                        :next_run_at::bigint)
                          ELSE next_run_at END,
       updated_at = queuectl_now_ms(:clock)
 WHERE id = :id AND state IN ('pending', 'failed')
RETURNING *;

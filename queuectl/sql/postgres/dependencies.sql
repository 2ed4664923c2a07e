-- Named queries for dependencies between jobs (reference §19.1), PostgreSQL. The
-- rules are in backends/bookkeeping.py and the flow in backends/postgres_deps.py;
-- every statement runs in the transaction that changed the jobs it starts from.
-- Releasing dependents is the function queuectl_settle (migration 007).

-- name: lock_deps
-- The dependencies named by an enqueue, locked until it commits: a worker ending
-- one meanwhile waits, and then sees the new dependents (queuectl_settle).
SELECT id, state FROM jobs WHERE id = ANY (:ids::text[]) ORDER BY id FOR SHARE;

-- name: insert_deps
INSERT INTO job_deps (job_id, depends_on, met)
SELECT * FROM unnest(:job_ids::text[], :depends_on::text[], :met::bool[]);

-- name: set_unmet
UPDATE jobs AS j SET unmet = u.n
  FROM unnest(:ids::text[], :unmet::int[]) AS u (id, n)
 WHERE j.id = u.id;

-- name: settle
SELECT queuectl_settle(:ids::text[], :states::text[], queuectl_now_ms(:clock), :why,
                       :channel) AS freed;

-- name: revive
WITH RECURSIVE back (id) AS (
    SELECT unnest(:ids::text[]) COLLATE "C"
    UNION
    SELECT j.id FROM back AS b JOIN jobs AS j ON j.cancelled_by = b.id
     WHERE j.state = 'cancelled'
)
UPDATE jobs
   SET state = 'pending', attempts = 0, next_run_at = queuectl_now_ms(:clock),
       updated_at = queuectl_now_ms(:clock), cancel_requested_at = NULL, cancelled_by = NULL
 WHERE id IN (SELECT id FROM back) AND NOT id = ANY (:ids::text[]) AND state = 'cancelled'
RETURNING id;

-- name: recount_edges
UPDATE job_deps AS d
   SET met = coalesce((SELECT p.state = 'completed'
                              OR (j.after_mode = 'finished'
                                  AND p.state IN ('dead', 'cancelled'))
                         FROM jobs AS p, jobs AS j
                        WHERE p.id = d.depends_on AND j.id = d.job_id), true)
 WHERE d.job_id = ANY (:ids::text[]);

-- name: recount_jobs
UPDATE jobs
   SET unmet = (SELECT count(*) FROM job_deps AS d WHERE d.job_id = jobs.id AND NOT d.met),
       cancelled_by = NULL
 WHERE id = ANY (:ids::text[]);

-- name: gone_deps
SELECT DISTINCT p.id, p.state FROM job_deps AS d JOIN jobs AS p ON p.id = d.depends_on
 WHERE d.job_id = ANY (:ids::text[]) AND NOT d.met AND p.state IN ('dead', 'cancelled');

-- name: blockers
SELECT d.job_id, d.depends_on, p.state
  FROM job_deps AS d
  JOIN jobs AS j ON j.id = d.job_id
  JOIN jobs AS p ON p.id = d.depends_on
 WHERE d.job_id = ANY (:ids::text[]) AND j.after_mode = 'completed'
   AND p.state IN ('dead', 'cancelled')
 ORDER BY d.job_id, d.depends_on;

-- name: waiting_on
SELECT d.depends_on, d.job_id, j.state
  FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id
 WHERE d.depends_on = ANY (:ids::text[]) AND j.state IN ('pending', 'failed', 'processing')
 ORDER BY d.depends_on, d.job_id;

-- name: delete_deps
DELETE FROM job_deps WHERE job_id = ANY (:ids::text[]);

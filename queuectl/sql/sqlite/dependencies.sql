-- Named queries for dependencies between jobs (reference §19.1). The rules are in
-- backends/bookkeeping.py (and the flow in backends/sqlite_deps.py); every statement
-- runs inside the transaction that changed the jobs it starts from.

-- name: insert_deps
INSERT INTO job_deps (job_id, depends_on, met) VALUES (:job_id, :depends_on, :met);

-- name: dep_states
-- The states of the jobs named as dependencies (missing ones are absent).
SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: doom
-- The jobs that can no longer run because a dependency of theirs (among :gone, just
-- ended dead or cancelled) did not complete, and so on down the chain: pending
-- jobs of after_mode 'completed' still waiting on that edge. They become
-- cancelled, naming the job they waited on (:why holds {id}).
WITH RECURSIVE doomed (id, cause) AS (
    SELECT d.job_id, d.depends_on
      FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id
     WHERE d.depends_on IN (SELECT value FROM json_each(:gone)) AND d.met = 0
       AND j.state = 'pending' AND j.after_mode = 'completed'
    UNION
    SELECT d.job_id, d.depends_on
      FROM doomed AS g
      JOIN job_deps AS d ON d.depends_on = g.id
      JOIN jobs AS j ON j.id = d.job_id
     WHERE d.met = 0 AND j.state = 'pending' AND j.after_mode = 'completed'
),
cause (id, cause) AS (SELECT id, min(cause) FROM doomed GROUP BY id)
UPDATE jobs
   SET state = 'cancelled', next_run_at = NULL, updated_at = :now,
       cancelled_by = (SELECT c.cause FROM cause AS c WHERE c.id = jobs.id),
       last_error = replace(:why, '{id}', (SELECT c.cause FROM cause AS c WHERE c.id = jobs.id))
 WHERE id IN (SELECT id FROM cause) AND state = 'pending'
RETURNING id, queue;

-- name: meet
-- The edges from :done (jobs that just finished) to pending jobs that wait on them
-- and may now go on: the dependency completed, or the job waits for any end.
UPDATE job_deps SET met = 1
 WHERE depends_on IN (SELECT value FROM json_each(:done)) AND met = 0
   AND EXISTS (SELECT 1 FROM jobs AS j, jobs AS p
                WHERE j.id = job_deps.job_id AND j.state = 'pending'
                  AND p.id = job_deps.depends_on
                  AND (p.state = 'completed'
                       OR (j.after_mode = 'finished' AND p.state IN ('dead', 'cancelled'))))
RETURNING job_id;

-- name: lower_unmet
UPDATE jobs SET unmet = max(unmet - :n, 0) WHERE id = :id AND state = 'pending';

-- name: revive
-- `retry` of :ids brings back the jobs their end cancelled, down the chain
-- (cancelled_by); recount then says what each still waits for.
WITH RECURSIVE back (id) AS (
    SELECT value FROM json_each(:ids)
    UNION
    SELECT j.id FROM back AS b JOIN jobs AS j ON j.cancelled_by = b.id
     WHERE j.state = 'cancelled'
)
UPDATE jobs
   SET state = 'pending', attempts = 0, next_run_at = :now, updated_at = :now,
       cancel_requested_at = NULL, cancelled_by = NULL
 WHERE id IN (SELECT id FROM back) AND id NOT IN (SELECT value FROM json_each(:ids))
   AND state = 'cancelled'
RETURNING id;

-- name: recount_edges
-- After a retry: each edge of :ids is met as the dependency stands now (a
-- dependency removed since counts as met).
UPDATE job_deps
   SET met = coalesce((SELECT p.state = 'completed'
                              OR (j.after_mode = 'finished'
                                  AND p.state IN ('dead', 'cancelled'))
                         FROM jobs AS p, jobs AS j
                        WHERE p.id = job_deps.depends_on AND j.id = job_deps.job_id), 1)
 WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: recount_jobs
UPDATE jobs
   SET unmet = (SELECT count(*) FROM job_deps AS d WHERE d.job_id = jobs.id AND d.met = 0),
       cancelled_by = NULL
 WHERE id IN (SELECT value FROM json_each(:ids));

-- name: gone_deps
-- The dependencies of :ids that ended dead or cancelled (the retried jobs that
-- wait on them with after_mode 'completed' are cancelled again by doom).
SELECT DISTINCT d.depends_on FROM job_deps AS d JOIN jobs AS p ON p.id = d.depends_on
 WHERE d.job_id IN (SELECT value FROM json_each(:ids)) AND d.met = 0
   AND p.state IN ('dead', 'cancelled');

-- name: blockers
-- For `retry`: dependencies of :ids that ended dead or cancelled while the job
-- waits for them to complete.
SELECT d.job_id, d.depends_on, p.state
  FROM job_deps AS d
  JOIN jobs AS j ON j.id = d.job_id
  JOIN jobs AS p ON p.id = d.depends_on
 WHERE d.job_id IN (SELECT value FROM json_each(:ids)) AND j.after_mode = 'completed'
   AND p.state IN ('dead', 'cancelled')
 ORDER BY d.job_id, d.depends_on;

-- name: waiting_on
-- For `rm`: unfinished jobs that depend on :ids.
SELECT d.depends_on, d.job_id, j.state
  FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id
 WHERE d.depends_on IN (SELECT value FROM json_each(:ids))
   AND j.state IN ('pending', 'failed', 'processing')
 ORDER BY d.depends_on, d.job_id;

-- name: delete_deps
DELETE FROM job_deps WHERE job_id IN (SELECT value FROM json_each(:ids));

-- Version 7: dependencies between jobs (reference §19.1).
--
-- A job that waits for dependencies stays `pending` but is not runnable: `unmet`
-- counts the dependencies it still waits for, and the indexes the claim and the
-- idle workers read hold only jobs with `unmet = 0`, so the claim never scans nor
-- joins dependencies. The transaction that ends a dependency (an exchange, a
-- recovery, a cancel) calls queuectl_settle, which cancels the dependents that can
-- no longer run (down the chain), marks the other edges met and lowers `unmet`.
-- The rules are in backends/bookkeeping.py; the same steps run on SQLite as three
-- statements of sql/sqlite/dependencies.sql.

ALTER TABLE jobs ADD COLUMN after_ids text;
ALTER TABLE jobs ADD COLUMN after_mode text NOT NULL DEFAULT 'completed'
    CHECK (after_mode IN ('completed', 'finished'));
ALTER TABLE jobs ADD COLUMN unmet integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancelled_by text COLLATE "C";

-- job_id waits for depends_on; `met` is set once, by the transaction that finished
-- depends_on (or at enqueue when it had finished already).
CREATE TABLE job_deps (
    job_id     text    COLLATE "C" NOT NULL,
    depends_on text    COLLATE "C" NOT NULL,
    met        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX job_deps_by_dependency ON job_deps (depends_on);

-- The runnable indexes hold only jobs that wait for nothing.
DROP INDEX jobs_runnable;
CREATE INDEX jobs_runnable ON jobs (queue, priority DESC, seq, next_run_at)
    WHERE state IN ('pending', 'failed') AND unmet = 0;
DROP INDEX jobs_queue_waiting;
CREATE INDEX jobs_queue_waiting ON jobs (queue, next_run_at)
    WHERE state IN ('pending', 'failed') AND unmet = 0 AND next_run_at > 0;
-- The pending jobs held by dependencies (`status`, `list` mark them).
CREATE INDEX jobs_blocked ON jobs (queue) WHERE state = 'pending' AND unmet > 0;
-- The jobs a dependency's end cancelled, found again by its `retry`.
CREATE INDEX jobs_cancelled_by ON jobs (cancelled_by) WHERE cancelled_by IS NOT NULL;

-- The dependents of jobs that just ended (p_ids, in p_states): in the caller's
-- transaction. VOLATILE, so its statements read with a fresh snapshot: an enqueue
-- that locked a dependency before the calling statement could (and committed a
-- new dependent meanwhile) is seen. Returns how many jobs it made runnable, and
-- wakes the idle workers if any.
CREATE FUNCTION queuectl_settle(p_ids text[], p_states text[], p_now bigint, p_why text,
                                p_channel text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    freed integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM job_deps WHERE depends_on = ANY (p_ids)) THEN
        RETURN 0;
    END IF;
    WITH RECURSIVE ended (id, st) AS (
        SELECT i COLLATE "C", s FROM unnest(p_ids, p_states) AS u (i, s)
    ),
    doomed (id, cause) AS (
        SELECT d.job_id, d.depends_on
          FROM ended AS e JOIN job_deps AS d ON d.depends_on = e.id
          JOIN jobs AS j ON j.id = d.job_id
         WHERE e.st IN ('dead', 'cancelled') AND NOT d.met
           AND j.state = 'pending' AND j.after_mode = 'completed'
        UNION
        SELECT d.job_id, d.depends_on
          FROM doomed AS g JOIN job_deps AS d ON d.depends_on = g.id
          JOIN jobs AS j ON j.id = d.job_id
         WHERE NOT d.met AND j.state = 'pending' AND j.after_mode = 'completed'
    ),
    cause AS (SELECT id, min(cause) AS cause FROM doomed GROUP BY id),
    cancelled AS (
        UPDATE jobs AS j
           SET state = 'cancelled', next_run_at = NULL, updated_at = p_now,
               cancelled_by = c.cause, last_error = replace(p_why, '{id}', c.cause)
          FROM cause AS c
         WHERE j.id = c.id AND j.state = 'pending'
        RETURNING j.id, j.queue
    ),
    tallied AS (
        INSERT INTO finished_counts (queue, outcome, n)
        SELECT queue, 'cancelled', count(*) FROM cancelled GROUP BY queue
    ),
    done (id, st) AS (
        SELECT id, st FROM ended WHERE st IN ('completed', 'dead', 'cancelled')
        UNION ALL
        SELECT id, 'cancelled' FROM cancelled
    ),
    met AS (
        UPDATE job_deps AS d SET met = true
          FROM done AS e, jobs AS j
         WHERE d.depends_on = e.id AND NOT d.met AND j.id = d.job_id
           AND j.state = 'pending' AND j.id NOT IN (SELECT id FROM cause)
           AND (e.st = 'completed' OR j.after_mode = 'finished')
        RETURNING d.job_id
    ),
    lowered AS (
        UPDATE jobs AS j SET unmet = greatest(j.unmet - m.n, 0)
          FROM (SELECT job_id, count(*) AS n FROM met GROUP BY job_id) AS m
         WHERE j.id = m.job_id AND j.state = 'pending'
        RETURNING j.unmet
    )
    SELECT count(*) FILTER (WHERE unmet = 0) INTO freed FROM lowered;
    IF freed > 0 THEN
        PERFORM pg_notify(p_channel, 'j'), nextval('queuectl_version');
    END IF;
    RETURN freed;
END $$;

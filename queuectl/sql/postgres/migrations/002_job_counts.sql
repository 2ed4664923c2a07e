-- Version 2: job counts per queue and state kept by triggers, so `status` and the
-- workers' idle poll read a handful of rows instead of counting a million jobs.

-- Job counts per (queue, state) as rows of deltas: triggers only ever INSERT, so
-- workers never wait on one another for a counter row (a single counter row per
-- state would serialise every claim in the cluster). Readers sum the rows; the
-- reaper folds them together now and then (compact_counts).
CREATE TABLE job_counts (
    queue text   NOT NULL,
    state text   NOT NULL,
    n     bigint NOT NULL
);

CREATE FUNCTION queuectl_count_insert() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM new_rows GROUP BY queue, state;
    RETURN NULL;
END $$;

CREATE FUNCTION queuectl_count_update() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, sum(d) FROM (
        SELECT o.queue, o.state, -1 AS d
          FROM old_rows AS o JOIN new_rows AS w USING (seq)
         WHERE o.state <> w.state OR o.queue <> w.queue
        UNION ALL
        SELECT w.queue, w.state, 1
          FROM old_rows AS o JOIN new_rows AS w USING (seq)
         WHERE o.state <> w.state OR o.queue <> w.queue
    ) AS changes
    GROUP BY queue, state HAVING sum(d) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION queuectl_count_delete() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, -count(*) FROM old_rows GROUP BY queue, state;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl_count_insert();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl_count_update();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl_count_delete();

-- Jobs that exist already (a version-1 schema being migrated) are counted once.
INSERT INTO job_counts (queue, state, n)
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

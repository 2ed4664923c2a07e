-- Version 5: counters of finished attempts for /metrics, kept in the statement that
-- finishes an attempt (never recounted from `attempts`, so they never go down when
-- jobs are removed or purged). What counts how is decided in
-- backends/bookkeeping.py (tally, DURATION_BOUNDS_MS); this file only seeds them
-- once from the attempts a schema already holds, with the same rules.
--
-- As job_counts: rows of deltas, only ever INSERTed by the finishing statements so
-- workers never wait on one another for a counter row; readers sum them, and the
-- reaper folds them together now and then (compact_counters).

-- Finished attempts per queue and outcome (bookkeeping.TALLIES).
CREATE TABLE finished_counts (
    queue   text   NOT NULL,
    outcome text   NOT NULL,
    n       bigint NOT NULL
);

-- Finished attempts per queue and duration bucket (le_ms: the bucket's inclusive
-- upper bound, 2^62 for +Inf; not cumulative), with the sum of their durations.
CREATE TABLE duration_buckets (
    queue  text   NOT NULL,
    le_ms  bigint NOT NULL,
    n      bigint NOT NULL,
    sum_ms bigint NOT NULL
);

-- Attempts ended per minute and outcome (the attempt's own), for the dashboard's
-- last-hour chart; compact_counters drops minutes older than two hours.
CREATE TABLE finished_minutes (
    minute  bigint NOT NULL,
    outcome text   NOT NULL,
    n       bigint NOT NULL
);

INSERT INTO finished_minutes (minute, outcome, n)
SELECT finished_at / 60000 * 60000 AS minute, outcome, count(*)
  FROM attempts
 WHERE finished_at >= queuectl_now_ms(NULL) - 7200000 AND outcome IS NOT NULL
 GROUP BY minute, outcome;

INSERT INTO finished_counts (queue, outcome, n)
SELECT queue, tally, count(*) FROM (
    SELECT j.queue,
           CASE WHEN a.outcome IN ('completed', 'lost', 'interrupted', 'cancelled') THEN a.outcome
                WHEN j.state = 'dead' AND a.attempt = j.claims THEN 'dead'
                WHEN j.state = 'cancelled' AND a.attempt = j.claims THEN 'cancelled'
                ELSE 'failed' END AS tally
      FROM attempts AS a JOIN jobs AS j ON j.id = a.job_id
     WHERE a.finished_at IS NOT NULL AND a.outcome IS NOT NULL
    UNION ALL
    -- A cancelled job that never ran counts once too.
    SELECT queue, 'cancelled' FROM jobs WHERE state = 'cancelled' AND claims = 0
) AS finished
GROUP BY queue, tally;

INSERT INTO duration_buckets (queue, le_ms, n, sum_ms)
SELECT queue,
       (SELECT min(b) FROM unnest('{10,25,50,100,250,500,1000,2500,5000,10000,30000,60000,
                                    300000,900000,1800000,3600000,4611686018427387904}'::bigint[])
               AS b WHERE b >= ms) AS le,
       count(*), sum(ms)
  FROM (SELECT j.queue, greatest(a.finished_at - a.started_at, 0) AS ms
          FROM attempts AS a JOIN jobs AS j ON j.id = a.job_id
         WHERE a.finished_at IS NOT NULL AND a.outcome IS NOT NULL) AS finished
 GROUP BY queue, le;

-- Version 9: counters of finished attempts for /metrics, kept in the transaction
-- that finishes an attempt (never recounted from `attempts`, so they never go
-- down when jobs are removed or purged). What counts how is decided in
-- backends/bookkeeping.py (tally, DURATION_BOUNDS_MS); this file only seeds them
-- once from the attempts a database already holds, with the same rules.

-- Finished attempts per queue and outcome (bookkeeping.TALLIES).
CREATE TABLE finished_counts (
    queue   TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (queue, outcome)
) WITHOUT ROWID;

-- Finished attempts per queue and duration bucket (le_ms: the bucket's inclusive
-- upper bound, 2^62 for +Inf; not cumulative), with the sum of their durations.
CREATE TABLE duration_buckets (
    queue  TEXT    NOT NULL,
    le_ms  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    sum_ms INTEGER NOT NULL,
    PRIMARY KEY (queue, le_ms)
) WITHOUT ROWID;

-- Attempts ended per minute and outcome (the attempt's own), for the dashboard's
-- last-hour chart; the reaper forgets minutes older than two hours.
CREATE TABLE finished_minutes (
    minute  INTEGER NOT NULL,
    outcome TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (minute, outcome)
) WITHOUT ROWID;

INSERT INTO finished_minutes (minute, outcome, n)
SELECT finished_at / 60000 * 60000 AS minute, outcome, count(*)
  FROM attempts
 WHERE finished_at >= (CAST(strftime('%s', 'now') AS INTEGER) - 7200) * 1000
   AND outcome IS NOT NULL
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
       coalesce((SELECT min(value) FROM json_each(
           '[10,25,50,100,250,500,1000,2500,5000,10000,30000,60000,300000,900000,1800000,3600000]')
                  WHERE value >= ms), 4611686018427387904) AS le,
       count(*), sum(ms)
  FROM (SELECT j.queue, max(a.finished_at - a.started_at, 0) AS ms
          FROM attempts AS a JOIN jobs AS j ON j.id = a.job_id
         WHERE a.finished_at IS NOT NULL AND a.outcome IS NOT NULL)
 GROUP BY queue, le;

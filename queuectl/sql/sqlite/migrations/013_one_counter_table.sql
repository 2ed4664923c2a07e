-- Version 13: the finished-attempt counters of version 9 in one table, so the
-- transaction that finishes attempts writes them with one statement into one
-- B-tree (two WAL pages less in every worker transaction). The counters, their
-- rules (backends/bookkeeping.py) and what /metrics, `status` and the dashboard
-- show are unchanged. A row is one counter cell, by kind:
--   'finished'  a = queue,  b = outcome (bookkeeping.TALLIES), n
--   'duration'  a = queue,  b = le_ms (bucket's inclusive upper bound), n, sum_ms
--   'minute'    a = minute (epoch ms), b = the attempt's own outcome, n
-- a and b have no declared type (no affinity): each kind keeps the types it
-- stores, and a queue named "10" stays text.

CREATE TABLE counters (
    kind   TEXT    NOT NULL,
    a              NOT NULL,
    b              NOT NULL,
    n      INTEGER NOT NULL,
    sum_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, a, b)
) WITHOUT ROWID;

INSERT INTO counters (kind, a, b, n) SELECT 'finished', queue, outcome, n FROM finished_counts;
INSERT INTO counters (kind, a, b, n, sum_ms)
SELECT 'duration', queue, le_ms, n, sum_ms FROM duration_buckets;
INSERT INTO counters (kind, a, b, n) SELECT 'minute', minute, outcome, n FROM finished_minutes;

DROP TABLE finished_counts;
DROP TABLE duration_buckets;
DROP TABLE finished_minutes;

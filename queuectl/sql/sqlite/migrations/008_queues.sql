-- Version 8: operating queues (pause, limit) and unique jobs.

-- Settings of named queues, in a table of their own so the claim reads a few rows,
-- never the jobs, to learn what is held. A row exists only while a queue has a
-- setting (`queue resume` of an unlimited queue deletes it). The row named ''
-- (never a queue's name) is `queue pause --all`: it holds every queue, including
-- queues that appear later, until `queue resume --all`.
CREATE TABLE queue_settings (
    queue  TEXT    PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    -- At most this many jobs of the queue processing at once; NULL: no limit.
    lim    INTEGER CHECK (lim IS NULL OR lim > 0)
) WITHOUT ROWID;

-- Runnable means indexed: the claim walks the pending jobs of each queue it may
-- take jobs from, in claim order, and merges them (see claim_any); a paused
-- queue's backlog is never stepped over. next_run_at is in the index so that a job
-- that is not due yet is skipped on its index entry.
DROP INDEX jobs_claim_pending;
CREATE INDEX jobs_claim_pending ON jobs (queue, priority DESC, seq, next_run_at)
    WHERE state = 'pending';

-- Whether, and when, a queue's next pending job falls due: one seek (idle workers'
-- wake-up timer and poll, per open queue).
CREATE INDEX jobs_queue_waiting ON jobs (queue, next_run_at) WHERE state = 'pending';

-- Unique jobs: one job at a time per key among the jobs that are still to run. The
-- store enforces it (a concurrent enqueue cannot slip between a read and a write).
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'failed', 'processing');

-- The queues whose jobs no claim may take now: paused, or as many running as their
-- limit allows (read from job_counts, one row per queue). `pause --all` is the row ''.
CREATE VIEW queue_held (queue) AS
SELECT s.queue FROM queue_settings AS s
 WHERE s.paused
    OR s.lim <= coalesce((SELECT c.n FROM job_counts AS c
                           WHERE c.queue = s.queue AND c.state = 'processing'), 0);

-- How many more jobs of each limited queue may start now.
CREATE VIEW queue_slots (queue, slots) AS
SELECT s.queue, s.lim - coalesce((SELECT c.n FROM job_counts AS c
                                   WHERE c.queue = s.queue AND c.state = 'processing'), 0)
  FROM queue_settings AS s
 WHERE s.lim IS NOT NULL;

-- Version 4: operating queues (pause, limit) and unique jobs.

-- Settings of named queues, in a table of their own so the claim reads a few rows,
-- never the jobs, to learn what is held. A row exists only while a queue has a
-- setting (`queue resume` of an unlimited queue deletes it). The row named ''
-- (never a queue's name) is `queue pause --all`: it holds every queue, including
-- queues that appear later, until `queue resume --all`.
CREATE TABLE queue_settings (
    queue  text    COLLATE "C" PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    -- At most this many jobs of the queue processing at once; NULL: no limit.
    lim    integer CHECK (lim IS NULL OR lim > 0)
);

-- A queue's running jobs, counted by the limit check: as many as there are slots.
CREATE INDEX jobs_running_queue ON jobs (queue) WHERE state = 'processing';
-- Runnable means indexed: the claim walks the waiting jobs of each queue it may take
-- jobs from, in claim order (see exchange), so a paused queue's backlog is never
-- stepped over. next_run_at is a key column so that "due yet?" is checked on the
-- index entry. The queues themselves are found by a loose scan of it.
DROP INDEX jobs_runnable;
CREATE INDEX jobs_runnable ON jobs (queue, priority DESC, seq, next_run_at)
    WHERE state IN ('pending', 'failed');
-- When a queue's next waiting job falls due (the idle worker's timer and poll): one
-- seek per queue. "next_run_at > 0" (true of every real time) keeps the claim off
-- it, as for jobs_due: a range of due jobs sorted per claim is ruinous for a backlog.
CREATE INDEX jobs_queue_waiting ON jobs (queue, next_run_at)
    WHERE state IN ('pending', 'failed') AND next_run_at > 0;

-- How many more jobs of limited queue q may start now, for the claim. It locks the
-- queue's settings row first, so the claims of one limited queue (on any host) take
-- turns, and then counts with a snapshot of its own, taken once the lock is held:
-- the count sees every claim committed before, which the claim statement's own
-- snapshot (taken before it waited for the lock) would not. A VOLATILE function
-- is what gets that fresh snapshot in READ COMMITTED. `done` are the jobs the same
-- statement just finished, which no longer run whether or not the count sees that.
CREATE FUNCTION queuectl_queue_slots(q text, lim integer, done text[]) RETURNS integer
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM queue_settings WHERE queue = q FOR UPDATE;
    RETURN lim - (SELECT count(*) FROM jobs
                   WHERE state = 'processing' AND queue = q AND id <> ALL (done))::integer;
END $$;

-- Unique jobs: one job at a time per key among the jobs that are still to run. The
-- store enforces it (a concurrent enqueue cannot slip between a read and a write).
ALTER TABLE jobs ADD COLUMN unique_key text;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'failed', 'processing');

-- The queues whose jobs no claim may take now, as far as a plain read can tell:
-- paused, or as busy as their limit. For wake-ups, --burst and `why`; the claim
-- itself decides limits with queuectl_queue_slots. `pause --all` is the row ''.
CREATE VIEW queue_held (queue) AS
SELECT s.queue FROM queue_settings AS s
 WHERE s.paused
    OR s.lim <= (SELECT count(*) FROM jobs AS j
                  WHERE j.state = 'processing' AND j.queue = s.queue);

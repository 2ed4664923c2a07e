-- Version 3: what `status --watch` and shell completion read on every refresh or
-- key press, each from a small index instead of a scan.

-- The slot that runs an attempt, so the live view can show what each slot does.
ALTER TABLE attempts ADD COLUMN slot INTEGER;

-- Attempts that ended recently ("completed / failed in the last minute"); covering,
-- so counting a minute of outcomes never touches the attempt rows and their output.
CREATE INDEX attempts_finished ON attempts (finished_at, outcome)
    WHERE finished_at IS NOT NULL;

-- The next retry: failed jobs by due time. jobs_due also holds every pending job,
-- which a "first failed job" search would have to walk past.
CREATE INDEX jobs_retry_due ON jobs (next_run_at) WHERE state = 'failed';

-- The newest dead jobs, by the time they died.
CREATE INDEX jobs_dead_recent ON jobs (updated_at) WHERE state = 'dead';

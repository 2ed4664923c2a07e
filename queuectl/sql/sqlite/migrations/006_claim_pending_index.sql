-- Version 6: claims read pending and failed jobs from separate indexes.
-- With one index over both states in claim order (priority, seq), a claim had to
-- step over every failed job waiting for its retry, and read its row to see that
-- it was not due: 20 ms per claim with 10,000 retries waiting among 10^6 jobs.
-- Pending jobs are now walked in claim order with next_run_at in the index (a
-- delayed job is skipped without reading its row); due retries come from
-- jobs_retry_due (next_run_at) of version 3. jobs_runnable is no longer read.

DROP INDEX jobs_runnable;
CREATE INDEX jobs_claim_pending ON jobs (priority DESC, seq, next_run_at)
    WHERE state = 'pending';

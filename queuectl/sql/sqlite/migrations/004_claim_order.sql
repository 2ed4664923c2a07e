-- Version 4: claims take the highest priority first and, among equals, the oldest
-- job (reference §5.3: ties run oldest first), no longer the one due longest. The claim
-- walks this index in order, skipping rows that are not due yet.

DROP INDEX jobs_runnable;
CREATE INDEX jobs_runnable ON jobs (priority DESC, seq)
    WHERE state IN ('pending', 'failed');

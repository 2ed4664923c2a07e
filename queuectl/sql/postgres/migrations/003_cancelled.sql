-- Version 3: the sixth state, `cancelled` (reference §5.1), and the cancel request of a
-- running job. PostgreSQL alters a CHECK constraint in place; the new one admits
-- every row the old one did, and the whole migration is one transaction.

ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead', 'cancelled'));

-- When someone asked to cancel the job while it ran (on the server's clock); the
-- worker that holds the lease kills the command and finishes the attempt as
-- cancelled. NULL: no request. Adding a nullable column rewrites nothing.
ALTER TABLE jobs ADD COLUMN cancel_requested_at bigint;

-- What `purge` and the workers' retention read: finished jobs by the time they
-- ended, so a batch of old ones is found without walking the recent ones.
CREATE INDEX jobs_finished ON jobs (updated_at, seq) WHERE state IN ('completed', 'cancelled');

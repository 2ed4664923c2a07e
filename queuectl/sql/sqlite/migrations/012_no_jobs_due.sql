-- Version 12: drop jobs_due (next_run_at of pending and failed jobs). Nothing reads
-- it since versions 8 and 11: the claim walks jobs_claim_pending, idle workers and
-- `--burst` seek jobs_queue_waiting and jobs_retry_due. It was still written by
-- every claim (and retry), one more page in each worker transaction.

DROP INDEX jobs_due;

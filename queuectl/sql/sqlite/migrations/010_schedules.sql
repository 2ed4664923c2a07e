-- Version 10: schedules (reference §19.2). A worker makes a schedule's job by moving
-- next_fire_at on (a compare-and-set on the value it read) and inserting the job
-- NAME@<fire time> in the same transaction: whoever loses the race changes nothing.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE schedules (
    name         TEXT    PRIMARY KEY,
    cron         TEXT    NOT NULL,
    -- An IANA zone name, so every host computes the same fire times.
    tz           TEXT    NOT NULL,
    overlap      TEXT    NOT NULL CHECK (overlap IN ('skip', 'allow')),
    paused       INTEGER NOT NULL DEFAULT 0,
    -- The job template: an enqueue object (JSON) with only the fields given.
    job          TEXT    NOT NULL,
    -- The next fire time not yet handled; NULL when the expression never fires again.
    next_fire_at INTEGER,
    last_fire_at INTEGER,
    last_job_id  TEXT,
    skipped      INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- What the workers' scheduler reads: the due schedules and the next fire time.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;

-- Version 6: schedules (reference §19.2). A worker makes a schedule's job by moving
-- next_fire_at on (a compare-and-set on the value it read) and inserting the job
-- NAME@<fire time> in the same transaction: whoever loses the race changes nothing,
-- and a worker killed mid-fire leaves nothing behind (its transaction rolls back).

CREATE TABLE schedules (
    name         text    COLLATE "C" PRIMARY KEY,
    cron         text    NOT NULL,
    -- An IANA zone name, so every host computes the same fire times.
    tz           text    NOT NULL,
    overlap      text    NOT NULL CHECK (overlap IN ('skip', 'allow')),
    paused       boolean NOT NULL DEFAULT false,
    -- The job template: an enqueue object (JSON text) with only the fields given.
    job          text    NOT NULL,
    -- The next fire time not yet handled; NULL when the expression never fires again.
    next_fire_at bigint,
    last_fire_at bigint,
    last_job_id  text,
    skipped      bigint  NOT NULL DEFAULT 0,
    created_at   bigint  NOT NULL,
    updated_at   bigint  NOT NULL
);

-- What the workers' scheduler reads: the due schedules and the next fire time.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;

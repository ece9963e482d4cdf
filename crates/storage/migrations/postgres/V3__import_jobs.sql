-- Import jobs, so that any node answers for them. `status` is the
-- importer's JSON document; `heartbeat` (unix nanos) the running node's
-- last write: a job not finished whose heartbeat is old lost its node.
CREATE TABLE import_jobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    finished BOOLEAN NOT NULL,
    heartbeat BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX import_jobs_created ON import_jobs(created_at);

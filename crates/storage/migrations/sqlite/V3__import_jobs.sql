-- Import jobs, so that any process reading this store answers for them.
-- `status` is the importer's JSON document; `heartbeat` (unix nanos) the
-- running node's last write.
CREATE TABLE import_jobs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    finished INTEGER NOT NULL,
    heartbeat INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX import_jobs_created ON import_jobs(created_at);

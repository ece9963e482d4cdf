-- Upload sessions whose bytes live in an object store (the S3 driver):
-- who owns each, how far it got, and the driver's opaque state (hash
-- state, multipart upload and part list). `revision` moves with every
-- save, which is a compare-and-swap on it. Times are unix milliseconds.
CREATE TABLE upload_sessions (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    upload_offset INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    state BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX upload_sessions_updated ON upload_sessions(updated_at);

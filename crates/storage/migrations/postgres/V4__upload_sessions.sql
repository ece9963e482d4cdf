-- Upload sessions whose bytes live in an object store (the S3 driver),
-- so that any node resumes them: who owns each, how far it got, and the
-- driver's opaque state (hash state, multipart upload and part list).
-- `revision` moves with every save, which is a compare-and-swap on it.
-- Times are unix milliseconds.
CREATE TABLE upload_sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    repo TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    upload_offset BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    state BYTEA NOT NULL
);
CREATE INDEX upload_sessions_updated ON upload_sessions(updated_at);

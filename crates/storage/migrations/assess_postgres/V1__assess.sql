-- The assessor's state on PostgreSQL, shared by every node: the same
-- tables as `assess.db`, prefixed `assess_` (they live beside the
-- registry's). Times are BIGINT milliseconds of the assessor's clock,
-- except leases, which are the server's (one clock for all nodes).
-- Text keys sort bytewise (COLLATE "C"), as SQLite's do.

CREATE TABLE assess_images (
    digest TEXT COLLATE "C" PRIMARY KEY,
    -- Insertion order (SQLite's rowid): ties of queued_at claim in it.
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    repo TEXT COLLATE "C" NOT NULL,
    media_type TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'unknown',
    parent TEXT COLLATE "C",
    platform TEXT COLLATE "C",
    status TEXT NOT NULL,
    error TEXT,
    -- Claims so far: counted when a job is claimed, so a job whose node
    -- died mid-way has used one.
    attempts BIGINT NOT NULL DEFAULT 0,
    queued_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    last_pushed_at BIGINT,
    last_pulled_at BIGINT,
    layers TEXT,
    children TEXT,
    pusher TEXT,
    -- The node holding a claimed job, and until when (server time,
    -- milliseconds): a job in progress whose lease has passed lost its
    -- node and may be claimed again.
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX assess_images_status ON assess_images(status, queued_at, seq);
-- Claims walk the jobs not finished, oldest first: a few among many.
CREATE INDEX assess_images_pending ON assess_images(queued_at, seq)
    WHERE status IN ('queued', 'cataloging', 'matching');
CREATE INDEX assess_images_parent ON assess_images(parent);
CREATE INDEX assess_images_lease ON assess_images(lease_until) WHERE lease_owner IS NOT NULL;

CREATE TABLE assess_image_repos (
    repo TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX assess_image_repos_digest ON assess_image_repos(digest);

CREATE TABLE assess_tag_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo TEXT COLLATE "C" NOT NULL,
    tag TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX assess_tag_history_digest ON assess_tag_history(digest);
CREATE INDEX assess_tag_history_tag ON assess_tag_history(repo, tag, id);

CREATE TABLE assess_inventories (
    digest TEXT COLLATE "C" PRIMARY KEY,
    catalog_version BIGINT NOT NULL,
    data BYTEA NOT NULL,
    -- JSON array of reasons; NULL when the image was read whole.
    incomplete TEXT
);

CREATE TABLE assess_layer_cache (
    layer TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    data BYTEA NOT NULL,
    at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (layer, version)
);

CREATE TABLE assess_results (
    digest TEXT COLLATE "C" PRIMARY KEY,
    db_version TEXT,
    assessed_at BIGINT NOT NULL,
    findings BYTEA NOT NULL,
    findings_hash TEXT NOT NULL,
    keys TEXT NOT NULL DEFAULT '[]',
    prev_db_version TEXT,
    prev_assessed_at BIGINT,
    prev_keys TEXT
);

CREATE TABLE assess_exemptions (
    id TEXT COLLATE "C" PRIMARY KEY,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE assess_webhooks (
    id TEXT COLLATE "C" PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    repository TEXT,
    min_severity TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE assess_deliveries (
    id TEXT COLLATE "C" PRIMARY KEY,
    webhook_id TEXT COLLATE "C" NOT NULL,
    event TEXT NOT NULL,
    digest TEXT,
    repo TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX assess_deliveries_due ON assess_deliveries(state, next_attempt_at);
CREATE INDEX assess_deliveries_created ON assess_deliveries(created_at);
CREATE INDEX assess_deliveries_webhook ON assess_deliveries(webhook_id, created_at);

CREATE TABLE assess_notified (
    digest TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (digest, key)
);
CREATE INDEX assess_notified_at ON assess_notified(at);

CREATE TABLE assess_usage (
    digest TEXT COLLATE "C" PRIMARY KEY,
    repo TEXT COLLATE "C" NOT NULL,
    month TEXT COLLATE "C" NOT NULL,
    first_assessed_at BIGINT NOT NULL
);
CREATE INDEX assess_usage_month ON assess_usage(month);

CREATE TABLE assess_meta (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE assess_vex (
    key TEXT COLLATE "C" PRIMARY KEY,
    doc_id TEXT NOT NULL,
    subject TEXT,
    source TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    recorded_by TEXT,
    not_applied TEXT
);

CREATE TABLE assess_sboms (
    subject TEXT COLLATE "C" PRIMARY KEY,
    repo TEXT NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    catalog_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE assess_patch_jobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    repo TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX assess_patch_jobs_state ON assess_patch_jobs(state, updated_at);

-- Moved after every committed write (nextval, outside the writing
-- transaction, so no write waits on a shared row): equal values mean
-- nothing changed, on any node. `assess_verdicts` moves only after
-- writes that may change a verdict.
CREATE SEQUENCE assess_generation;
CREATE SEQUENCE assess_verdicts;

-- Registry metadata on PostgreSQL. Text keys sort bytewise (COLLATE "C"),
-- as SQLite's do: tag and repository listings page lexically.
CREATE TABLE repos (
    name TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE blob_links (
    repo TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX blob_links_digest ON blob_links(digest);
CREATE TABLE manifests (
    repo TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    body BYTEA NOT NULL,
    subject TEXT COLLATE "C",
    artifact_type TEXT,
    annotations TEXT,
    origin TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;
CREATE INDEX manifests_pushed ON manifests(pushed_at);
CREATE TABLE manifest_refs (
    repo TEXT COLLATE "C" NOT NULL,
    manifest TEXT COLLATE "C" NOT NULL,
    target TEXT COLLATE "C" NOT NULL,
    kind BIGINT NOT NULL, -- 0 blob, 1 manifest
    PRIMARY KEY (repo, manifest, kind, target)
);
CREATE INDEX manifest_refs_target ON manifest_refs(target);
CREATE TABLE tags (
    repo TEXT COLLATE "C" NOT NULL,
    tag TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE INDEX tags_digest ON tags(repo, digest);
CREATE TABLE pulls (
    repo TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    last_pulled_at BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX pulls_time ON pulls(last_pulled_at);
-- Manifests removed by GC, so every node can tell its event sinks;
-- pruned by GC after a week.
CREATE TABLE manifests_removed (
    seq BIGSERIAL PRIMARY KEY,
    repo TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL
);
-- Bumped in the same transaction as every change to manifests or tags,
-- so each node's manifest cache sees other nodes' changes.
CREATE TABLE meta_version (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    value BIGINT NOT NULL
);
INSERT INTO meta_version(id, value) VALUES (0, 0);

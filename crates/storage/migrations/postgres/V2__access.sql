-- Access control: users, groups, robots, API tokens, bindings, audit log.
CREATE TABLE auth_users (
    name TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE auth_user_groups (
    "user" TEXT COLLATE "C" NOT NULL,
    grp TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY ("user", grp)
);
CREATE TABLE auth_robots (
    name TEXT COLLATE "C" PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE auth_api_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE auth_bindings (
    id TEXT COLLATE "C" PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    pattern TEXT NOT NULL,
    actions TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE auth_audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    identity TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    count BIGINT NOT NULL DEFAULT 1,
    bucket TEXT UNIQUE
);
CREATE INDEX auth_audit_at ON auth_audit(at);
CREATE TABLE auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    value BIGINT NOT NULL
);
INSERT INTO auth_generation(id, value) VALUES (0, 0);

-- The assessor's schema as drydock created it before versioning, with
-- every column its in-place upgrades added since. `IF NOT EXISTS`: an
-- assess.db from before versioning adopts this unchanged (its missing
-- columns are added before, see `adopt_legacy`).
CREATE TABLE IF NOT EXISTS images(
  digest TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  media_type TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'unknown',
  parent TEXT,
  platform TEXT,
  status TEXT NOT NULL,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  last_pushed_at INTEGER,
  last_pulled_at INTEGER,
  layers TEXT,
  children TEXT,
  pusher TEXT
);
CREATE INDEX IF NOT EXISTS images_status ON images(status, queued_at);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
CREATE TABLE IF NOT EXISTS image_repos(repo TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(repo, digest));
CREATE INDEX IF NOT EXISTS image_repos_digest ON image_repos(digest);
CREATE TABLE IF NOT EXISTS tag_history(id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tag_history_digest ON tag_history(digest);
CREATE INDEX IF NOT EXISTS tag_history_tag ON tag_history(repo, tag, id);
CREATE TABLE IF NOT EXISTS inventories(digest TEXT PRIMARY KEY, catalog_version INTEGER NOT NULL, data BLOB NOT NULL, incomplete TEXT);
CREATE TABLE IF NOT EXISTS layer_cache(layer TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL, at INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(layer, version));
CREATE TABLE IF NOT EXISTS results(
  digest TEXT PRIMARY KEY,
  db_version TEXT,
  assessed_at INTEGER NOT NULL,
  findings BLOB NOT NULL,
  findings_hash TEXT NOT NULL,
  keys TEXT NOT NULL DEFAULT '[]',
  prev_db_version TEXT,
  prev_assessed_at INTEGER,
  prev_keys TEXT
);
CREATE TABLE IF NOT EXISTS exemptions(id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks(id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, repository TEXT, min_severity TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries(
  id TEXT PRIMARY KEY,
  webhook_id TEXT NOT NULL,
  event TEXT NOT NULL,
  digest TEXT,
  repo TEXT,
  payload TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS notified(digest TEXT NOT NULL, key TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(digest, key));
CREATE INDEX IF NOT EXISTS notified_at ON notified(at);
CREATE TABLE IF NOT EXISTS usage(digest TEXT PRIMARY KEY, repo TEXT NOT NULL, month TEXT NOT NULL, first_assessed_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS usage_month ON usage(month);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vex(key TEXT PRIMARY KEY, doc_id TEXT NOT NULL, subject TEXT, source TEXT NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL, recorded_by TEXT, not_applied TEXT);
CREATE TABLE IF NOT EXISTS sboms(subject TEXT PRIMARY KEY, repo TEXT NOT NULL, digest TEXT NOT NULL, catalog_version INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS patch_jobs(id TEXT PRIMARY KEY, repo TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS patch_jobs_state ON patch_jobs(state, updated_at);

//! The assessor's state behind one async trait, [`AssessState`]: the
//! queue with per-digest status, stored inventories, the per-layer
//! catalog cache, results with the previous assessment's keys, tag
//! history, exemptions, webhooks and their delivery log, notification
//! dedup, usage, VEX documents, attached SBOMs and patch jobs.
//!
//! Backends: SQLite ([`SqliteAssessState`], `<data>/assess.db`, WAL; the
//! embedded default) and PostgreSQL (shared by several nodes). Rows are
//! plain data ([`model`]): the assessor packs its documents (findings,
//! inventories, layer results) to bytes itself, so no backend knows its
//! models. Errors are typed ([`AssessStateError`]) and never carry a
//! row's values or a secret.
//!
//! Every write moves [`AssessState::generation`] on, and every write
//! that may change an image's verdict also
//! [`AssessState::verdict_generation`]: in-process caches (the pull
//! gate's verdicts, the dashboard's judging) compare them instead of
//! asking again.

pub mod model;
mod pg;
mod sqlite;

pub use model::*;
pub use pg::{PgAssessOptions, PgAssessState};
pub use sqlite::SqliteAssessState;
#[cfg(feature = "testing")]
pub use sqlite::execute_for_tests as sqlite_execute_for_tests;

use crate::{MetaError, MetadataStorage};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// A failure of the assessor's state. Callers branch on the kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AssessStateError {
    /// The database could not write because its disk (or quota) is full.
    #[error("assessment storage is full: {0}")]
    StorageFull(String),
    /// A concurrent change won; retrying may succeed.
    #[error("assessment state conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached.
    #[error("assessment database unavailable: {0}")]
    Unavailable(String),
    /// A stored value cannot be read back (a damaged row).
    #[error("unreadable assessment state: {0}")]
    Corrupt(String),
    /// Anything else the database reported.
    #[error("assessment database: {0}")]
    Backend(String),
}

impl From<MetaError> for AssessStateError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::StorageFull(m) => AssessStateError::StorageFull(m),
            MetaError::Conflict(m) => AssessStateError::Conflict(m),
            MetaError::Unavailable(m) => AssessStateError::Unavailable(m),
            // A missing row is an `Option` in this trait; reaching here is
            // a backend fault.
            MetaError::NotFound(m) | MetaError::Backend(m) => AssessStateError::Backend(m),
        }
    }
}

/// Open the assessor's state where `metadata` says: SQLite at
/// `<data_dir>/assess.db` (created, or upgraded in place), or the
/// PostgreSQL database of `metadata.url`, in whose shared queue this
/// node takes part as `pg` says.
pub fn open_state(
    data_dir: &Path,
    metadata: &MetadataStorage,
    pg: PgAssessOptions,
) -> Result<Arc<dyn AssessState>> {
    Ok(match metadata {
        MetadataStorage::Sqlite => Arc::new(SqliteAssessState::open(&data_dir.join("assess.db"))?),
        MetadataStorage::Postgres(cfg) => Arc::new(PgAssessState::connect(cfg, pg)?),
    })
}

/// Shorthand for this module's results.
pub type Result<T, E = AssessStateError> = std::result::Result<T, E>;

/// The assessor's state. Methods are named as the assessor's store
/// called them before the move; see each for what it guarantees.
#[async_trait::async_trait]
pub trait AssessState: Send + Sync + 'static {
    // ---- change counters ----

    /// Moves on after every write (by any node sharing the state, for a
    /// shared backend): equal values mean nothing changed in between.
    /// Cheap: a backend may answer from a counter it keeps.
    async fn generation(&self) -> Result<u64>;

    /// Moves on after every write that may change what an image is
    /// judged to be (results, statuses, images added or forgotten,
    /// exemptions, VEX, SBOMs, webhooks); not after pulls, tag history,
    /// usage, deliveries, notification dedup, patch jobs, the layer cache
    /// or `meta`.
    async fn verdict_generation(&self) -> Result<u64>;

    // ---- meta (small named values: the dashboard's trend) ----

    async fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Not verdict-relevant.
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    // ---- queue and images ----

    /// Queue a manifest. Deduplicates by digest: one queued or in
    /// progress stays as it is; a failed one is queued again (attempts
    /// and error reset); so is a finished `unsupported` artifact pushed
    /// again with a pusher; a done one is not. Always records the
    /// repository. Returns whether the digest is now queued.
    async fn enqueue(&self, job: Enqueue) -> Result<bool>;

    /// The stored pusher of `digest` (as the assessor encoded it).
    async fn pusher(&self, digest: &str) -> Result<Option<String>>;
    /// Forget the pusher (its job succeeded). Not verdict-relevant.
    async fn forget_pusher(&self, digest: &str) -> Result<()>;

    /// Claim the oldest queued job: status `cataloging`, `started_at`
    /// `now`, attempts + 1.
    async fn claim(&self, now: i64) -> Result<Option<ImageRow>>;

    /// Fail every queued job claimed `max_attempts` (at least 1) times or
    /// more, with error `gave up after N attempts: <last error, or "the
    /// process stopped while assessing">`. Returns (digest, error).
    async fn give_up_exhausted(&self, max_attempts: u32, now: i64)
    -> Result<Vec<(String, String)>>;

    /// Set a status and error; `finished_at` becomes `now` for `done`,
    /// `failed` and `unsupported`.
    async fn set_status(
        &self,
        digest: &str,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()>;

    async fn set_shape(
        &self,
        digest: &str,
        kind: &str,
        layers: &[String],
        children: &[String],
    ) -> Result<()>;

    /// Record a platform unless one is known.
    async fn set_platform_if_unknown(&self, digest: &str, platform: &str) -> Result<()>;

    /// After a crash: jobs in progress (`cataloging`, `matching`) go back
    /// to `queued`. Returns how many.
    async fn requeue_interrupted(&self) -> Result<usize>;

    /// This node is stopping: the jobs it holds go back to the queue at
    /// once (their attempts stay counted) and it stops renewing its
    /// claims, so another node need not wait for them to lapse. Returns
    /// how many. On one node (SQLite) nothing else could take them, and
    /// the next start requeues them ([`AssessState::requeue_interrupted`]).
    async fn release_claims(&self) -> Result<usize> {
        Ok(0)
    }

    async fn known_digests(&self) -> Result<HashSet<String>>;
    async fn image(&self, digest: &str) -> Result<Option<ImageRow>>;
    /// Platform images of an index, by platform.
    async fn children(&self, index: &str) -> Result<Vec<ImageRow>>;
    /// Newest queued first.
    async fn all_images(&self) -> Result<Vec<ImageRow>>;
    /// Newest queued first.
    async fn images_in_repo(&self, repo: &str) -> Result<Vec<ImageRow>>;
    /// Repositories holding `digest`, sorted.
    async fn repos_of(&self, digest: &str) -> Result<Vec<String>>;
    async fn queue(&self) -> Result<QueueSummary>;

    /// `repo` no longer holds `digest`; when no repository does, its
    /// image, result and inventory go (usage is kept).
    async fn forget(&self, repo: &str, digest: &str) -> Result<()>;

    /// Record pulls: `last_pulled_at` becomes the later of it and the
    /// time, for the digest and for images whose parent it is. Not
    /// verdict-relevant.
    async fn record_pulls(&self, pulls: &[(String, i64)]) -> Result<()>;
    /// Every image's last pull time.
    async fn pulled_times(&self) -> Result<HashMap<String, i64>>;

    // ---- tag history (not verdict-relevant) ----

    /// Append unless the tag's newest entry is this digest already.
    async fn record_tag(&self, repo: &str, tag: &str, digest: &str, at: i64) -> Result<()>;
    /// For each (repo, tag) whose newest run of entries for `digest` had
    /// another digest before it: (repo, tag, that digest).
    async fn previous_tag_digests(&self, digest: &str) -> Result<Vec<(String, String, String)>>;

    // ---- inventories ----

    /// Store (replace) an inventory with the reasons it is incomplete
    /// (empty: complete), together.
    async fn put_inventory(
        &self,
        digest: &str,
        catalog_version: u32,
        data: Vec<u8>,
        incomplete: &[String],
    ) -> Result<()>;
    async fn inventory(&self, digest: &str) -> Result<Option<StoredInventory>>;
    /// The stored inventories of `digests` in one read (re-matching reads
    /// thousands; one round trip each dominated on PostgreSQL): in the
    /// order asked, each digest once, those without an inventory left out.
    async fn inventories(&self, digests: &[String]) -> Result<Vec<(String, StoredInventory)>>;
    /// Reasons the stored inventory is incomplete (empty when complete or
    /// absent).
    async fn incomplete(&self, digest: &str) -> Result<Vec<String>>;

    // ---- layer cache (not verdict-relevant) ----

    async fn layer_cache_get(&self, layer: &str, version: u32) -> Result<Option<Vec<u8>>>;
    async fn layer_cache_put(
        &self,
        layer: &str,
        version: u32,
        data: Vec<u8>,
        at: i64,
    ) -> Result<()>;
    async fn clear_layer_cache(&self) -> Result<()>;

    // ---- results ----

    /// Store assessments, in one transaction. Per digest: unchanged
    /// findings (same hash) move only the version and time, the previous
    /// ones become `prev_*` with `prev_keys` `None`; changed ones replace
    /// the document and keep the old keys as `prev_keys`.
    async fn save_results(&self, batch: Vec<NewResult>) -> Result<()>;
    async fn result(&self, digest: &str) -> Result<Option<StoredResult>>;
    /// Finished images (`done`, kind `image`) with a result that was
    /// never matched against a database, or that were pushed or pulled
    /// since `window_start` and whose result is from another database
    /// version or older than `older_than`.
    async fn rematch_candidates(
        &self,
        window_start: i64,
        db_version: &str,
        older_than: i64,
    ) -> Result<Vec<String>>;
    async fn result_stamps(&self) -> Result<ResultStamps>;
    async fn findings_hash(&self, digest: &str) -> Result<Option<String>>;

    // ---- exemptions ----

    async fn add_exemption(&self, e: &ExemptionRow) -> Result<()>;
    /// Oldest first (then by id).
    async fn exemptions(&self) -> Result<Vec<ExemptionRow>>;
    async fn delete_exemption(&self, id: &str) -> Result<bool>;

    // ---- webhooks, deliveries, notification dedup ----

    async fn add_webhook(&self, w: &Webhook) -> Result<()>;
    /// Oldest first (then by id).
    async fn webhooks(&self) -> Result<Vec<Webhook>>;
    /// Delete a webhook; its pending deliveries fail (`webhook deleted`).
    async fn delete_webhook(&self, id: &str) -> Result<bool>;
    /// A new pending delivery (state and attempts of `d` are ignored).
    /// Not verdict-relevant, nor are the delivery calls below.
    async fn add_delivery(&self, d: &Delivery) -> Result<()>;
    async fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>>;
    async fn next_delivery_at(&self) -> Result<Option<i64>>;
    /// State becomes `delivered`, `pending` (with `next`) or `failed`;
    /// attempts + 1.
    async fn delivery_attempted(&self, a: &DeliveryAttempt) -> Result<()>;
    /// Newest first.
    async fn deliveries(&self, webhook_id: Option<&str>, limit: usize) -> Result<Vec<Delivery>>;
    async fn notified_keys(&self, digest: &str) -> Result<HashSet<String>>;
    async fn mark_notified(&self, digest: &str, keys: &[String], at: i64) -> Result<()>;

    // ---- usage (not verdict-relevant) ----

    /// Count `digest` in `month` (`YYYY-MM`) unless counted before (in
    /// any month). Returns whether it was counted now.
    async fn count_usage(&self, digest: &str, repo: &str, month: &str, at: i64) -> Result<bool>;
    /// Counts per repository and month, months `from..=to`, by month then
    /// repository.
    async fn usage(&self, from: &str, to: &str) -> Result<Vec<UsageRow>>;

    // ---- retention ----

    /// Delete what [`PruneBefore`] lets go, in one transaction.
    async fn prune(&self, before: &PruneBefore) -> Result<Pruned>;

    // ---- VEX and SBOMs ----

    /// Insert or replace; returns the row replaced.
    async fn put_vex(&self, row: &VexRow) -> Result<Option<VexRow>>;
    async fn vex_document(&self, key: &str) -> Result<Option<VexRow>>;
    /// By time, then key.
    async fn vex_documents(&self) -> Result<Vec<VexRow>>;
    async fn delete_vex(&self, key: &str) -> Result<Option<VexRow>>;
    async fn sbom(&self, subject: &str) -> Result<Option<SbomRow>>;
    /// Digests of every SBOM artifact attached.
    async fn attached_sboms(&self) -> Result<HashSet<String>>;
    async fn put_sbom(&self, row: &SbomRow, at: i64) -> Result<()>;

    // ---- patch jobs (not verdict-relevant) ----

    /// Insert or replace; when the job is not `running`, finished jobs
    /// beyond the newest 1,000 go.
    async fn save_patch_job(&self, job: &PatchJobRow) -> Result<()>;
    async fn patch_job(&self, id: &str) -> Result<Option<String>>;
    /// The JSON of every job in `state`, oldest first.
    async fn patch_jobs_in_state(&self, state: &str) -> Result<Vec<String>>;
}

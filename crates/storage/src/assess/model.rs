//! Rows of the assessor's state, as every backend stores and returns them.
//!
//! Plain data: documents the assessor reads whole (inventories, findings,
//! layer results) travel as the bytes it packed (zstd-compressed JSON,
//! or plain JSON in rows from before compression), so no backend needs
//! the assessor's models. Times are milliseconds since the Unix epoch in
//! the assessor's clock.

use serde::Serialize;
use std::collections::HashMap;

/// Per-digest status in the queue.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const CATALOGING: &str = "cataloging";
    pub const MATCHING: &str = "matching";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const UNSUPPORTED: &str = "unsupported";
}

/// One digest the assessor knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    pub digest: String,
    /// Repository the assessment reads from (the first it was pushed to).
    pub repo: String,
    pub media_type: String,
    /// `image`, `index`, `artifact` or `unknown` (not yet looked at).
    pub kind: String,
    /// The index this platform manifest belongs to.
    pub parent: Option<String>,
    pub platform: Option<String>,
    pub status: String,
    pub error: Option<String>,
    /// Claims so far (each claim counts, finished or not).
    pub attempts: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_pushed_at: Option<i64>,
    pub last_pulled_at: Option<i64>,
    pub layers: Vec<String>,
    pub children: Vec<String>,
}

/// A manifest to queue ([`super::AssessState::enqueue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    /// The index this platform manifest was found in.
    pub parent: Option<String>,
    pub platform: Option<String>,
    pub now: i64,
    /// Pushed (not found by a scan of the registry): sets `last_pushed_at`.
    pub pushed: bool,
    /// Who pushed it, as the assessor encodes a pusher (opaque here).
    /// `Some` replaces a stored pusher; `None` keeps it.
    pub pusher: Option<String>,
}

/// Jobs not finished (oldest first, at most 1,000) and the number of
/// images per status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSummary {
    pub pending: Vec<ImageRow>,
    pub counts: Vec<(String, i64)>,
}

/// A stored inventory: the packed document and the catalog version that
/// made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInventory {
    pub catalog_version: u32,
    pub data: Vec<u8>,
}

/// Findings packed for storage, with the hash of their JSON (unchanged
/// findings leave a result's document alone) and their sorted keys (the
/// next assessment's diff reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFindings {
    pub data: Vec<u8>,
    pub hash: String,
    pub keys: Vec<String>,
}

/// One assessment to store ([`super::AssessState::save_results`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewResult {
    pub digest: String,
    pub db_version: Option<String>,
    pub assessed_at: i64,
    pub findings: EncodedFindings,
}

/// A stored assessment result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResult {
    pub db_version: Option<String>,
    pub assessed_at: i64,
    /// The packed findings.
    pub findings: Vec<u8>,
    pub findings_hash: String,
    pub prev_db_version: Option<String>,
    pub prev_assessed_at: Option<i64>,
    /// Keys of the previous assessment; `None` with a `prev_assessed_at`
    /// means "same as now".
    pub prev_keys: Option<Vec<String>>,
}

/// A result's database version, time and findings hash.
pub type ResultStamp = (Option<String>, i64, String);

/// Per digest, its result's stamp.
pub type ResultStamps = HashMap<String, ResultStamp>;

/// A stored exemption: its id, the assessor's JSON of it, its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionRow {
    pub id: String,
    pub data: String,
    pub created_at: i64,
}

/// A registered webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Signs deliveries; never logged (see the `Debug` impl).
    pub secret: String,
    /// Repository glob; absent means the whole registry.
    pub repository: Option<String>,
    /// Only findings at or above this severity are reported.
    pub min_severity: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("repository", &self.repository)
            .field("min_severity", &self.min_severity)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// One entry of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub digest: Option<String>,
    pub repository: Option<String>,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub payload: String,
}

/// The outcome of one delivery attempt
/// ([`super::AssessState::delivery_attempted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: String,
    pub delivered: bool,
    /// The HTTP status the receiver answered, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// When to try again; `None` when delivered or given up.
    pub next: Option<i64>,
    pub now: i64,
}

/// Distinct images first assessed in one month, for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub repository: String,
    /// `YYYY-MM`.
    pub month: String,
    pub images: u64,
}

/// A stored VEX document.
#[derive(Debug, Clone, PartialEq)]
pub struct VexRow {
    /// `api:<document id>` or `referrer:<artifact digest>`.
    pub key: String,
    /// The document's own id.
    pub doc_id: String,
    /// The image a referrer document is attached to.
    pub subject: Option<String>,
    /// Who sent it: the API caller, or `referrer in <repository>`.
    pub source: String,
    /// The identity that pushed the referrer or called the API.
    pub recorded_by: Option<String>,
    /// Why the document is stored but not applied; absent when applied.
    pub not_applied: Option<String>,
    /// The document as received (JSON; `Null` when a stored one no
    /// longer parses).
    pub data: serde_json::Value,
    pub created_at: i64,
}

/// The SBOM artifact attached to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomRow {
    pub subject: String,
    pub repo: String,
    pub digest: String,
    pub catalog_version: u32,
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: usize,
    pub notified: usize,
    pub tag_history: usize,
    pub layer_cache: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.deliveries + self.notified + self.tag_history + self.layer_cache
    }
}

/// Cut-off times for one pruning pass: rows older than these may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBefore {
    /// Finished deliveries (delivered or given up) created before this.
    /// Pending ones stay whatever their age: they are still being tried.
    pub deliveries: i64,
    /// Notification records made before this; the same problem may then
    /// be told again (a reminder). Records of digests the assessor no
    /// longer knows go whatever their age.
    pub notified: i64,
    /// Tag moves recorded before this, except the two newest of each tag
    /// (which tell the current digest's predecessor, for diffs).
    pub tag_history: i64,
    /// Layer results stored before this whose layer no assessed image
    /// names (layers of deleted images, or uploads never referenced), and
    /// results of other catalog versions than `catalog_version`.
    pub layer_cache: i64,
    pub catalog_version: u32,
}

/// A patch job as kept for the patch service (its JSON is opaque here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchJobRow {
    pub id: String,
    pub repo: String,
    /// `running` jobs are kept; finished ones beyond the newest 1,000 go.
    pub state: String,
    pub data: String,
    pub updated_at: i64,
}

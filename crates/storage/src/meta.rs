//! The registry metadata store: which blobs each repository may serve
//! (links), manifests (their bytes included: they are small and must
//! change atomically with their tags), what each manifest references,
//! tags, the pull record, and the journal of manifests removed by GC.
//!
//! [`Meta`] is the contract; [`crate::SqliteMeta`] (the embedded default,
//! `<data>/meta.db`) and [`crate::PgMeta`] (PostgreSQL) implement it, and
//! `tests/contract.rs` runs one suite against both. Every change is one
//! transaction; a manifest push checks its references inside its own
//! write transaction, so a concurrent delete or GC can never leave a
//! manifest pointing at a missing blob, nor a tag at a missing manifest.

use oci::Digest;
use std::collections::{HashMap, HashSet};

/// A metadata failure. Callers branch on the kind; the message never
/// carries credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// The database could not write because its disk (or quota) is full.
    #[error("metadata storage is full: {0}")]
    StorageFull(String),
    /// A concurrent change won (a uniqueness violation, a serialization
    /// failure, a lock not granted in time); retrying may succeed.
    #[error("metadata conflict: {0}")]
    Conflict(String),
    /// A row the operation needs is missing.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database cannot be reached (connection refused, pool closed).
    #[error("metadata database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported.
    #[error("metadata database: {0}")]
    Backend(String),
}

impl MetaError {
    /// Whether the database refused to write because storage is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, MetaError::StorageFull(_))
    }

    /// Whether a concurrent change caused the failure.
    pub fn is_conflict(&self) -> bool {
        matches!(self, MetaError::Conflict(_))
    }
}

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    #[error("blob {digest} is {actual} bytes, the manifest says {expected}")]
    BlobSize {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("manifest {0} is not known in this repository")]
    ChildUnknown(Digest),
    #[error("manifest {digest}: {why}")]
    ChildMismatch { digest: Digest, why: String },
    #[error(transparent)]
    Db(#[from] MetaError),
}

/// A manifest to store, already parsed and validated by the caller.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: String,
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// JSON object of the manifest's annotations, if any.
    pub annotations: Option<String>,
    /// Blobs that must be linked to the repository, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Manifests that must exist in the repository: digest, size, media type.
    pub children: Vec<(Digest, u64, String)>,
    /// Tags to point at this manifest.
    pub tags: Vec<String>,
    /// `push` or `import`.
    pub origin: String,
    /// Unix nanoseconds.
    pub at: i64,
}

/// A stored manifest's bytes and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub subject: Option<String>,
}

/// A manifest's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub pushed_at: i64,
    pub tags: Vec<String>,
}

/// A referrer of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// The outcome of [`Meta::unlink_unreferenced_blob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlinkBlob {
    Unlinked,
    /// The repository did not link the blob.
    NotLinked,
    /// A manifest of the repository references the blob (a tagged one if
    /// any, with one of its tags); nothing changed.
    Referenced {
        manifest: Digest,
        tag: Option<String>,
    },
}

/// What a GC mark-and-sweep of the metadata is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct GcParams {
    /// Content pushed or linked at or after this (unix nanos) is live.
    pub cutoff: i64,
    /// Now (unix nanos): the time journaled for removed manifests.
    pub now: i64,
    /// Journal rows older than this (unix nanos) are pruned.
    pub prune_journal_before: i64,
    /// Count only; change nothing.
    pub dry_run: bool,
}

/// What a GC mark-and-sweep of the metadata found (and removed unless it
/// was a dry run). The caller deletes blob files that are in neither set.
#[derive(Debug, Clone, Default)]
pub struct GcMarked {
    pub manifests_removed: u64,
    pub links_removed: u64,
    /// Digests referenced by a live manifest in any repository.
    pub live_blobs: HashSet<String>,
    /// Digests still linked to some repository after the sweep.
    pub linked: HashSet<String>,
}

/// A lock shared by every node on one metadata store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterLock {
    /// GC's lock, shared side: held while a blob commits and is linked,
    /// or a manifest is stored, so no sweep runs across it.
    GcShared,
    /// GC's lock, exclusive side: held for a whole GC, from the mark to
    /// the last blob deleted.
    GcExclusive,
    /// One upload session: its requests run one at a time, on any node,
    /// so two of them never resume the same saved state.
    Upload(uuid::Uuid),
}

/// A held [`ClusterLock`]; released when dropped (and by the database
/// when the holder's connection dies with its node).
pub struct MetaLock {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl MetaLock {
    pub(crate) fn new(release: impl FnOnce() + Send + 'static) -> MetaLock {
        MetaLock {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for MetaLock {
    fn drop(&mut self) {
        if let Some(r) = self.release.take() {
            r();
        }
    }
}

impl std::fmt::Debug for MetaLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaLock")
    }
}

/// Work that one node of a cluster does at a time. Each duty has its own
/// leader, chosen by [`Meta::lead`]: on PostgreSQL whoever holds the
/// duty's session advisory lock (on a connection of its own, so the lock
/// goes with that connection or the node that holds it); on SQLite the
/// one host is always the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Duty {
    /// Scheduled garbage collection (`drydock serve` with a GC interval).
    Gc,
    /// The assessor's scheduler: daily re-assessment, retention pruning.
    AssessScheduler,
    /// Webhook delivery, so each event is posted once.
    WebhookDelivery,
    /// The vulnerability database update, built once for every node.
    VulndbUpdate,
}

impl Duty {
    /// The duty's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Duty::Gc => "gc",
            Duty::AssessScheduler => "assess_scheduler",
            Duty::WebhookDelivery => "webhook_delivery",
            Duty::VulndbUpdate => "vulndb_update",
        }
    }

    /// The second key of the duty's advisory lock. Fixed numbers: nodes
    /// of different versions must agree on them.
    pub(crate) fn key(self) -> i32 {
        match self {
            Duty::Gc => 1,
            Duty::AssessScheduler => 2,
            Duty::WebhookDelivery => 3,
            Duty::VulndbUpdate => 4,
        }
    }
}

/// Whether this node leads a [`Duty`], kept current in the background:
/// a follower tries for the lead every retry period; a leader checks its
/// connection as often and steps down when it is gone. Dropping it gives
/// the lead up.
pub struct Leadership {
    duty: Duty,
    rx: tokio::sync::watch::Receiver<bool>,
    // Keeps "always leader" alive for SQLite (no task sends).
    _always: Option<tokio::sync::watch::Sender<bool>>,
}

impl Leadership {
    /// A leader for good: one host, nobody to share the duty with.
    pub fn always(duty: Duty) -> Leadership {
        let (tx, rx) = tokio::sync::watch::channel(true);
        Leadership {
            duty,
            rx,
            _always: Some(tx),
        }
    }

    /// Fed by a background task that sends the lead as it changes.
    pub(crate) fn watching(duty: Duty, rx: tokio::sync::watch::Receiver<bool>) -> Leadership {
        Leadership {
            duty,
            rx,
            _always: None,
        }
    }

    pub fn duty(&self) -> Duty {
        self.duty
    }

    /// Whether this node leads now. `false` once the task that keeps it
    /// current is gone (its store closed): a stale lead is no lead.
    pub fn is_leader(&self) -> bool {
        self.rx.has_changed().is_ok() && *self.rx.borrow()
    }

    /// Resolves when the lead changes (or the store closed); then ask
    /// [`Leadership::is_leader`].
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("duty", &self.duty)
            .field("leader", &self.is_leader())
            .finish()
    }
}

/// An import job as stored, so that every node can answer for it. The
/// status is the importer's own document (JSON); the store keeps it
/// opaque and adds what it needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImportJob {
    pub id: uuid::Uuid,
    /// The importer's status document, as last written.
    pub status: String,
    /// Whether the job ended (succeeded, failed, cancelled).
    pub finished: bool,
    /// When its node last wrote it (unix nanos): a job not finished whose
    /// heartbeat is old has lost its node.
    pub heartbeat: i64,
    /// Someone asked, on any node, for the job to stop.
    pub cancel_requested: bool,
}

/// The registry metadata store. Implementations never block the async
/// runtime (SQLite work runs on blocking threads; PostgreSQL on the
/// store's own runtime), so every method may be awaited from any runtime
/// or driven by [`crate::block_on`] from a plain thread.
#[async_trait::async_trait]
pub trait Meta: Send + Sync + 'static {
    /// The backend, for logs (never with a password).
    fn describe(&self) -> String;

    /// A counter that changes when the metadata changed under this
    /// process (another process, or another node, committed). Used to
    /// drop caches.
    async fn change_version(&self) -> Result<i64, MetaError>;

    /// Take a lock that every node sharing this store honours, waiting
    /// for it. `None`: the backend serves one host (SQLite), where the
    /// data directory's `gc.lock` and each process's own locks serve.
    async fn cluster_lock(&self, _lock: ClusterLock) -> Result<Option<MetaLock>, MetaError> {
        Ok(None)
    }

    /// Take a lock that every node honours if it is free now: `Ok(Some)`
    /// when granted, `Err(Conflict)` when another holder has it, and
    /// `Ok(None)` when the backend has no cluster locks (SQLite).
    async fn try_cluster_lock(&self, _lock: ClusterLock) -> Result<Option<MetaLock>, MetaError> {
        Ok(None)
    }

    /// Stand for the lead of `duty`, retrying every `retry` while another
    /// node leads. Call it inside a Tokio runtime.
    fn lead(&self, duty: Duty, _retry: std::time::Duration) -> Leadership {
        Leadership::always(duty)
    }

    /// Write an import job's status (insert or replace; `created_at` is
    /// kept from the first write) with `heartbeat` (unix nanos) as its
    /// node's last sign of life. Returns whether a stop was requested.
    async fn save_import_job(
        &self,
        id: uuid::Uuid,
        created_at: i64,
        status: String,
        finished: bool,
        heartbeat: i64,
    ) -> Result<bool, MetaError>;

    /// One import job.
    async fn import_job(&self, id: uuid::Uuid) -> Result<Option<StoredImportJob>, MetaError>;

    /// The newest `n` import jobs, newest first.
    async fn import_jobs(&self, n: usize) -> Result<Vec<StoredImportJob>, MetaError>;

    /// Ask the node running a job to stop it. `false` when the job is
    /// unknown or finished.
    async fn request_import_cancel(&self, id: uuid::Uuid) -> Result<bool, MetaError>;

    /// Forget finished import jobs beyond the newest `keep`; how many went.
    async fn prune_import_jobs(&self, keep: usize) -> Result<u64, MetaError>;

    /// Import jobs not finished whose heartbeat is older than `before`
    /// (unix nanos): their node went silent.
    async fn silent_import_jobs(&self, before: i64) -> Result<Vec<StoredImportJob>, MetaError>;

    /// Write `status` as the final status of a job whose node went silent:
    /// only while it is still not finished and its heartbeat still
    /// `heartbeat` (its node wrote nothing since). Whether it was written.
    async fn finish_silent_import_job(
        &self,
        id: uuid::Uuid,
        heartbeat: i64,
        status: String,
    ) -> Result<bool, MetaError>;

    /// Link a committed blob to a repository (creating the repository).
    async fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        at: i64,
    ) -> Result<(), MetaError>;

    /// The size of a blob linked to `repo`.
    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError>;

    /// Whether any repository links the blob (its size if so).
    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetaError>;

    /// The repositories a blob is linked to, in lexical order.
    async fn blob_repos(&self, digest: &Digest) -> Result<Vec<String>, MetaError>;

    /// Unlink a blob from a repository. `false` when it was not linked.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError>;

    /// Unlink a blob unless a manifest of the repository references it;
    /// the check and the unlink are atomic against concurrent pushes.
    async fn unlink_unreferenced_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<UnlinkBlob, MetaError>;

    /// Store a manifest and point its tags at it after checking, in the
    /// same transaction, that everything it references is present.
    /// Returns `true` if the manifest is new to the repository.
    async fn put_manifest(&self, m: NewManifest) -> Result<bool, PutManifestError>;

    /// A manifest by digest.
    async fn manifest(&self, repo: &str, digest: &Digest)
    -> Result<Option<ManifestRow>, MetaError>;

    /// A manifest by tag.
    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRow>, MetaError>;

    /// Delete a manifest and every tag pointing at it. Returns the tags
    /// removed, or `None` when the manifest was not there.
    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<String>>, MetaError>;

    /// Delete a tag. `false` when it did not exist.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError>;

    /// Whether the repository exists.
    async fn repo_exists(&self, repo: &str) -> Result<bool, MetaError>;

    /// Tags of a repository in lexical order, after `last`, at most `n`.
    async fn tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>, MetaError>;

    /// Repository names in lexical order, after `last`, at most `n`.
    async fn repositories(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<String>, MetaError>;

    /// Every manifest of a repository with its tags (sorted), newest first.
    async fn manifests(&self, repo: &str) -> Result<Vec<ManifestSummary>, MetaError>;

    /// Manifests in `repo` whose subject is `subject`, oldest first.
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Referrer>, MetaError>;

    /// Record a batch of pulls: (repo, digest, last pull in unix nanos,
    /// number of pulls).
    async fn record_pulls(&self, pulls: Vec<(String, Digest, i64, u64)>) -> Result<(), MetaError>;

    /// Pulls since `since` (unix nanos): repo, digest, last pull time.
    async fn recent_pulls(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError>;

    /// Manifests pushed since `since` (unix nanos).
    async fn recent_pushes(&self, since: i64) -> Result<Vec<(String, Digest, i64)>, MetaError>;

    /// Manifests journaled as removed by GC after `seq` that are still
    /// absent (one pushed again since is left out), and the newest `seq`.
    async fn removed_since(&self, seq: i64) -> Result<(Vec<(String, Digest)>, i64), MetaError>;

    /// GC's metadata half, in one transaction that serialises with
    /// manifest pushes and blob links: mark live manifests (tagged, young,
    /// children of live indexes, referrers of live manifests), delete the
    /// rest and journal them, unlink old blobs no live manifest
    /// references, drop empty old repositories. See [`plan_sweep`].
    async fn gc_mark_and_sweep(&self, params: GcParams) -> Result<GcMarked, MetaError>;
}

/// What a manifest references, as GC reads it.
#[derive(Debug, Clone)]
pub(crate) struct ManifestRefs {
    pub repo: String,
    pub digest: String,
    pub pushed_at: i64,
    pub subject: Option<String>,
    pub blobs: Vec<String>,
    pub children: Vec<String>,
}

/// The decisions of a sweep, computed the same way for every backend.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    pub dead_manifests: Vec<(String, String)>,
    pub dead_links: Vec<(String, String)>,
    pub live_blobs: HashSet<String>,
    pub linked: HashSet<String>,
}

/// Decide what GC removes, from every manifest's references, the tagged
/// (repo, digest) pairs and every blob link (repo, digest, linked_at).
pub(crate) fn plan_sweep(
    all: &[ManifestRefs],
    tagged: &HashSet<(String, String)>,
    links: Vec<(String, String, i64)>,
    cutoff: i64,
) -> Sweep {
    let by_key: HashMap<(&str, &str), usize> = all
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.repo.as_str(), m.digest.as_str()), i))
        .collect();
    let mut referrers: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, m) in all.iter().enumerate() {
        if let Some(s) = &m.subject {
            referrers
                .entry((m.repo.as_str(), s.as_str()))
                .or_default()
                .push(i);
        }
    }
    let mut live = vec![false; all.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, m) in all.iter().enumerate() {
        if m.pushed_at >= cutoff || tagged.contains(&(m.repo.clone(), m.digest.clone())) {
            live[i] = true;
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        let m = &all[i];
        let children = m
            .children
            .iter()
            .filter_map(|c| by_key.get(&(m.repo.as_str(), c.as_str())));
        let refs = referrers
            .get(&(m.repo.as_str(), m.digest.as_str()))
            .into_iter()
            .flatten();
        for &j in children.chain(refs) {
            if !live[j] {
                live[j] = true;
                stack.push(j);
            }
        }
    }
    let mut sweep = Sweep::default();
    for (i, m) in all.iter().enumerate() {
        if live[i] {
            sweep.live_blobs.extend(m.blobs.iter().cloned());
        } else {
            sweep
                .dead_manifests
                .push((m.repo.clone(), m.digest.clone()));
        }
    }
    for (repo, digest, at) in links {
        if sweep.live_blobs.contains(&digest) || at >= cutoff {
            sweep.linked.insert(digest);
        } else {
            sweep.dead_links.push((repo, digest));
        }
    }
    sweep
}

/// Group (repo, manifest, target, kind) reference rows under their
/// manifests (kind 0: blob, 1: manifest).
pub(crate) fn attach_refs(
    mut manifests: Vec<ManifestRefs>,
    refs: impl IntoIterator<Item = (String, String, String, i64)>,
) -> Vec<ManifestRefs> {
    let index: HashMap<(String, String), usize> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.repo.clone(), m.digest.clone()), i))
        .collect();
    for (repo, manifest, target, kind) in refs {
        if let Some(&i) = index.get(&(repo, manifest)) {
            if kind == KIND_BLOB {
                manifests[i].blobs.push(target);
            } else {
                manifests[i].children.push(target);
            }
        }
    }
    manifests
}

pub(crate) const KIND_BLOB: i64 = 0;
pub(crate) const KIND_MANIFEST: i64 = 1;

/// A digest column that must parse.
pub(crate) fn parse_digest(s: &str) -> Result<Digest, MetaError> {
    Digest::parse(s).map_err(|e| MetaError::Backend(format!("stored digest {s:?}: {e}")))
}

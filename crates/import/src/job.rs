//! A job's progress and result, shared between the worker and `GET`, and
//! written to the metadata store so that every node answers for it.

use crate::{ImportRequest, Plan};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Stopped on request before any tag was written.
    Cancelled,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A manifest the job stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportedManifest {
    #[schema(value_type = String, example = "sha256:…")]
    pub digest: oci::Digest,
    pub media_type: String,
    /// The tag written, for the roots; `None` for children stored by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `os/arch[/variant]` for a platform manifest of an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// What `GET /api/v1/imports/{id}` returns.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    #[schema(value_type = String, example = "0789a2a9-f819-4bc0-8942-6902375b6ae2")]
    pub id: uuid::Uuid,
    pub state: JobState,
    /// The source as given (never with credentials).
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    pub all_tags: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// What the job is doing now (`planning`, `copying blobs`, …).
    pub phase: String,
    /// Blobs the import needs, how many are done, and how many of those
    /// were already present (linked or skipped, not transferred).
    pub blobs_total: u64,
    pub blobs_done: u64,
    pub blobs_skipped: u64,
    /// Bytes of the blobs to transfer, and transferred so far.
    pub bytes_total: u64,
    pub bytes_done: u64,
    /// Manifests stored, children first, tagged roots last.
    pub manifests: Vec<ImportedManifest>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(crate) struct Job {
    pub id: uuid::Uuid,
    source: String,
    target: String,
    platforms: Vec<String>,
    all_tags: bool,
    created_at: OffsetDateTime,
    pub blobs_total: AtomicU64,
    pub blobs_done: AtomicU64,
    pub blobs_skipped: AtomicU64,
    pub bytes_total: AtomicU64,
    /// Shared with the blob readers that count into it.
    pub bytes_done: Arc<AtomicU64>,
    state: Mutex<Mutable>,
    cancel: tokio::sync::Notify,
    /// One write to the store at a time, each of the status as it is
    /// when the write starts: the last write is the newest status.
    saving: tokio::sync::Mutex<()>,
}

struct Mutable {
    state: JobState,
    phase: String,
    finished_at: Option<OffsetDateTime>,
    manifests: Vec<ImportedManifest>,
    error: Option<String>,
    cancel_requested: bool,
    tagging: bool,
}

impl Job {
    pub fn new(plan: &Plan, req: &ImportRequest) -> Job {
        Job {
            id: uuid::Uuid::new_v4(),
            source: plan.spec.to_string(),
            target: req.target.trim().to_string(),
            platforms: req.platforms.clone(),
            all_tags: req.all_tags,
            created_at: OffsetDateTime::now_utc(),
            blobs_total: AtomicU64::new(0),
            blobs_done: AtomicU64::new(0),
            blobs_skipped: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: Arc::new(AtomicU64::new(0)),
            state: Mutex::new(Mutable {
                state: JobState::Queued,
                phase: "queued".into(),
                finished_at: None,
                manifests: Vec::new(),
                error: None,
                cancel_requested: false,
                tagging: false,
            }),
            cancel: tokio::sync::Notify::new(),
            saving: tokio::sync::Mutex::new(()),
        }
    }

    /// Write the status as it is now to the store, with this node's
    /// heartbeat. Returns whether a stop was asked for (on any node).
    pub async fn save(&self, meta: &dyn storage::Meta) -> Result<bool, storage::MetaError> {
        let _one = self.saving.lock().await;
        let status = self.status();
        let json = serde_json::to_string(&status)
            .map_err(|e| storage::MetaError::Backend(format!("import job status: {e}")))?;
        meta.save_import_job(
            self.id,
            nanos(self.created_at),
            json,
            status.state.is_finished(),
            nanos(OffsetDateTime::now_utc()),
        )
        .await
    }

    /// Ask the job to stop. Refused (false) once it has finished or has
    /// started writing tags.
    pub fn request_cancel(&self) -> bool {
        let ok = self.with(|m| {
            if m.state.is_finished() || m.tagging {
                false
            } else {
                m.cancel_requested = true;
                true
            }
        });
        if ok {
            self.cancel.notify_one();
        }
        ok
    }

    /// Resolves when cancellation was requested.
    pub async fn cancelled(&self) {
        loop {
            if self.with(|m| m.cancel_requested) {
                return;
            }
            self.cancel.notified().await;
        }
    }

    /// Enter the tagging phase; false if cancellation won the race.
    pub fn begin_tagging(&self) -> bool {
        self.with(|m| {
            if m.cancel_requested {
                false
            } else {
                m.tagging = true;
                m.phase = "tagging".into();
                true
            }
        })
    }

    pub fn mark_cancelled(&self) {
        self.with(|m| {
            m.state = JobState::Cancelled;
            m.phase = "cancelled".into();
            m.error = Some("cancelled on request; no tag was written".into());
            m.finished_at = Some(OffsetDateTime::now_utc());
        });
    }

    fn with<T>(&self, f: impl FnOnce(&mut Mutable) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn start(&self) {
        self.with(|m| {
            m.state = JobState::Running;
            m.phase = "starting".into();
        });
    }

    pub fn phase(&self, p: &str) {
        self.with(|m| m.phase = p.to_string());
    }

    pub fn stored(&self, im: ImportedManifest) {
        self.with(|m| m.manifests.push(im));
    }

    pub fn succeed(&self) {
        self.with(|m| {
            m.state = JobState::Succeeded;
            m.phase = "done".into();
            m.finished_at = Some(OffsetDateTime::now_utc());
        });
    }

    pub fn fail(&self, why: String) {
        self.with(|m| {
            m.state = JobState::Failed;
            m.phase = "failed".into();
            m.error = Some(why);
            m.finished_at = Some(OffsetDateTime::now_utc());
        });
    }

    pub fn finished(&self) -> bool {
        self.with(|m| m.state.is_finished())
    }

    pub fn status(&self) -> JobStatus {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.with(|m| JobStatus {
            id: self.id,
            state: m.state,
            source: self.source.clone(),
            target: self.target.clone(),
            platforms: self.platforms.clone(),
            all_tags: self.all_tags,
            created_at: self.created_at,
            finished_at: m.finished_at,
            phase: m.phase.clone(),
            blobs_total: l(&self.blobs_total),
            blobs_done: l(&self.blobs_done),
            blobs_skipped: l(&self.blobs_skipped),
            bytes_total: l(&self.bytes_total),
            bytes_done: l(&self.bytes_done),
            manifests: m.manifests.clone(),
            error: m.error.clone(),
        })
    }
}

/// Unix nanoseconds.
pub(crate) fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl JobStatus {
    /// A stored job read back: as its node last wrote it, except that a
    /// job not finished whose node has not written for `stale_after` is
    /// reported failed (interrupted), not running for ever.
    pub(crate) fn from_stored(
        job: &storage::StoredImportJob,
        stale_after: std::time::Duration,
    ) -> Option<JobStatus> {
        let mut s: JobStatus = match serde_json::from_str(&job.status) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(id = %job.id, "unreadable stored import job: {e}");
                return None;
            }
        };
        let last = OffsetDateTime::from_unix_timestamp_nanos(job.heartbeat.into()).ok()?;
        let silent = OffsetDateTime::now_utc() - last;
        if !s.state.is_finished() && silent > stale_after {
            s.state = JobState::Failed;
            s.phase = "interrupted".into();
            s.finished_at = Some(last);
            s.error = Some(format!(
                "interrupted: the node running this job stopped (no word from it for {}s); \
                 start the import again",
                silent.whole_seconds()
            ));
        }
        Some(s)
    }
}

//! The service's ports, adapted in the binary (images, findings, jobs,
//! events), and the results and jobs they carry.

use crate::plan::{Fixable, Plan};
use anyhow::Result;
use bytes::Bytes;
use futures::future::BoxFuture;
use oci::{Digest, Name, Reference, Tag};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

/// Where the fixable findings of an image come from.
pub trait FindingsSource: Send + Sync {
    /// `None` while the image has no assessment yet.
    fn fixable(&self, digest: &str) -> Result<Option<Vec<Fixable>>>;
    /// The database version the image's findings were made with.
    fn assessed_with(&self, digest: &str) -> Option<String>;
}

/// The registry operations a patch needs (the in-process registry API,
/// adapted in the binary, so this crate stays beside the registry rather
/// than on top of its internals).
pub trait ImageStore: Send + Sync {
    /// A manifest's bytes, media type and digest.
    fn manifest<'a>(
        &'a self,
        repo: &'a Name,
        reference: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<(Bytes, String, Digest)>>>;
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>>;
    /// Stream a file in as a blob of `repo` (verified against `digest`).
    fn put_blob<'a>(
        &'a self,
        repo: &'a Name,
        digest: &'a Digest,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<()>>;
    fn put_manifest<'a>(
        &'a self,
        repo: &'a Name,
        reference: &'a Reference,
        body: Bytes,
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<Digest>>;
    fn tags(&self, repo: &Name) -> Result<Vec<(Tag, Digest)>>;
    fn repositories(&self) -> Result<Vec<Name>>;
}

/// The result for one image manifest (one platform).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformOutcome {
    pub platform: Option<String>,
    pub digest: String,
    pub plan: Plan,
    /// The patched manifest, when one was pushed.
    pub patched_digest: Option<String>,
}

/// The result of a patch (or a dry run).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub repository: String,
    pub tag: String,
    pub original_digest: String,
    pub dry_run: bool,
    pub platforms: Vec<PlatformOutcome>,
    pub patched_digest: Option<String>,
    pub patched_tag: Option<String>,
    /// Why nothing was pushed, when nothing was.
    pub note: Option<String>,
}

/// A job of `/api/v1/patches`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub repository: String,
    pub tag: String,
    pub dry_run: bool,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub result: Option<Outcome>,
    /// When the job was started and when it ended (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// The error a job left running by an earlier process ends with.
pub const INTERRUPTED: &str = "interrupted by restart";

/// Where jobs are kept so that they outlive the process (the assessor's
/// database, adapted in the binary). The service keeps running jobs in
/// memory as well and writes each one when it starts and when it ends.
pub trait JobStore: Send + Sync {
    fn save(&self, job: &JobView) -> Result<()>;
    fn load(&self, id: &str) -> Result<Option<JobView>>;
    /// Fail every job still `running` (left by an earlier process) with
    /// `error`; how many there were.
    fn fail_running(&self, error: &str, at: &str) -> Result<usize>;
}

/// Told of every patched image pushed (webhooks, in the binary).
pub trait PatchEvents: Send + Sync {
    fn patched(&self, outcome: &Outcome);
}

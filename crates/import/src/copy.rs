//! The import itself: plan, copy blobs, store children, then tags.
//!
//! The same steps write either into this registry in-process (a server's
//! import job) or into a registry over HTTP (`drydock import` of a local
//! source, which pushes from the client): a [`Sink`] is the difference.

use crate::job::{ImportedManifest, Job};
use crate::{Plan, PlatformFilter};
use backon::Retryable;
use futures::{StreamExt, TryStreamExt};
use oci::{Digest, Manifest, Reference, Tag};
use registry::{ErrorCode, Origin, Registry};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use transport::{BlobStream, FetchedManifest, ImageSource, SourceSpec};

/// Why a job failed, with enough context to act on.
#[derive(Debug)]
pub(crate) struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure(msg.into())
}

/// A blob transfer that failed; `verification` failures (the bytes are
/// wrong) are not retried.
pub(crate) struct BlobFailure {
    pub message: String,
    pub verification: bool,
}

/// Counted blob bytes on their way to a sink.
pub(crate) type Body = Counting<BlobStream>;

/// Where an import writes.
pub(crate) trait Sink: Sync {
    /// What the job's messages call the target.
    fn describe(&self) -> String;

    /// Make `digest` available in the target repository without a
    /// transfer when possible (present already, or linked from another
    /// repository); `true` when it is.
    fn reuse_blob(&self, digest: &Digest) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// Store a blob from `body`, verified; returns the bytes stored.
    fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> impl Future<Output = Result<u64, BlobFailure>> + Send;

    /// Store a manifest under `reference`; returns the digest stored.
    fn put_manifest(
        &self,
        reference: &Reference,
        m: &FetchedManifest,
    ) -> impl Future<Output = Result<Digest, Failure>> + Send;
}

/// This registry, in-process (the server's import jobs).
pub(crate) struct RegistrySink<'a> {
    pub reg: &'a Registry,
    pub repo: &'a oci::Name,
}

impl Sink for RegistrySink<'_> {
    fn describe(&self) -> String {
        self.repo.to_string()
    }

    async fn reuse_blob(&self, digest: &Digest) -> Result<bool, Failure> {
        if self.reg.has_blob(Some(self.repo), digest) {
            return Ok(true);
        }
        if self.reg.has_blob(None, digest) {
            self.reg
                .link_blob(self.repo, digest)
                .map_err(|e| fail(format!("linking blob {digest}: {e}")))?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn put_blob(&self, digest: &Digest, _size: u64, body: Body) -> Result<u64, BlobFailure> {
        self.reg
            .put_blob(self.repo, digest, body)
            .await
            .map_err(|e| BlobFailure {
                verification: matches!(e.code, ErrorCode::DigestInvalid | ErrorCode::SizeInvalid)
                    || e.message.contains("digest mismatch")
                    || e.message.contains("ended after")
                    || e.message.contains("is longer than"),
                message: e.to_string(),
            })
    }

    async fn put_manifest(
        &self,
        reference: &Reference,
        m: &FetchedManifest,
    ) -> Result<Digest, Failure> {
        self.reg
            .put_manifest(
                self.repo,
                reference,
                m.bytes.clone(),
                Some(&m.media_type),
                Origin::Import,
            )
            .await
            .map_err(|e| {
                fail(format!(
                    "storing manifest {} as {}:{reference}: {e}",
                    m.digest, self.repo
                ))
            })
    }
}

/// A registry over HTTP (`drydock import` of a local source).
pub(crate) struct PushSink {
    pub pusher: transport::push::Pusher,
}

impl Sink for PushSink {
    fn describe(&self) -> String {
        self.pusher.describe()
    }

    async fn reuse_blob(&self, digest: &Digest) -> Result<bool, Failure> {
        self.pusher
            .has_blob(digest)
            .await
            .map_err(|e| fail(format!("{}: {e}", self.pusher.describe())))
    }

    async fn put_blob(&self, digest: &Digest, size: u64, body: Body) -> Result<u64, BlobFailure> {
        self.pusher
            .push_blob(digest, size, body)
            .await
            .map(|()| size)
            .map_err(|e| BlobFailure {
                message: e.to_string(),
                verification: e.verification,
            })
    }

    async fn put_manifest(
        &self,
        reference: &Reference,
        m: &FetchedManifest,
    ) -> Result<Digest, Failure> {
        self.pusher
            .put_manifest(reference, m)
            .await
            .map_err(|e| fail(format!("{}: {e}", self.pusher.describe())))
    }
}

/// One tag (or digest) to write, and what it needs.
struct Unit {
    tag: Option<Tag>,
    /// What the tag will point at.
    root: FetchedManifest,
    /// Child manifests to store first, with their platforms.
    children: Vec<(FetchedManifest, Option<String>)>,
}

/// Outcome of a job that did not succeed.
pub(crate) enum Stopped {
    Failed(Failure),
    Cancelled,
}

impl From<Failure> for Stopped {
    fn from(f: Failure) -> Stopped {
        Stopped::Failed(f)
    }
}

pub(crate) async fn run(
    sink: &impl Sink,
    blob_concurrency: usize,
    plan: &Plan,
    job: &Job,
) -> Result<(), Stopped> {
    // Everything up to the tags can be cancelled; dropping the work drops
    // in-flight transfers.
    let units = tokio::select! {
        r = prepare(sink, blob_concurrency, plan, job) => r?,
        _ = job.cancelled() => return Err(Stopped::Cancelled),
    };
    store(sink, job, &units).await?;
    Ok(())
}

/// Read manifests, copy blobs; returns what to store.
async fn prepare(
    sink: &impl Sink,
    blob_concurrency: usize,
    plan: &Plan,
    job: &Job,
) -> Result<Vec<Unit>, Failure> {
    job.phase("opening source");
    let opened = plan.open_source().await;
    let src: Arc<dyn ImageSource> =
        Arc::from(opened.map_err(|e| fail(format!("cannot open {}: {e}", plan.spec)))?);
    let what = src.describe();
    let ctx = |e: transport::Error| fail(format!("{what}: {e}"));

    job.phase("reading manifests");
    let mut roots: Vec<(Option<Tag>, FetchedManifest)> = Vec::new();
    if plan.all_tags {
        let tags = src.tags().await.map_err(ctx)?;
        if tags.is_empty() {
            return Err(fail(format!("{what} has no tags")));
        }
        for t in tags {
            let tag = Tag::parse(&t).map_err(|e| fail(format!("{what}: {e}")))?;
            roots.push((Some(tag), src.tagged(&t).await.map_err(ctx)?));
        }
    } else {
        let root = src.root().await.map_err(ctx)?;
        let tag = match &plan.tag {
            Some(t) => Some(t.clone()),
            None => source_tag(&plan.spec, src.as_ref()).await,
        };
        roots.push((tag, root));
    }

    let mut units = Vec::new();
    for (tag, root) in roots {
        units.push(expand(src.as_ref(), &plan.platforms, tag, root).await?);
    }

    // Every blob the units need, once.
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    for u in &units {
        let images: Vec<&FetchedManifest> = if u.children.is_empty() {
            vec![&u.root]
        } else {
            u.children.iter().map(|(m, _)| m).collect()
        };
        for m in images {
            let parsed = m
                .parse()
                .map_err(|e| fail(format!("manifest {}: {e}", m.digest)))?;
            for d in parsed.blobs() {
                if d.urls.as_ref().is_none_or(|u| u.is_empty()) {
                    blobs.insert(d.digest.clone(), d.size);
                }
            }
        }
    }

    job.phase("copying blobs");
    job.blobs_total.store(blobs.len() as u64, Ordering::Relaxed);
    let mut to_copy = Vec::new();
    for (digest, size) in blobs {
        if sink.reuse_blob(&digest).await? {
            job.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            job.blobs_done.fetch_add(1, Ordering::Relaxed);
        } else {
            job.bytes_total.fetch_add(size, Ordering::Relaxed);
            to_copy.push((digest, size));
        }
    }
    futures::stream::iter(to_copy)
        .map(|(digest, size)| {
            let src = src.clone();
            async move { copy_blob(sink, src.as_ref(), &digest, size, job).await }
        })
        .buffer_unordered(blob_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(units)
}

/// Store child manifests, then the tags.
async fn store(sink: &impl Sink, job: &Job, units: &[Unit]) -> Result<(), Stopped> {
    if !job.begin_tagging() {
        return Err(Stopped::Cancelled);
    }
    job.phase("storing manifests");
    let mut stored: HashSet<Digest> = HashSet::new();
    for u in units {
        for (child, platform) in &u.children {
            if !stored.insert(child.digest.clone()) {
                continue;
            }
            put(sink, &Reference::Digest(child.digest.clone()), child).await?;
            job.stored(ImportedManifest {
                digest: child.digest.clone(),
                media_type: child.media_type.clone(),
                tag: None,
                platform: platform.clone(),
            });
        }
    }

    job.phase("tagging");
    for u in units {
        let reference = match &u.tag {
            Some(t) => Reference::Tag(t.clone()),
            None => Reference::Digest(u.root.digest.clone()),
        };
        put(sink, &reference, &u.root).await?;
        job.stored(ImportedManifest {
            digest: u.root.digest.clone(),
            media_type: u.root.media_type.clone(),
            tag: u.tag.as_ref().map(|t| t.to_string()),
            platform: None,
        });
    }
    Ok(())
}

async fn put(sink: &impl Sink, reference: &Reference, m: &FetchedManifest) -> Result<(), Failure> {
    let digest = sink.put_manifest(reference, m).await?;
    if digest != m.digest {
        return Err(fail(format!(
            "registry stored manifest as {digest}, expected {}",
            m.digest
        )));
    }
    Ok(())
}

/// The tag the source names, when TARGET gives none.
async fn source_tag(spec: &SourceSpec, src: &dyn ImageSource) -> Option<Tag> {
    let t = match spec {
        SourceSpec::OciLayout { tag, .. } => tag.clone(),
        SourceSpec::Registry { image, .. } => image.tag.as_ref().map(|t| t.to_string()),
        SourceSpec::DockerArchive { image, .. } => match image.as_deref() {
            Some(sel) if !sel.starts_with('@') => sel
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map(|(_, t)| t.to_string())
                .or(Some("latest".to_string())),
            _ => match src.tags().await.ok()?.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
        },
    };
    t.and_then(|t| Tag::parse(&t).ok())
}

/// Resolve a root into what to store, applying the platform filter.
async fn expand(
    src: &dyn ImageSource,
    platforms: &PlatformFilter,
    tag: Option<Tag>,
    root: FetchedManifest,
) -> Result<Unit, Failure> {
    let what = src.describe();
    let parsed = root
        .parse()
        .map_err(|e| fail(format!("{what}: manifest {}: {e}", root.digest)))?;
    let Manifest::Index { index, .. } = &parsed else {
        if !platforms.is_empty() {
            tracing::info!(source = %what, "--platform ignored: the source is a single image");
        }
        return Ok(Unit {
            tag,
            root,
            children: Vec::new(),
        });
    };
    // The entries to copy: all of them, or the platforms asked for and
    // the attestations attached to those.
    let (selected, images): (Vec<&oci::Descriptor>, usize) = if platforms.is_empty() {
        (index.manifests.iter().collect(), 0)
    } else {
        let mut walk = oci::IndexWalk::new(index, platforms);
        // Import copies one level: a nested index is left out.
        let nested = std::iter::from_fn(|| walk.next_index()).count();
        let found = walk.finish().map_err(|e| {
            let note = if nested > 0 {
                "; images inside nested indexes are not imported"
            } else {
                ""
            };
            fail(format!("{what}: {e}{note}"))
        })?;
        let keep: HashSet<&Digest> = found
            .iter()
            .flat_map(|i| std::iter::once(&i.descriptor).chain(&i.attestations))
            .map(|d| &d.digest)
            .collect();
        let selected = index
            .manifests
            .iter()
            .filter(|d| keep.contains(&d.digest))
            .collect();
        (selected, found.len())
    };
    let mut children = Vec::new();
    for d in &selected {
        let child = src
            .manifest(&d.digest)
            .await
            .map_err(|e| fail(format!("{what}: manifest {}: {e}", d.digest)))?;
        let parsed = child
            .parse()
            .map_err(|e| fail(format!("{what}: manifest {}: {e}", d.digest)))?;
        if parsed.is_index() {
            return Err(fail(format!(
                "{what}: {} is an index inside an index; nested indexes are not supported",
                d.digest
            )));
        }
        children.push((child, d.platform.as_ref().map(|p| p.display())));
    }
    if platforms.is_empty() {
        return Ok(Unit {
            tag,
            root,
            children,
        });
    }
    if images == 1 {
        // One platform: the image manifest itself, as the source has it.
        let keep = children
            .into_iter()
            .zip(&selected)
            .find(|(_, d)| oci::EntryKind::of(d) == oci::EntryKind::Image)
            .map(|((m, _), _)| m)
            .expect("one image selected");
        return Ok(Unit {
            tag,
            root: keep,
            children: Vec::new(),
        });
    }
    // Several: a new index listing just those, other fields untouched.
    let mut value: serde_json::Value = serde_json::from_slice(&root.bytes)
        .map_err(|e| fail(format!("{what}: index {}: {e}", root.digest)))?;
    let keep: HashSet<String> = selected.iter().map(|d| d.digest.to_string()).collect();
    if let Some(list) = value.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|e| {
            e.get("digest")
                .and_then(|d| d.as_str())
                .is_some_and(|d| keep.contains(d))
        });
    }
    let bytes = bytes::Bytes::from(serde_json::to_vec(&value).expect("index serialises"));
    let filtered = FetchedManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: root.media_type.clone(),
        bytes,
    };
    Ok(Unit {
        tag,
        root: filtered,
        children,
    })
}

/// Copy one blob, retrying a failed transfer (the transport already resumes
/// cut connections; this covers failures it gave up on).
async fn copy_blob(
    sink: &impl Sink,
    src: &dyn ImageSource,
    digest: &Digest,
    size: u64,
    job: &Job,
) -> Result<(), Failure> {
    // Three tries, half a second then a second apart.
    let policy = egress::RetryPolicy {
        attempts: 3,
        base_delay: std::time::Duration::from_millis(500),
        max_delay: std::time::Duration::from_secs(10),
    };
    let once = || async {
        let stream = src
            .blob(digest)
            .await
            .map_err(|e| Try::Stop(fail(format!("{}: blob {digest}: {e}", src.describe()))))?;
        let counted = Arc::new(AtomicU64::new(0));
        let reader = Counting {
            inner: stream,
            this_attempt: counted.clone(),
            total: job.bytes_done.clone(),
        };
        match sink.put_blob(digest, size, reader).await {
            Ok(n) if n == size => {
                job.blobs_done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(n) => Err(Try::Stop(fail(format!(
                "blob {digest} is {n} bytes, the manifest says {size}"
            )))),
            Err(e) => {
                job.bytes_done
                    .fetch_sub(counted.load(Ordering::Relaxed), Ordering::Relaxed);
                Err(Try::Again(e))
            }
        }
    };
    once.retry(policy.backoff())
        .sleep(tokio::time::sleep)
        // Bytes that failed verification would fail the same way again.
        .when(|t| matches!(t, Try::Again(e) if !e.verification))
        .notify(|t, _| {
            if let Try::Again(e) = t {
                tracing::warn!(%digest, error = %e.message, "blob copy failed; retrying");
            }
        })
        .await
        .map_err(|t| match t {
            Try::Stop(f) => f,
            Try::Again(e) => fail(format!(
                "copying blob {digest} from {} to {}: {}",
                src.describe(),
                sink.describe(),
                e.message
            )),
        })
}

/// How one try at copying a blob failed.
enum Try {
    /// Retrying cannot help.
    Stop(Failure),
    /// The transfer failed (retried unless the bytes failed verification).
    Again(BlobFailure),
}

/// Counts bytes read into the job's progress.
pub(crate) struct Counting<R> {
    inner: R,
    this_attempt: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.this_attempt.fetch_add(n, Ordering::Relaxed);
            self.total.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
}

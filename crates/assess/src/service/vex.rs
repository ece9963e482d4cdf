//! VEX in the service: documents from the API and from referrers, kept
//! parsed in memory, applied wherever findings are judged (views,
//! notifications), and a change re-judges the images it names by
//! re-matching their stored inventories (no blob is read).

use super::Service;
use crate::clock::to_ms;
use crate::store::{Store, VexRow};
use crate::vex::{self, Document, Invalid, Pusher, Stored, Subject, VexNote};
use crate::vuln::Finding;
use anyhow::Result;
use oci::{Digest, ImageManifest};
use std::sync::Arc;

/// Largest VEX document read from a referrer.
const MAX_VEX_BYTES: u64 = 4 << 20;

pub(super) fn load(store: &Store) -> Result<Vec<Stored>> {
    let mut out = Vec::new();
    for row in store.vex_documents()? {
        // Stored to be listed, with the reason; never applied.
        if row.not_applied.is_some() {
            continue;
        }
        let bytes = serde_json::to_vec(&row.data)?;
        match vex::parse(&bytes) {
            Ok(doc) => out.push(Stored {
                doc,
                subject: row.subject,
                recorded_by: row.recorded_by,
            }),
            Err(e) => {
                tracing::warn!(key = row.key, error = %e, "stored VEX document no longer valid")
            }
        }
    }
    Ok(out)
}

/// Where a document came from.
struct VexFrom<'a> {
    source: &'a str,
    recorded_by: Option<String>,
    not_applied: Option<String>,
}

/// What storing a document did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct VexAdded {
    pub key: String,
    /// The document's id.
    pub id: String,
    pub author: String,
    /// Who gave it to drydock (see [`VexNote::recorded_by`]).
    pub recorded_by: Option<String>,
    pub statements: usize,
    /// Whether it replaced a document with the same key.
    pub replaced: bool,
    /// Why it is stored but not applied; absent when applied.
    pub not_applied: Option<String>,
    /// Images re-judged from their stored inventory.
    pub rejudged: usize,
}

impl Service {
    fn vex_docs(&self) -> Arc<Vec<Stored>> {
        self.inner
            .vex
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reload_vex(&self) -> Result<()> {
        let docs = load(&self.inner.store)?;
        *self.inner.vex.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(docs);
        Ok(())
    }

    /// The latest VEX statement about each finding of image `digest`
    /// (empty when no document exists).
    pub fn vex_notes(&self, digest: &str, findings: &[Finding]) -> Result<Vec<Option<VexNote>>> {
        let docs = self.vex_docs();
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let row = self.inner.store.image(digest)?;
        let repos = self.inner.store.repos_of(digest)?;
        let subject = Subject {
            digest,
            parent: row.as_ref().and_then(|r| r.parent.as_deref()),
            repos: &repos,
        };
        Ok(findings
            .iter()
            .map(|f| vex::judge(&docs, &subject, f))
            .collect())
    }

    /// Every stored document.
    pub fn vex_documents(&self) -> Result<Vec<VexRow>> {
        self.inner.store.vex_documents()
    }

    /// Validate and store a document sent through the API (key
    /// `api:<id>`: a document with the same id replaces it), then re-judge
    /// the images it names. Blocking.
    pub fn add_vex(
        &self,
        bytes: &[u8],
        source: &str,
    ) -> Result<std::result::Result<VexAdded, Invalid>> {
        let doc = match vex::parse(bytes) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let key = format!("api:{}", doc.id);
        let from = VexFrom {
            source,
            recorded_by: Some(source.to_string()),
            not_applied: None,
        };
        self.store_vex(key, doc, bytes, None, from).map(Ok)
    }

    fn store_vex(
        &self,
        key: String,
        doc: Document,
        bytes: &[u8],
        subject: Option<String>,
        from: VexFrom<'_>,
    ) -> Result<VexAdded> {
        let row = VexRow {
            key: key.clone(),
            doc_id: doc.id.clone(),
            subject: subject.clone(),
            source: from.source.to_string(),
            data: serde_json::from_slice(bytes)?,
            created_at: to_ms(self.now()),
            recorded_by: from.recorded_by.clone(),
            not_applied: from.not_applied.clone(),
        };
        let old = self.inner.store.put_vex(&row)?;
        self.reload_vex()?;
        // What was applied before and what is applied now: both may
        // change verdicts.
        let mut touched = Vec::new();
        if from.not_applied.is_none() {
            touched.push(Stored {
                doc: doc.clone(),
                subject,
                recorded_by: from.recorded_by.clone(),
            });
        }
        if let Some(old) = &old
            && old.not_applied.is_none()
            && let Ok(d) = vex::parse(&serde_json::to_vec(&old.data)?)
        {
            touched.push(Stored {
                doc: d,
                subject: old.subject.clone(),
                recorded_by: old.recorded_by.clone(),
            });
        }
        let rejudged = self.rejudge(&touched)?;
        tracing::info!(
            key,
            id = doc.id,
            rejudged,
            not_applied = from.not_applied.as_deref(),
            "VEX document stored"
        );
        Ok(VexAdded {
            key,
            id: doc.id.clone(),
            author: doc.author.clone(),
            recorded_by: from.recorded_by,
            statements: doc.statements.len(),
            replaced: old.is_some(),
            rejudged,
            not_applied: from.not_applied,
        })
    }

    /// Remove a document by key and re-judge what it named.
    pub fn delete_vex(&self, key: &str) -> Result<Option<VexRow>> {
        let Some(old) = self.inner.store.delete_vex(key)? else {
            return Ok(None);
        };
        self.reload_vex()?;
        if old.not_applied.is_none()
            && let Ok(d) = vex::parse(&serde_json::to_vec(&old.data)?)
        {
            self.rejudge(&[Stored {
                doc: d,
                subject: old.subject.clone(),
                recorded_by: old.recorded_by.clone(),
            }])?;
        }
        Ok(Some(old))
    }

    /// Re-match the assessed images `docs` may name, from their stored
    /// inventories; notifications then see the new VEX. Returns how many.
    fn rejudge(&self, docs: &[Stored]) -> Result<usize> {
        let mut digests = Vec::new();
        for row in self.inner.store.all_images()? {
            if row.kind != "image" || self.inner.store.result(&row.digest)?.is_none() {
                continue;
            }
            let repos = self.inner.store.repos_of(&row.digest)?;
            let s = Subject {
                digest: &row.digest,
                parent: row.parent.as_deref(),
                repos: &repos,
            };
            if docs.iter().any(|d| d.may_name(&s)) {
                digests.push(row.digest.clone());
            }
        }
        let n = digests.len();
        if let Some(db) = self.inner.vulns.current()
            && n > 0
        {
            self.rematch_blocking(db, digests)?;
        }
        Ok(n)
    }

    /// A VEX document pushed as a referrer (OpenVEX, or CycloneDX with
    /// `analysis`) by `pusher` (stored with its job, so known after a
    /// restart too; `None`: unknown, e.g. a manifest found at start that
    /// no push event named, or queued by a version that kept no pusher):
    /// read it (one small blob), store it scoped to its subject with who
    /// pushed it, and re-judge, unless `assess.vex.trusted` does not name
    /// the pusher (then it is stored, not applied). Returns what became of
    /// it, for the artifact's status. Blocking.
    pub(super) fn referrer_vex(
        &self,
        repo: &str,
        digest: &str,
        m: &ImageManifest,
        pusher: Option<&Pusher>,
    ) -> Option<String> {
        let at = m.artifact_type.as_deref().unwrap_or(&m.config.media_type);
        let openvex = at == vex::OPENVEX_ARTIFACT_TYPE;
        if !(openvex || at == vex::CYCLONEDX_ARTIFACT_TYPE) {
            return None;
        }
        let subject = m.subject.as_ref()?;
        let layer = m.layers.first()?;
        let bytes = match self.read_small(&layer.digest) {
            Ok(b) => b,
            Err(e) => return Some(format!("VEX document not read: {e:#}")),
        };
        if !openvex {
            // A CycloneDX SBOM (ours or anyone's) is not a VEX; only one
            // with analysed vulnerabilities is.
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            let analysed = v
                .get("vulnerabilities")
                .and_then(|x| x.as_array())
                .is_some_and(|a| a.iter().any(|x| x.get("analysis").is_some()));
            if !analysed {
                return None;
            }
        }
        let doc = match vex::parse(&bytes) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(repo, digest, error = %e, "VEX referrer refused");
                return Some(format!("VEX document not applied: {e}"));
            }
        };
        let key = format!("referrer:{digest}");
        // The same referrer (same digest, same document) judged before
        // with a known pusher runs again on a rescan, without its pusher
        // (forgotten once its job succeeded), or when pushed again, by
        // someone else. The earlier judgement stands unless this push may
        // turn a refused document into an applied one: neither a rescan
        // nor an untrusted user's push withdraws a trusted one's document.
        let earlier = match self.inner.store.vex_document(&key) {
            Ok(e) => e.filter(|e| e.recorded_by.is_some()),
            Err(e) => return Some(format!("VEX document not applied: {e:#}")),
        };
        if let Some(earlier) = earlier
            && (pusher.is_none() || earlier.not_applied.is_none())
        {
            return Some(referrer_note(
                &doc,
                &subject.digest,
                earlier.recorded_by.as_deref(),
                earlier.not_applied.as_deref(),
            ));
        }
        let not_applied = self.inner.opts.vex.refuses(pusher);
        let from = VexFrom {
            source: &format!("referrer in {repo}"),
            recorded_by: pusher.map(Pusher::display),
            not_applied,
        };
        let r = self.store_vex(
            key,
            doc.clone(),
            &bytes,
            Some(subject.digest.to_string()),
            from,
        );
        match r {
            Ok(added) => {
                if let Some(why) = &added.not_applied {
                    tracing::warn!(
                        repo,
                        digest,
                        document = added.id,
                        why,
                        "VEX referrer not applied"
                    );
                }
                Some(referrer_note(
                    &doc,
                    &subject.digest,
                    added.recorded_by.as_deref(),
                    added.not_applied.as_deref(),
                ))
            }
            Err(e) => Some(format!("VEX document not applied: {e:#}")),
        }
    }

    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        self.inner
            .source
            .blob_source()
            .open_blob(digest)?
            .take(MAX_VEX_BYTES + 1)
            .read_to_end(&mut bytes)?;
        anyhow::ensure!(
            bytes.len() as u64 <= MAX_VEX_BYTES,
            "larger than {MAX_VEX_BYTES} bytes"
        );
        Ok(bytes)
    }

    /// A deleted manifest that was a VEX referrer takes its statements along.
    pub(super) fn referrer_deleted(&self, digest: &str) {
        let key = format!("referrer:{digest}");
        let this = self.clone();
        // Called from the registry's delete path: re-judging runs apart.
        let run = move || {
            if let Err(e) = this.delete_vex(&key) {
                tracing::warn!(key, error = %e, "cannot remove the VEX document of a deleted referrer");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(run);
            }
            Err(_) => run(),
        }
    }
}

/// The referrer artifact's status message: what became of its document.
fn referrer_note(
    doc: &Document,
    subject: &Digest,
    recorded_by: Option<&str>,
    not_applied: Option<&str>,
) -> String {
    match not_applied {
        Some(why) => format!(
            "VEX document {} stored, not applied to {subject}: {why}",
            doc.id
        ),
        None => format!(
            "VEX document {} applied to {subject} ({} statements, pushed by {})",
            doc.id,
            doc.statements.len(),
            recorded_by.unwrap_or("an unknown pusher")
        ),
    }
}

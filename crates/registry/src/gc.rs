//! Garbage collection: remove manifests and blobs that nothing references.
//!
//! Protocol (safe while the server keeps accepting pushes, in the same
//! process or another):
//! 1. Take the data directory's GC lock exclusively. Committers (a blob
//!    rename plus its repository link) hold it shared, so no commit
//!    interleaves with the sweep.
//! 2. In one write transaction (which serialises with manifest pushes,
//!    whose reference checks run in their own write transactions):
//!    - live manifests: every tagged manifest, every manifest younger than
//!      the grace period, and, transitively, the children of live indexes
//!      and the referrers (`subject`) of live manifests, per repository;
//!    - delete the other manifests;
//!    - live blobs: those referenced by a live manifest in any repository;
//!    - delete repository links to blobs that are not live and were linked
//!      before the grace period.
//! 3. Delete blob files that are not live, no longer linked anywhere and
//!    older than the grace period (a push in progress commits a fresh file
//!    or refreshes an existing one's time, so it is protected).
//! 4. Release the lock. The manifests removed are journaled in the same
//!    transaction (`manifests_removed`, kept a week); a running server
//!    notices the database changed and raises `Event::ManifestDeleted`
//!    for each (see `housekeeping.rs`).
//!
//! The grace period protects content pushed but not yet referenced: blobs
//! uploaded before their manifest, and children pushed before their index.

use crate::RegistryError;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use storage::{BlobStorage, Meta, Store, block_on};

/// GC options.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed without removing anything.
    pub dry_run: bool,
    /// Content younger than this is never removed.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
        }
    }
}

/// What a GC run removed (or would remove, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests_removed: u64,
    pub links_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub blobs_kept: u64,
    pub bytes_kept: u64,
}

/// Run a GC over a data directory whose blobs are on the filesystem.
pub async fn gc(data_dir: &Path, opts: GcOptions) -> Result<GcReport, RegistryError> {
    gc_with(data_dir, &BlobStorage::Filesystem, opts).await
}

/// Run a GC over a data directory with blobs where `blobs` says. On S3
/// the sweep lists the bucket and the grace period counts from each
/// object's modification time (a re-push rewrites the object).
pub async fn gc_with(
    data_dir: &Path,
    blobs: &BlobStorage,
    opts: GcOptions,
) -> Result<GcReport, RegistryError> {
    let store = Arc::new(Store::open(data_dir, blobs).map_err(RegistryError::internal)?);
    // Blocking all through: the metadata is SQLite, and the driver calls
    // need no runtime of the caller's (see `storage::block_on`).
    tokio::task::spawn_blocking(move || gc_blocking(&store, &opts))
        .await
        .map_err(RegistryError::internal)?
}

fn gc_blocking(store: &Store, opts: &GcOptions) -> Result<GcReport, RegistryError> {
    let _lock = store.gc_lock_exclusive()?;
    let now = SystemTime::now();
    let cutoff_time = now
        .checked_sub(opts.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff = cutoff_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let mut report = GcReport::default();
    let dry_run = opts.dry_run;

    let (live_blobs, linked) = store.meta.with_write_tx(|tx| {
        let all = Meta::all_manifest_refs(tx)?;
        let tagged: HashSet<(String, String)> = {
            let mut st = tx.prepare("SELECT repo, digest FROM tags")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
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
        let mut live_blobs: HashSet<String> = HashSet::new();
        let mut removed: Vec<(String, String)> = Vec::new();
        for (i, m) in all.iter().enumerate() {
            if live[i] {
                live_blobs.extend(m.blobs.iter().cloned());
                continue;
            }
            report.manifests_removed += 1;
            removed.push((m.repo.clone(), m.digest.clone()));
            if !dry_run {
                tx.execute(
                    "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
                    (&m.repo, &m.digest),
                )?;
                tx.execute(
                    "DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2",
                    (&m.repo, &m.digest),
                )?;
            }
        }
        if !dry_run {
            // A running server reads this journal when it notices the
            // database changed, and raises `ManifestDeleted` for each.
            let now_nanos = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as i64;
            let week = Duration::from_secs(7 * 24 * 3600).as_nanos() as i64;
            Meta::journal_removed(tx, &removed, now_nanos, now_nanos - week)?;
        }
        let links: Vec<(String, String, i64)> = {
            let mut st = tx.prepare("SELECT repo, digest, linked_at FROM blob_links")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut linked: HashSet<String> = HashSet::new();
        for (repo, digest, at) in links {
            if live_blobs.contains(&digest) || at >= cutoff {
                linked.insert(digest);
                continue;
            }
            report.links_removed += 1;
            if !dry_run {
                tx.execute(
                    "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
                    (&repo, &digest),
                )?;
            } else {
                // In a dry run the link stays, but count the blob as if gone.
            }
        }
        if !dry_run {
            tx.execute(
                "DELETE FROM repos WHERE created_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = repos.name)
                   AND NOT EXISTS (SELECT 1 FROM blob_links b WHERE b.repo = repos.name)",
                [cutoff],
            )?;
        }
        Ok((live_blobs, linked))
    })?;

    let mut doomed = Vec::new();
    block_on(store.blobs.list(&mut |d, st| {
        let s = d.to_string();
        if live_blobs.contains(&s) || linked.contains(&s) || st.modified >= cutoff_time {
            report.blobs_kept += 1;
            report.bytes_kept += st.size;
        } else {
            doomed.push((d, st.size));
        }
    }))?;
    for (d, size) in doomed {
        if dry_run || block_on(store.blobs.delete(&d))? {
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
    }
    tracing::info!(?report, dry_run, "gc finished");
    Ok(report)
}

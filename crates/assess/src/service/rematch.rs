//! The re-match scheduler: pull-time polling and re-matching stored
//! inventories when the database changes or results grow old.

use super::Service;
use crate::clock::to_ms;
use crate::vuln::{Finding, VulnDatabase};
use anyhow::Result;
use inventory::Inventory;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

impl Service {
    pub(super) async fn scheduler_loop(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        // With shared state every node runs this loop; one leads, so a new
        // database version is re-matched (and told to webhooks) once.
        let mut lead = super::DutyLead::new(&self.inner.opts.leads, storage::Duty::AssessScheduler);
        // Kept across leads: a node taking over polls pulls since it last
        // did (or since its start's window) and judges expiries since its
        // start; notifications already sent are not repeated.
        let mut last_poll =
            OffsetDateTime::now_utc() - Duration::days(self.inner.opts.rescan_window_days as i64);
        // Exemptions that expired before the service started were already
        // expired when the images were last judged.
        let mut expiry_checked = self.now();
        let mut pruned_at: Option<std::time::Instant> = None;
        loop {
            if self.stopped() || !lead.wait(&mut stop).await {
                return;
            }
            // Pull records: registry time, shifted into the assessor's clock.
            let poll_start = OffsetDateTime::now_utc();
            let source = self.inner.source.clone();
            let since = last_poll - Duration::seconds(1);
            if let Ok(pulls) = tokio::task::spawn_blocking(move || source.recent_pulls(since)).await
            {
                let offset = self.inner.clock.offset();
                let rows: Vec<(String, i64)> = pulls
                    .into_iter()
                    .map(|(_, d, at)| (d.to_string(), to_ms(at + offset)))
                    .collect();
                if !rows.is_empty()
                    && let Err(e) = self.inner.store.record_pulls(&rows)
                {
                    tracing::warn!(error = %e, "cannot record pulls");
                }
                last_poll = poll_start;
            }
            if let Err(e) = self.rematch_due().await {
                tracing::warn!(error = %format!("{e:#}"), "re-matching failed");
            }
            let now = self.now();
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.notify_expired(expiry_checked, now))
                .await
            {
                Ok(Ok(())) => expiry_checked = now,
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot check expired exemptions")
                }
                Err(e) => tracing::warn!(error = %e, "cannot check expired exemptions"),
            }
            if pruned_at.is_none_or(|t| t.elapsed() >= self.inner.opts.retention.every) {
                let this = self.clone();
                match tokio::task::spawn_blocking(move || this.prune()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "pruning failed"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                }
                pruned_at = Some(std::time::Instant::now());
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = lead.changed() => {}
                _ = tokio::time::sleep(self.inner.opts.tick) => {}
            }
        }
    }

    /// When an exemption expired in `(since, now]`, the findings it hid
    /// count again: judge every assessed image it could have covered anew,
    /// so webhooks hear about images that became unhealthy by the expiry
    /// alone, without waiting for the next re-match. Already-notified
    /// problems are not repeated (the usual rule).
    pub fn notify_expired(&self, since: OffsetDateTime, now: OffsetDateTime) -> Result<()> {
        let expired: Vec<_> = self
            .inner
            .store
            .exemptions()?
            .into_iter()
            .filter(|e| e.expires_at.is_some_and(|t| t > since && t <= now))
            .collect();
        if expired.is_empty() || self.inner.store.webhooks()?.is_empty() {
            return Ok(());
        }
        let expired: Vec<_> = expired
            .iter()
            .map(crate::policy::Exemption::compile)
            .collect();
        for row in self.inner.store.all_images()? {
            if row.status != crate::store::status::DONE || row.kind != "image" {
                continue;
            }
            let covered = expired.iter().any(|e| e.covers_repository(&row.repo));
            if !covered {
                continue;
            }
            if let Some(result) = self.inner.store.result(&row.digest)? {
                self.notify_assessed(
                    &row.digest,
                    &row.repo,
                    row.parent.as_deref(),
                    result.db_version.as_deref(),
                    &result.findings,
                );
            }
        }
        Ok(())
    }

    /// Look at pulls now (normally done every tick).
    pub async fn poll_pulls(&self) -> Result<()> {
        let source = self.inner.source.clone();
        let since = OffsetDateTime::now_utc()
            - Duration::days(self.inner.opts.rescan_window_days as i64 + 1);
        let pulls = tokio::task::spawn_blocking(move || source.recent_pulls(since)).await?;
        let offset = self.inner.clock.offset();
        let rows: Vec<(String, i64)> = pulls
            .into_iter()
            .map(|(_, d, at)| (d.to_string(), to_ms(at + offset)))
            .collect();
        self.inner.store.record_pulls(&rows)
    }

    /// Re-match every image due: in the window (pushed or pulled within
    /// `rescan_window_days`) and either matched against another database
    /// version or longer ago than `rescan_interval`; plus images never
    /// matched against any database. Reads stored inventories only.
    /// Returns how many images were re-matched.
    pub async fn rematch_due(&self) -> Result<usize> {
        let Some(db) = self.inner.vulns.current() else {
            return Ok(0);
        };
        let _guard = self.inner.rematch_lock.lock().await;
        let now = self.now();
        let window_start = now - Duration::days(self.inner.opts.rescan_window_days as i64);
        let version = db.version();
        let candidates = self.inner.store.rematch_candidates(
            to_ms(window_start),
            &version,
            to_ms(now - self.inner.opts.rescan_interval),
        )?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let n = candidates.len();
        let started = std::time::Instant::now();
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.rematch_blocking(db, candidates)).await??;
        tracing::info!(images = n, ms = started.elapsed().as_millis() as u64, db_version = %version, "re-matched");
        Ok(n)
    }

    pub(super) fn rematch_blocking(
        &self,
        db: Arc<dyn VulnDatabase>,
        digests: Vec<String>,
    ) -> Result<()> {
        let version = db.version();
        let threads = self.inner.opts.workers.max(1);
        // A pipeline: the next chunk is read and the previous one written
        // while this one is matched (reads and writes were serial, a third
        // of the time on SQLite and more on PostgreSQL). One chunk waits at
        // each hand-over, so at most four are in memory.
        let (load_tx, load_rx) = std::sync::mpsc::sync_channel::<Vec<(String, Vec<u8>)>>(1);
        let (save_tx, save_rx) = std::sync::mpsc::sync_channel::<Vec<Matched>>(1);
        std::thread::scope(|s| {
            let reader = s.spawn(move || -> Result<()> {
                for chunk in digests.chunks(1024) {
                    // One read per chunk: a round trip per image was most
                    // of the time on PostgreSQL.
                    let loaded = self.inner.store.inventories_raw(chunk)?;
                    if load_tx.send(loaded).is_err() {
                        break; // the writer failed; its error is reported
                    }
                }
                Ok(())
            });
            let version = &version;
            let writer = s.spawn(move || -> Result<()> {
                for matched in save_rx {
                    self.save_matched(version, matched)?;
                }
                Ok(())
            });
            for loaded in load_rx {
                if save_tx.send(match_chunk(&db, &loaded, threads)).is_err() {
                    break; // dropping `load_rx` stops the reader too
                }
            }
            drop(save_tx);
            let joined = |r: std::thread::Result<Result<()>>| {
                r.unwrap_or_else(|_| Err(anyhow::anyhow!("a re-matching thread panicked")))
            };
            // A failed write first: a reader stopped by it has no error.
            joined(writer.join()).and(joined(reader.join()))
        })
    }

    /// Store one chunk's results in one transaction and tell webhooks.
    fn save_matched(&self, version: &str, matched: Vec<Matched>) -> Result<()> {
        let at = to_ms(self.now());
        let mut batch = Vec::with_capacity(matched.len());
        let mut findings = Vec::with_capacity(matched.len());
        for (d, f, enc) in matched {
            batch.push((d.clone(), Some(version.to_owned()), at, enc));
            findings.push((d, f));
        }
        self.inner.store.save_encoded(batch)?;
        // Notifications need a receiver; with no webhook there is nothing to tell.
        if !self.inner.store.webhooks()?.is_empty() {
            for (digest, f) in &findings {
                if let Some(row) = self.inner.store.image(digest)? {
                    self.notify_assessed(
                        digest,
                        &row.repo,
                        row.parent.as_deref(),
                        Some(version),
                        f,
                    );
                }
            }
        }
        Ok(())
    }
}

type Matched = (String, Vec<Finding>, crate::store::EncodedFindings);

/// Parse, match and encode one chunk on `threads` threads; an inventory
/// that cannot be read is left for the next re-match, as before.
fn match_chunk(
    db: &Arc<dyn VulnDatabase>,
    loaded: &[(String, Vec<u8>)],
    threads: usize,
) -> Vec<Matched> {
    let per = loaded.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = loaded
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(d, raw)| {
                            let inv: Inventory = crate::store::unpack(raw).ok()?;
                            let f = db.match_inventory(&inv);
                            let enc = crate::store::EncodedFindings::new(&f).ok()?;
                            Some((d.clone(), f, enc))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

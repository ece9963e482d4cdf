//! The audit log: who did what, from where, with what outcome.
//!
//! Records are buffered and written by a background thread once a second
//! (an audit write never sits on a request's path). Pulls are aggregated
//! per identity, repository and hour into one record with a count.

use crate::{AccessControl, AuthError, Identity, Principal};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use storage::access::{AuditQuery, AuditRow};
use storage::{AccessStore, block_on};
use time::OffsetDateTime;

/// One audit record as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    pub identity: String,
    pub address: String,
    /// `push`, `pull`, `delete`, `login`, `user.add`, `robot.revoke`, …
    pub action: String,
    /// What it was done to: a repository, `repo@digest`, a user name, …
    pub target: String,
    /// `ok`, `denied`, `failed`.
    pub outcome: String,
    pub detail: String,
    /// How many events this record stands for (pulls are aggregated).
    pub count: i64,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> AuditEntry {
        AuditEntry {
            id: r.id,
            at: OffsetDateTime::from_unix_timestamp(r.at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
            identity: r.identity,
            address: r.address,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            detail: r.detail,
            count: r.count,
        }
    }
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub identity: String,
    pub address: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

pub(crate) struct Recorder {
    store: Arc<dyn AccessStore>,
    pending: Mutex<Pending>,
    retention: Duration,
}

#[derive(Default)]
struct Pending {
    rows: Vec<AuditRow>,
    /// Pulls by (identity, address, repository, hour). Looked up by
    /// borrowed parts, so counting a pull allocates only the first time.
    pulls: HashMap<PullKey, i64>,
}

impl Recorder {
    pub(crate) fn start(store: Arc<dyn AccessStore>, retention: Duration) -> Arc<Recorder> {
        let rec = Arc::new(Recorder {
            store,
            pending: Mutex::new(Pending::default()),
            retention,
        });
        let weak = Arc::downgrade(&rec);
        let _ = std::thread::Builder::new()
            .name("drydock-audit".into())
            .spawn(move || flush_loop(weak));
        rec
    }

    pub(crate) fn record(&self, e: AuditEvent) {
        let at = OffsetDateTime::now_utc().unix_timestamp();
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if p.rows.len() >= 100_000 {
            // The writer is stuck (disk full?): drop rather than grow.
            tracing::warn!("audit log buffer full; dropping a record");
            return;
        }
        p.rows.push(AuditRow {
            id: 0,
            at,
            identity: e.identity,
            address: e.address,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
            count: 1,
            bucket: None,
        });
    }

    pub(crate) fn pull(&self, identity: &Identity, address: Option<IpAddr>, repo: &str) {
        let hour = OffsetDateTime::now_utc().unix_timestamp() / 3600;
        let probe = PullProbe {
            identity,
            address,
            repo,
            hour,
        };
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = p.pulls.get_mut(&probe as &dyn PullKeyView) {
            *n += 1;
            return;
        }
        if p.pulls.len() >= 100_000 {
            return;
        }
        p.pulls.insert(
            PullKey {
                identity: identity.clone(),
                address,
                repo: repo.to_string(),
                hour,
            },
            1,
        );
    }

    pub(crate) fn flush(&self) {
        let (mut rows, pulls) = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut p.rows), std::mem::take(&mut p.pulls))
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for (key, count) in pulls {
            let identity = key.identity.display_name();
            let address = key.address.map(|a| a.to_string()).unwrap_or_default();
            let (repo, hour) = (key.repo, key.hour);
            rows.push(AuditRow {
                id: 0,
                at: now,
                bucket: Some(format!("pull|{identity}|{address}|{repo}|{hour}")),
                identity,
                address,
                action: "pull".into(),
                target: repo,
                outcome: "ok".into(),
                detail: String::new(),
                count,
            });
        }
        if rows.is_empty() {
            return;
        }
        if let Err(e) = block_on(self.store.append_audit(&rows)) {
            tracing::error!(error = %e, records = rows.len(), "cannot write the audit log");
        }
    }

    pub(crate) fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, storage::MetaError> {
        self.flush();
        Ok(block_on(self.store.audit(q))?
            .into_iter()
            .map(AuditEntry::from)
            .collect())
    }

    fn prune(&self) {
        let before = OffsetDateTime::now_utc().unix_timestamp() - self.retention.as_secs() as i64;
        match block_on(self.store.prune_audit(before)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned the audit log"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// An aggregated pull's key.
#[derive(PartialEq, Eq, Hash)]
struct PullKey {
    identity: Identity,
    address: Option<IpAddr>,
    repo: String,
    hour: i64,
}

/// A pull's key, borrowed.
struct PullProbe<'a> {
    identity: &'a Identity,
    address: Option<IpAddr>,
    repo: &'a str,
    hour: i64,
}

/// What owned and borrowed keys share, so the map can be probed without
/// building an owned key (`HashMap::get` through `Borrow`).
trait PullKeyView {
    fn parts(&self) -> (&Identity, Option<IpAddr>, &str, i64);
}

impl PullKeyView for PullKey {
    fn parts(&self) -> (&Identity, Option<IpAddr>, &str, i64) {
        (&self.identity, self.address, &self.repo, self.hour)
    }
}

impl PullKeyView for PullProbe<'_> {
    fn parts(&self) -> (&Identity, Option<IpAddr>, &str, i64) {
        (self.identity, self.address, self.repo, self.hour)
    }
}

impl<'a> std::borrow::Borrow<dyn PullKeyView + 'a> for PullKey {
    fn borrow(&self) -> &(dyn PullKeyView + 'a) {
        self
    }
}

impl PartialEq for dyn PullKeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PullKeyView + '_ {}

impl std::hash::Hash for dyn PullKeyView + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

fn flush_loop(weak: Weak<Recorder>) {
    let mut ticks = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(rec) = weak.upgrade() else { return };
        rec.flush();
        if ticks.is_multiple_of(3600) {
            rec.prune();
        }
        ticks += 1;
    }
}

impl AccessControl {
    /// Record an audit event (buffered; written within a second).
    pub fn audit(&self, e: AuditEvent) {
        self.inner.audit.record(e);
    }

    /// Record that `who` pulled from `repo` (aggregated per hour).
    pub fn audit_pull(&self, who: &Principal, repo: &str) {
        self.inner.audit.pull(who.identity(), who.address(), repo);
    }

    /// Record what `who` did.
    pub fn audit_by(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.audit(AuditEvent {
            identity: who.name(),
            address: who.address().map(|a| a.to_string()).unwrap_or_default(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            detail: detail.into(),
        });
    }

    /// Query the audit log, newest first.
    pub fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuthError> {
        Ok(self.inner.audit.query(q)?)
    }

    /// Write buffered audit records now.
    pub fn flush(&self) {
        self.inner.audit.flush();
    }
}

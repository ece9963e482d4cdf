//! Exemptions, webhooks, their delivery log and notification dedup.

use super::Store;
use crate::policy::Exemption;
use anyhow::Result;
use rusqlite::params;
use serde::Serialize;
use std::collections::HashSet;
use utoipa::ToSchema;

/// A registered webhook.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    #[serde(skip)]
    pub secret: String,
    /// Repository glob; absent means the whole registry.
    pub repository: Option<String>,
    /// Only findings at or above this severity are reported (default: the policy threshold).
    pub min_severity: Option<String>,
    pub created_at: i64,
}

/// One entry of the delivery log.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
    #[serde(skip)]
    pub payload: String,
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        event: r.get(2)?,
        digest: r.get(3)?,
        repository: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        last_status: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        next_attempt_at: r.get(10)?,
        delivered_at: r.get(11)?,
        payload: r.get(12)?,
    })
}
const DELIVERY_COLS: &str = "id, webhook_id, event, digest, repo, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at, payload";

impl Store {
    // ---- exemptions ----

    pub fn add_exemption(&self, e: &Exemption) -> Result<()> {
        self.c().execute(
            "INSERT INTO exemptions(id, data, created_at) VALUES (?1, ?2, ?3)",
            params![
                e.id,
                serde_json::to_string(e)?,
                crate::clock::to_ms(e.created_at)
            ],
        )?;
        Ok(())
    }

    pub fn exemptions(&self) -> Result<Vec<Exemption>> {
        let c = self.c();
        let mut st = c.prepare("SELECT data FROM exemptions ORDER BY created_at, id")?;
        let rows: Vec<String> = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    pub fn delete_exemption(&self, id: &str) -> Result<bool> {
        Ok(self
            .c()
            .execute("DELETE FROM exemptions WHERE id = ?1", [id])?
            > 0)
    }

    // ---- webhooks and deliveries ----

    pub fn add_webhook(&self, w: &Webhook) -> Result<()> {
        self.c().execute(
            "INSERT INTO webhooks(id, url, secret, repository, min_severity, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![w.id, w.url, w.secret, w.repository, w.min_severity, w.created_at],
        )?;
        Ok(())
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT id, url, secret, repository, min_severity, created_at FROM webhooks ORDER BY created_at, id",
        )?;
        let v = st
            .query_map([], |r| {
                Ok(Webhook {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    repository: r.get(3)?,
                    min_severity: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn delete_webhook(&self, id: &str) -> Result<bool> {
        let c = self.c();
        c.execute(
            "UPDATE deliveries SET state = 'failed', last_error = 'webhook deleted' WHERE webhook_id = ?1 AND state = 'pending'",
            [id],
        )?;
        Ok(c.execute("DELETE FROM webhooks WHERE id = ?1", [id])? > 0)
    }

    pub fn add_delivery(&self, d: &Delivery) -> Result<()> {
        self.c_quiet().execute(
            "INSERT INTO deliveries(id, webhook_id, event, digest, repo, payload, state, attempts, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8)",
            params![d.id, d.webhook_id, d.event, d.digest, d.repository, d.payload, d.created_at, d.next_attempt_at],
        )?;
        Ok(())
    }

    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let c = self.c();
        let mut st = c.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
        ))?;
        let v = st
            .query_map(params![now, limit as i64], delivery_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        Ok(self.c().query_row(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Record one attempt. `next` is the time of the next attempt, or
    /// `None` when delivered or given up.
    pub fn delivery_attempted(
        &self,
        id: &str,
        delivered: bool,
        status: Option<u16>,
        error: Option<&str>,
        next: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let state = if delivered {
            "delivered"
        } else if next.is_some() {
            "pending"
        } else {
            "failed"
        };
        self.c_quiet().execute(
            "UPDATE deliveries SET state = ?2, attempts = attempts + 1, last_status = ?3, last_error = ?4,
               next_attempt_at = COALESCE(?5, next_attempt_at), delivered_at = CASE WHEN ?6 THEN ?7 ELSE delivered_at END
             WHERE id = ?1",
            params![id, state, status.map(i64::from), error, next, delivered, now],
        )?;
        Ok(())
    }

    pub fn deliveries(&self, webhook_id: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
        let c = self.c();
        let mut st = c.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE (?1 IS NULL OR webhook_id = ?1) ORDER BY created_at DESC LIMIT ?2"
        ))?;
        let v = st
            .query_map(params![webhook_id, limit as i64], delivery_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    // ---- notification dedup ----

    pub fn notified_keys(&self, digest: &str) -> Result<HashSet<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT key FROM notified WHERE digest = ?1")?;
        let v = st
            .query_map([digest], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn mark_notified(&self, digest: &str, keys: &[String], at: i64) -> Result<()> {
        let mut c = self.c_quiet();
        let tx = c.transaction()?;
        for k in keys {
            tx.execute(
                "INSERT OR IGNORE INTO notified(digest, key, at) VALUES (?1, ?2, ?3)",
                params![digest, k, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

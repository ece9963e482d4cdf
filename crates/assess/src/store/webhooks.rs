//! Exemptions, webhooks, their delivery log and notification dedup.

use super::{Store, wait};
use crate::policy::Exemption;
use anyhow::Result;
use serde::Serialize;
use std::collections::HashSet;
use storage::assess::{DeliveryAttempt, ExemptionRow};
use utoipa::ToSchema;

/// A registered webhook.
#[derive(Clone, Serialize, ToSchema)]
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

// Written out so the secret never reaches a log line.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("repository", &self.repository)
            .field("min_severity", &self.min_severity)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl From<storage::assess::Webhook> for Webhook {
    fn from(w: storage::assess::Webhook) -> Self {
        Webhook {
            id: w.id,
            url: w.url,
            secret: w.secret,
            repository: w.repository,
            min_severity: w.min_severity,
            created_at: w.created_at,
        }
    }
}

impl From<&Webhook> for storage::assess::Webhook {
    fn from(w: &Webhook) -> Self {
        storage::assess::Webhook {
            id: w.id.clone(),
            url: w.url.clone(),
            secret: w.secret.clone(),
            repository: w.repository.clone(),
            min_severity: w.min_severity.clone(),
            created_at: w.created_at,
        }
    }
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

impl From<storage::assess::Delivery> for Delivery {
    fn from(d: storage::assess::Delivery) -> Self {
        Delivery {
            id: d.id,
            webhook_id: d.webhook_id,
            event: d.event,
            digest: d.digest,
            repository: d.repository,
            state: d.state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            payload: d.payload,
        }
    }
}

impl From<&Delivery> for storage::assess::Delivery {
    fn from(d: &Delivery) -> Self {
        storage::assess::Delivery {
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event: d.event.clone(),
            digest: d.digest.clone(),
            repository: d.repository.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            payload: d.payload.clone(),
        }
    }
}

impl Store {
    // ---- exemptions ----

    pub fn add_exemption(&self, e: &Exemption) -> Result<()> {
        wait(self.state.add_exemption(&ExemptionRow {
            id: e.id.clone(),
            data: serde_json::to_string(e)?,
            created_at: crate::clock::to_ms(e.created_at),
        }))
    }

    pub fn exemptions(&self) -> Result<Vec<Exemption>> {
        // One that no longer parses is skipped, as before the move.
        Ok(wait(self.state.exemptions())?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect())
    }

    pub fn delete_exemption(&self, id: &str) -> Result<bool> {
        wait(self.state.delete_exemption(id))
    }

    // ---- webhooks and deliveries ----

    pub fn add_webhook(&self, w: &Webhook) -> Result<()> {
        wait(self.state.add_webhook(&w.into()))
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        Ok(wait(self.state.webhooks())?
            .into_iter()
            .map(Webhook::from)
            .collect())
    }

    pub fn delete_webhook(&self, id: &str) -> Result<bool> {
        wait(self.state.delete_webhook(id))
    }

    pub fn add_delivery(&self, d: &Delivery) -> Result<()> {
        wait(self.state.add_delivery(&d.into()))
    }

    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        Ok(wait(self.state.due_deliveries(now, limit))?
            .into_iter()
            .map(Delivery::from)
            .collect())
    }

    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        wait(self.state.next_delivery_at())
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
        wait(self.state.delivery_attempted(&DeliveryAttempt {
            id: id.into(),
            delivered,
            status,
            error: error.map(str::to_owned),
            next,
            now,
        }))
    }

    pub fn deliveries(&self, webhook_id: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
        Ok(wait(self.state.deliveries(webhook_id, limit))?
            .into_iter()
            .map(Delivery::from)
            .collect())
    }

    // ---- notification dedup ----

    pub fn notified_keys(&self, digest: &str) -> Result<HashSet<String>> {
        wait(self.state.notified_keys(digest))
    }

    pub fn mark_notified(&self, digest: &str, keys: &[String], at: i64) -> Result<()> {
        wait(self.state.mark_notified(digest, keys, at))
    }
}

//! Notifications: deciding what to tell webhooks after an assessment or a
//! failure, queueing deliveries and the signed delivery loop with retries.

use super::Service;
use crate::clock::{rfc3339, to_ms};
use crate::notify;
use crate::policy::evaluate_with_vex;
use crate::store::Delivery;
use crate::vuln::Finding;
use anyhow::Result;
use oci::Name;
use std::time::Duration as StdDuration;
use time::OffsetDateTime;

impl Service {
    pub(super) fn notify_assessed(
        &self,
        digest: &str,
        repo: &str,
        parent: Option<&str>,
        db_version: Option<&str>,
        findings: &[Finding],
    ) {
        if let Err(e) = self.try_notify_assessed(digest, repo, parent, db_version, findings) {
            tracing::warn!(digest, error = %e, "cannot queue notifications");
        }
    }

    fn try_notify_assessed(
        &self,
        digest: &str,
        repo: &str,
        parent: Option<&str>,
        db_version: Option<&str>,
        findings: &[Finding],
    ) -> Result<()> {
        let webhooks = self.inner.store.webhooks()?;
        if webhooks.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let rule = self.inner.opts.policy.rule_for(repo);
        let exemptions = self.inner.store.exemptions()?;
        let incomplete = self.inner.store.incomplete(digest)?;
        let vex = self.vex_notes(digest, findings)?;
        let eval = evaluate_with_vex(findings, repo, rule, &exemptions, &vex, &incomplete, now);
        if eval.health.healthy {
            return Ok(());
        }
        let already = self.inner.store.notified_keys(digest)?;
        let Some(decision) = notify::decide(&eval, &already) else {
            return Ok(());
        };
        let new: Vec<&Finding> = eval
            .judged
            .iter()
            .filter(|j| {
                j.violates
                    && decision
                        .new_keys
                        .contains(&crate::policy::finding_key(j.finding))
            })
            .map(|j| j.finding)
            .collect();
        let tags = self.tags_of(digest, parent);
        let mut queued = false;
        for w in webhooks.iter().filter(|w| notify::webhook_applies(w, repo)) {
            let told = notify::findings_for(w, new.clone());
            if told.is_empty() {
                continue;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let body = serde_json::json!({
                "id": id,
                "event": decision.event,
                "at": rfc3339(now),
                "repository": repo,
                "digest": digest,
                "index": parent,
                "tags": tags,
                "health": eval.health,
                "summary": eval.summary,
                "db_version": db_version,
                "new_findings": told.iter().map(|f| serde_json::json!({
                    "id": &*f.id,
                    "aliases": &*f.aliases,
                    "ecosystem": f.ecosystem,
                    "package": &*f.package,
                    "installed_version": &*f.installed_version,
                    "fixed_version": f.fixed_version.as_deref(),
                    "severity": f.severity,
                    "status": f.status,
                })).collect::<Vec<_>>(),
            });
            self.queue_delivery(w, &id, decision.event, Some(digest), Some(repo), body, now)?;
            queued = true;
        }
        self.inner
            .store
            .mark_notified(digest, &decision.new_keys, to_ms(now))?;
        if queued {
            self.inner.deliver_wake.notify_one();
        }
        Ok(())
    }

    pub(super) fn notify_failed(&self, digest: &str, error: &str) {
        let r = (|| -> Result<()> {
            let key = format!("failed:{error}");
            if self.inner.store.notified_keys(digest)?.contains(&key) {
                return Ok(());
            }
            let row = self.inner.store.image(digest)?;
            let repo = row.as_ref().map(|r| r.repo.clone()).unwrap_or_default();
            let now = self.now();
            let mut queued = false;
            for w in self.inner.store.webhooks()? {
                if !notify::webhook_applies(&w, &repo) {
                    continue;
                }
                let id = uuid::Uuid::new_v4().to_string();
                let body = serde_json::json!({
                    "id": id,
                    "event": notify::ASSESSMENT_FAILED,
                    "at": rfc3339(now),
                    "repository": repo,
                    "digest": digest,
                    "error": error,
                });
                self.queue_delivery(
                    &w,
                    &id,
                    notify::ASSESSMENT_FAILED,
                    Some(digest),
                    Some(&repo),
                    body,
                    now,
                )?;
                queued = true;
            }
            self.inner.store.mark_notified(digest, &[key], to_ms(now))?;
            if queued {
                self.inner.deliver_wake.notify_one();
            }
            Ok(())
        })();
        if let Err(e) = r {
            tracing::warn!(digest, error = %e, "cannot queue failure notification");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_delivery(
        &self,
        w: &crate::store::Webhook,
        id: &str,
        event: &str,
        digest: Option<&str>,
        repo: Option<&str>,
        body: serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.inner.store.add_delivery(&Delivery {
            id: id.to_string(),
            webhook_id: w.id.clone(),
            event: event.to_string(),
            digest: digest.map(str::to_string),
            repository: repo.map(str::to_string),
            state: "pending".into(),
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: to_ms(now),
            next_attempt_at: to_ms(now),
            delivered_at: None,
            payload: serde_json::to_string(&body)?,
        })
    }

    /// `repo:tag` names pointing at `digest` (or at its index).
    pub fn tags_of(&self, digest: &str, parent: Option<&str>) -> Vec<String> {
        let target = parent.unwrap_or(digest);
        let mut out = Vec::new();
        let repos = self.inner.store.repos_of(target).unwrap_or_default();
        for r in repos {
            let Ok(name) = Name::parse(&r) else { continue };
            if let Ok(tags) = self.inner.source.tags(&name) {
                for (t, d) in tags {
                    if d.to_string() == target {
                        out.push(format!("{}:{}", r, t.as_str()));
                    }
                }
            }
        }
        out
    }

    pub(super) async fn delivery_loop(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        // With shared state every node's loop sees every pending delivery;
        // only the leader posts, so a receiver hears each event once.
        let mut lead = super::DutyLead::new(&self.inner.opts.leads, storage::Duty::WebhookDelivery);
        loop {
            if self.stopped() || !lead.wait(&mut stop).await {
                return;
            }
            let notified = self.inner.deliver_wake.notified();
            let now = to_ms(self.now());
            let due = self.inner.store.due_deliveries(now, 64).unwrap_or_default();
            for d in due {
                // A lost lead stops before the next post: the new leader
                // reads the same pending rows.
                if self.stopped() || !lead.holds() {
                    break;
                }
                self.attempt(d).await;
            }
            let wait = match self.inner.store.next_delivery_at() {
                Ok(Some(next)) => {
                    StdDuration::from_millis((next - to_ms(self.now())).clamp(5, 1000) as u64)
                }
                _ => StdDuration::from_secs(1),
            };
            tokio::select! {
                _ = notified => {}
                _ = stop.changed() => {}
                _ = lead.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One delivery request: (delivered, HTTP status, error).
    async fn post(
        &self,
        w: &crate::store::Webhook,
        d: &Delivery,
    ) -> (bool, Option<u16>, Option<String>) {
        let signature = notify::sign(&w.secret, d.payload.as_bytes());
        let res = self
            .inner
            .http
            .post(&w.url)
            .header("content-type", "application/json")
            .header(notify::SIGNATURE_HEADER, signature)
            .header(notify::EVENT_HEADER, &d.event)
            .header(notify::DELIVERY_HEADER, &d.id)
            .body(d.payload.clone())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), None),
            Ok(r) if r.status().is_redirection() => (
                false,
                Some(r.status().as_u16()),
                Some(format!(
                    "HTTP {} (webhook deliveries do not follow redirects)",
                    r.status()
                )),
            ),
            Ok(r) => (
                false,
                Some(r.status().as_u16()),
                Some(format!("HTTP {}", r.status())),
            ),
            // A refusal by the outbound policy (a name that resolves to a
            // refused address) is reported as such, not as a connect error.
            Err(e) => (
                false,
                None,
                Some(match egress::refusal(&e) {
                    Some(r) => r.to_string(),
                    None => e.to_string(),
                }),
            ),
        }
    }

    async fn attempt(&self, d: Delivery) {
        let webhook = self
            .inner
            .store
            .webhooks()
            .ok()
            .and_then(|ws| ws.into_iter().find(|w| w.id == d.webhook_id));
        let now = to_ms(self.now());
        let Some(w) = webhook else {
            let _ = self.inner.store.delivery_attempted(
                &d.id,
                false,
                None,
                Some("webhook deleted"),
                None,
                now,
            );
            return;
        };
        let (ok, code, err) = match self.inner.opts.outbound.check_url_str(&w.url) {
            // A literal IP is connected to without a lookup, so the
            // client's resolver never judges it: judge it here.
            Err(refused) => (false, None, Some(refused.to_string())),
            Ok(()) => self.post(&w, &d).await,
        };
        let attempt = d.attempts as u32 + 1;
        let next = (!ok && attempt < self.inner.opts.webhook_attempts).then(|| {
            to_ms(self.now())
                + notify::backoff(self.inner.opts.webhook_backoff, attempt).as_millis() as i64
        });
        if let Err(e) = self.inner.store.delivery_attempted(
            &d.id,
            ok,
            code,
            err.as_deref(),
            next,
            to_ms(self.now()),
        ) {
            tracing::warn!(delivery = d.id, error = %e, "cannot record delivery attempt");
        }
    }
}

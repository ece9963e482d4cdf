//! Notifications: the pure decision of what to send, the HMAC-SHA256
//! signature, and the delivery loop with retries and backoff.

use crate::policy::{Evaluation, finding_key};
use crate::store::Webhook;
use crate::vuln::{Finding, Severity};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body keyed with the webhook secret>`.
pub const SIGNATURE_HEADER: &str = "X-Drydock-Signature";
/// Header carrying the event type.
pub const EVENT_HEADER: &str = "X-Drydock-Event";
/// Header carrying the delivery id (the same on every retry).
pub const DELIVERY_HEADER: &str = "X-Drydock-Delivery";

/// Event types.
pub const IMAGE_UNHEALTHY: &str = "image.unhealthy";
pub const IMAGE_NEW_FINDINGS: &str = "image.new_findings";
pub const ASSESSMENT_FAILED: &str = "assessment.failed";
/// A delivery asked for by hand (`POST /api/v1/webhooks/{id}/test`):
/// no image changed.
pub const WEBHOOK_TEST: &str = "webhook.test";

/// What to tell about an assessed image, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub event: &'static str,
    /// Keys of the problems not told before (to record as told).
    pub new_keys: Vec<String>,
}

/// Only problems, never twice: nothing for a healthy image; otherwise the
/// policy-violating findings not notified before for this digest. The
/// first notification for a digest is `image.unhealthy`, later ones
/// `image.new_findings`.
pub fn decide(eval: &Evaluation<'_>, already: &HashSet<String>) -> Option<Decision> {
    if eval.health.healthy {
        return None;
    }
    let mut new_keys: Vec<String> = eval
        .judged
        .iter()
        .filter(|j| j.violates)
        .map(|j| finding_key(j.finding))
        .filter(|k| !already.contains(k))
        .collect();
    new_keys.sort();
    new_keys.dedup();
    if new_keys.is_empty() {
        return None;
    }
    let told_problems = already.iter().any(|k| !k.starts_with("failed:"));
    Some(Decision {
        event: if told_problems {
            IMAGE_NEW_FINDINGS
        } else {
            IMAGE_UNHEALTHY
        },
        new_keys,
    })
}

/// Whether a webhook wants events about `repo`. Webhooks are read from
/// the store for each notification, so the pattern is compiled here; one
/// that does not compile (stored before patterns were checked) matches
/// nothing, so no repository is told of outside its owner's scope.
pub fn webhook_applies(w: &Webhook, repo: &str) -> bool {
    w.repository
        .as_deref()
        .is_none_or(|p| oci::RepoPattern::new(p).is_ok_and(|p| p.is_match(repo)))
}

/// The findings a webhook is told about: those at or above its own minimum.
pub fn findings_for<'a>(w: &Webhook, findings: Vec<&'a Finding>) -> Vec<&'a Finding> {
    let min = w.min_severity.as_deref().and_then(Severity::parse);
    findings
        .into_iter()
        .filter(|f| min.is_none_or(|m| f.severity >= m))
        .collect()
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check a signature header value (constant time).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Delay before retry number `attempt` (1-based): base × 2^(attempt-1), at
/// most an hour, on the outbound retry policy's schedule.
pub fn backoff(base: std::time::Duration, attempt: u32) -> std::time::Duration {
    egress::RetryPolicy {
        attempts: u32::MAX,
        base_delay: base,
        max_delay: std::time::Duration::from_secs(3600),
    }
    .delay(attempt)
}

//! Continuous assessment: every image in the registry is assessed as soon
//! as it is pushed or imported, and stays assessed as the vulnerability
//! database changes.
//!
//! # Job
//! - **Intake.** [`Service::manifest_pushed`] (called by the registry's
//!   event sink after a commit) persists a job in the queue and wakes a
//!   worker; it is one SQLite upsert, so the push is not slowed down. At
//!   start, jobs interrupted by a crash are queued again and every manifest
//!   the registry holds that the assessor never saw is queued (covering a
//!   crash between the registry's commit and the enqueue).
//! - **Upload-time reads.** [`Service::blob_observer`] catalogs each layer
//!   from its upload stream while the bytes arrive, keeping the result only
//!   once the registry reports the digest verified (`service/stream.rs`);
//!   [`Service::blob_pushed`] hands each blob new to the registry that was
//!   not streamed whole to a small pool of readers that catalog it if it is
//!   a layer, before the manifest naming it arrives (`service/prefetch.rs`).
//! - **Queue.** Persistent, deduplicated by digest, with per-digest status:
//!   `queued`, `cataloging`, `matching`, `done`, `failed` (with the error),
//!   `unsupported` (artifacts that are not images: signatures, SBOMs…,
//!   judged by config media type, artifact type and layer media types).
//!   An index enqueues each platform manifest and is rolled up at read time.
//! - **Assessment.** catalog (layers read once per layer digest and catalog
//!   version, through a registry-wide SQLite layer cache) → stored inventory
//!   → match against the current database → stored findings. Usage counts
//!   the digest once, in the month of its first assessment.
//! - **Re-matching.** When the database version changes, and at least every
//!   `rescan_interval` (daily), images pushed or pulled within the window
//!   (default 30 days) are re-matched from their stored inventory (no blob is
//!   read). Others keep their results, reported `stale` with their date.
//! - **Incomplete images.** The catalog names every part of an image it
//!   could not read (a file over its cap, a malformed package database, a
//!   hostile path, a cap on packages reached); the worker stores those
//!   reasons with the inventory, and the verdict of such an image is
//!   `incomplete` (never healthy) unless a finding already makes it
//!   unhealthy. The API shows `complete: false` and the reasons.
//! - **Pull gate** ([`gate`], opt-in): the registry refuses manifest
//!   reads of images in matching repositories whose cached verdict is
//!   unhealthy, incomplete or (if configured) not yet assessed.
//! - **SBOM referrers.** After an image is assessed its CycloneDX SBOM is
//!   attached as an OCI artifact whose subject is the image, once per
//!   catalog version (`service/sbom.rs`), just after its findings are
//!   stored (never before: an attachment is a manifest push of its own);
//!   it is an artifact to the assessor, so attaching never triggers
//!   another attach.
//! - **VEX** ([`vex`], pure parsing and matching): OpenVEX and CycloneDX
//!   VEX documents from the API or pushed as referrers; `not_affected` and
//!   `fixed` take findings out of the verdict wherever findings are judged;
//!   a changed document re-matches the images it names from their stored
//!   inventories (`service/vex.rs`). A referrer is recorded with its
//!   pusher (the registry's event); with `Options::vex` `trusted` set, one
//!   pushed by anyone else is stored and listed, not applied.
//! - **Verdicts** ([`policy`], pure): health by a per-repository policy,
//!   exemptions with expiry (applied at read time, so expiry needs no job),
//!   summaries, diffs; [`remediation`] (pure): upgrade plan and base-image
//!   advice; [`notify`] (pure decision + signed delivery): webhooks only for
//!   unhealthy images and only for problems not told before per digest.
//!
//! # Invariants
//! - A job is in the database before the registry's event call returns.
//! - Re-matching never reads blobs: it reads `inventories`.
//! - Time comes from the injected [`Clock`]; registry pull times are shifted
//!   into it by [`Clock::offset`].
//! - The same (digest, vulnerability, package) problem is notified at most
//!   once; a failed assessment at most once per digest and error.
//!
//! # API
//! [`Service::open`] + [`Service::start`] (or the one-call [`start`]),
//! intake methods, and read models in [`views`] used by the REST API.

pub mod browse;
pub mod clock;
pub mod gate;
pub mod live;
pub mod notify;
pub mod policy;
pub mod ports;
pub mod remediation;
mod service;
pub mod store;
pub mod vex;
pub mod views;
pub mod vuln;

pub use clock::{Clock, ManualClock, SystemClock};
/// The type of [`Options::outbound`].
pub use egress::EgressPolicy;
pub use gate::{PullGateError, PullGateRule, VerdictGate};
pub use policy::{Exemption, Health, Policy, PolicyRule, Summary, health_status};
pub use ports::{Artifact, CatalogFailure, Cataloged, Cataloger, RegistryContent};
pub use service::{
    CATALOG_VERSION_ANNOTATION, Leads, Options, Retention, SBOM_ARTIFACT_TYPE, SPDX_ARTIFACT_TYPE,
    SbomOptions, SbomRule, Service, UploadCatalogCounts, VexAdded, WebhookConfig,
    WebhookUrlRefused, not_an_image,
};
pub use vuln::{Finding, FindingStatus, Severity, VulnDatabase, VulnSource};

pub use live::start_with_registry;

use std::sync::Arc;

/// Open the assessor and start its background tasks: the one call
/// `drydock serve` needs (besides registering it as the registry's event sink).
pub async fn start(
    opts: Options,
    source: Arc<dyn RegistryContent>,
    cataloger: Arc<dyn Cataloger>,
    vulns: Arc<dyn VulnSource>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Service> {
    let service = Service::open(opts, source, cataloger, vulns, clock)?;
    service.start().await?;
    Ok(service)
}

//! Continuous patching of Debian-based images.
//!
//! For an image (or each platform of an index) whose assessment shows
//! fixable findings in Debian packages, drydock chooses upgrades from a
//! configured, OpenPGP-signed Debian archive ([`archive`]: `InRelease`
//! verified against a keyring, every index and `.deb` verified by the
//! SHA-256 the signed chain gives), plans them with their dependencies
//! and refuses, with the reason, what cannot be done by adding files alone
//! ([`plan`]: maintainer scripts, unsatisfiable dependencies), and writes
//! one new layer on top of the image ([`layer`]: the packages' files, the
//! dpkg database brought in line, whiteouts for files the new versions
//! dropped). The new config and manifest are pushed into the same
//! repository under a patch tag (`v1-1`, `v1-2`… or `v1-patched`); the
//! original image is never modified.
//!
//! Layering: no HTTP serving and no SQL here. The archive is reached with
//! the server's outbound client policy (`egress`); images are read and
//! written through the registry's in-process API; findings come from the
//! assessor through the [`FindingsSource`] port.
//!
//! Triggers: [`Patcher::run`] (the CLI, through the API), [`Patcher::submit`]
//! with [`Patcher::job`] (`/api/v1/patches`), and [`Patcher::watch`]
//! (continuous mode: re-evaluated when the vulnerability database changes
//! or an archive's signed `Packages` indexes change; a patch is made only
//! when it clears a finding the newest patch of the same image did not).
//! Jobs outlive the process through the [`JobStore`] port; pushed patches
//! are announced through [`PatchEvents`].

pub mod archive;
pub mod control;
pub mod deb;
pub mod layer;
pub mod plan;
pub mod rootfs;
mod service;

pub use archive::{ArchiveSource, Fetcher, Index, Keyring, NoArchitecture};
pub use plan::{Fixable, Plan, PlanOptions, Refusal, Target, Upgrade};
pub use service::{
    DebianConfig, FindingsSource, INTERRUPTED, ImageStore, JobStore, JobView, Outcome, PatchConfig,
    PatchEvents, Patcher, PlatformOutcome, RepoRule, TagStyle,
};

/// Manifest annotations a patched image carries.
pub const ANNOTATION_ORIGINAL: &str = "org.drydock.patch.original";
pub const ANNOTATION_SOURCE_TAG: &str = "org.drydock.patch.source-tag";
pub const ANNOTATION_UPGRADES: &str = "org.drydock.patch.upgrades";
pub const ANNOTATION_CLEARED: &str = "org.drydock.patch.cleared";

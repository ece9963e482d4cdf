//! The OCI data model: digests, names and references, media types, and
//! manifest/index parsing and validation, platforms, and the one walk from
//! an index to its platform images ([`IndexWalk`]).
//!
//! Everything here is pure: no I/O except through the [`BlobSource`] trait,
//! which lets the cataloger read layers from wherever they live (the
//! registry's store, an OCI layout, a docker archive, a remote registry),
//! and [`layout`], the one reader of an OCI image layout directory (plain
//! file reads, no runtime).
//!
//! Invariants:
//! - A [`Digest`] is always well formed (known algorithm, hex of the right
//!   length, lower case); construct it only through [`Digest::parse`] or
//!   [`Digester::finish`].
//! - A [`Name`] and a [`Tag`] always satisfy the distribution-spec grammar.

mod digest;
mod index;
pub mod layout;
mod manifest;
mod media;
mod name;
mod pattern;
mod platform;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use index::{
    EntryKind, IndexWalk, MAX_DEPTH, MAX_INDEXES, NestedIndex, PlatformImage, REFERENCE_DIGEST,
    REFERENCE_TYPE, WalkError,
};
pub use manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, ManifestError, Platform};
pub use media::*;
pub use name::{ImageRef, Name, NameError, Reference, Tag};
pub use pattern::{NameGlob, PatternError, RepoPattern};
pub use platform::{PlatformError, PlatformFilter, PlatformSpec};

use std::io::Read;

/// Something that can hand out blobs by digest as byte streams.
///
/// Implementations must not buffer whole blobs in memory; callers verify
/// digests themselves when they need to.
pub trait BlobSource: Send + Sync {
    /// Open the blob for reading from its start.
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>>;
}

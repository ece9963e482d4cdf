//! The one walk from an index to its platform images, shared by
//! `drydock scan`, the assessor, the cataloger and import.
//!
//! It decides which entries are images, which are attestations attached to
//! an image and which are other artifacts, applies a [`PlatformFilter`],
//! and follows nested indexes. It does no I/O: the caller fetches each
//! nested index the walk asks for ([`IndexWalk::next_index`]) and hands it
//! back ([`IndexWalk::add_index`]), so the same walk serves blocking and
//! async callers.

use crate::{Descriptor, Digest, ImageIndex, PlatformFilter, media};
use std::collections::VecDeque;

/// Annotations BuildKit puts on the manifests it attaches to an image in
/// an index (attestations: provenance, SBOMs).
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// Indexes nested deeper than this are refused (the content addressing
/// rules out cycles, not depth).
pub const MAX_DEPTH: usize = 8;
/// At most this many nested indexes are followed in one walk.
pub const MAX_INDEXES: usize = 256;

/// What an entry of an index is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// An image manifest for some platform.
    Image,
    /// A nested index.
    Index,
    /// A manifest attached to an image of the same index (`of`), such as
    /// a BuildKit attestation.
    Attestation { of: Option<Digest> },
    /// Anything else: `unknown/unknown` entries, other media types.
    Other,
}

impl EntryKind {
    pub fn of(d: &Descriptor) -> EntryKind {
        if media::is_index_media_type(&d.media_type) {
            return EntryKind::Index;
        }
        if let Some(a) = &d.annotations
            && a.contains_key(REFERENCE_TYPE)
        {
            let of = a.get(REFERENCE_DIGEST).and_then(|s| Digest::parse(s).ok());
            return EntryKind::Attestation { of };
        }
        let unknown = d
            .platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown");
        match d.media_type.as_str() {
            media::OCI_MANIFEST | media::DOCKER_MANIFEST if !unknown => EntryKind::Image,
            _ => EntryKind::Other,
        }
    }
}

/// An image the walk kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    pub descriptor: Descriptor,
    /// Entries of the same index attached to this image (attestations).
    pub attestations: Vec<Descriptor>,
    /// How many indexes down it was found (0: the root index).
    pub depth: usize,
}

/// A nested index the walk needs fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedIndex {
    pub descriptor: Descriptor,
    depth: usize,
}

/// Why a walk failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error("the index has no {want} image (it has: {})", have.join(", "))]
    NoMatch { want: String, have: Vec<String> },
    #[error("index {0} nests indexes more than {MAX_DEPTH} deep")]
    TooDeep(Digest),
    #[error("the index nests more than {MAX_INDEXES} indexes")]
    TooMany,
}

/// A walk in progress from a root index to its platform images.
#[derive(Debug)]
pub struct IndexWalk {
    filter: PlatformFilter,
    pending: VecDeque<NestedIndex>,
    images: Vec<PlatformImage>,
    /// Platforms of every image seen, for the no-match message.
    have: Vec<String>,
    indexes: usize,
}

impl IndexWalk {
    pub fn new(root: &ImageIndex, filter: &PlatformFilter) -> IndexWalk {
        let mut walk = IndexWalk {
            filter: filter.clone(),
            pending: VecDeque::new(),
            images: Vec::new(),
            have: Vec::new(),
            indexes: 0,
        };
        walk.visit(&root.manifests, 0);
        walk
    }

    fn visit(&mut self, entries: &[Descriptor], depth: usize) {
        let first = self.images.len();
        for d in entries {
            match EntryKind::of(d) {
                EntryKind::Image => {
                    if let Some(p) = &d.platform {
                        let p = p.display();
                        if !self.have.contains(&p) {
                            self.have.push(p);
                        }
                    }
                    if self.filter.keeps(d.platform.as_ref()) {
                        self.images.push(PlatformImage {
                            descriptor: d.clone(),
                            attestations: Vec::new(),
                            depth,
                        });
                    }
                }
                EntryKind::Index => self.pending.push_back(NestedIndex {
                    descriptor: d.clone(),
                    depth: depth + 1,
                }),
                EntryKind::Attestation { .. } | EntryKind::Other => {}
            }
        }
        // Attestations may precede their image in the list.
        for d in entries {
            if let EntryKind::Attestation { of: Some(of) } = EntryKind::of(d)
                && let Some(img) = self.images[first..]
                    .iter_mut()
                    .find(|i| i.descriptor.digest == of)
            {
                img.attestations.push(d.clone());
            }
        }
    }

    /// Images kept so far.
    pub fn images(&self) -> &[PlatformImage] {
        &self.images
    }

    /// The next nested index to fetch and hand to [`IndexWalk::add_index`];
    /// `None` when the walk is complete. A caller that does not descend
    /// (it handles nested indexes another way) may just drain these.
    pub fn next_index(&mut self) -> Option<NestedIndex> {
        self.pending.pop_front()
    }

    /// Continue the walk into a nested index that was fetched.
    pub fn add_index(&mut self, nested: NestedIndex, index: &ImageIndex) -> Result<(), WalkError> {
        if nested.depth > MAX_DEPTH {
            return Err(WalkError::TooDeep(nested.descriptor.digest));
        }
        self.indexes += 1;
        if self.indexes > MAX_INDEXES {
            return Err(WalkError::TooMany);
        }
        self.visit(&index.manifests, nested.depth);
        Ok(())
    }

    /// The images kept. Fails when a platform asked for matched nothing,
    /// naming the platforms the index has.
    pub fn finish(self) -> Result<Vec<PlatformImage>, WalkError> {
        for spec in self.filter.specs() {
            let found = self.images.iter().any(|i| {
                i.descriptor
                    .platform
                    .as_ref()
                    .is_some_and(|p| spec.matches(p))
            });
            if !found {
                return Err(WalkError::NoMatch {
                    want: spec.to_string(),
                    have: self.have,
                });
            }
        }
        Ok(self.images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Platform;
    use std::collections::BTreeMap;

    fn desc(n: u8, media_type: &str, platform: Option<&str>, attests: Option<u8>) -> Descriptor {
        let mut annotations = BTreeMap::new();
        if let Some(t) = attests {
            annotations.insert(REFERENCE_TYPE.into(), "attestation-manifest".into());
            annotations.insert(REFERENCE_DIGEST.into(), Digest::sha256_of(&[t]).to_string());
        }
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::sha256_of(&[n]),
            size: 1,
            urls: None,
            annotations: (!annotations.is_empty()).then_some(annotations),
            platform: platform.map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                Platform {
                    architecture: parts[1].into(),
                    os: parts[0].into(),
                    os_version: None,
                    os_features: None,
                    variant: parts.get(2).map(|v| v.to_string()),
                }
            }),
            artifact_type: None,
            data: None,
        }
    }

    fn index(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: None,
        }
    }

    fn root() -> ImageIndex {
        index(vec![
            desc(9, media::OCI_MANIFEST, Some("unknown/unknown"), Some(2)),
            desc(1, media::OCI_MANIFEST, Some("linux/amd64"), None),
            desc(2, media::DOCKER_MANIFEST, Some("linux/arm64/v8"), None),
            desc(3, media::OCI_MANIFEST, Some("unknown/unknown"), Some(1)),
            desc(4, media::OCI_MANIFEST, Some("unknown/unknown"), None),
            desc(5, "application/vnd.example+json", Some("linux/amd64"), None),
            desc(6, media::OCI_INDEX, None, None),
        ])
    }

    fn walk_all(
        filter: &[&str],
        nested: &dyn Fn(&Descriptor) -> ImageIndex,
    ) -> Result<Vec<PlatformImage>, WalkError> {
        let mut w = IndexWalk::new(&root(), &PlatformFilter::parse(filter).unwrap());
        while let Some(n) = w.next_index() {
            let i = nested(&n.descriptor);
            w.add_index(n, &i)?;
        }
        w.finish()
    }

    #[test]
    fn kinds() {
        let r = root();
        let kinds: Vec<EntryKind> = r.manifests.iter().map(EntryKind::of).collect();
        assert_eq!(
            kinds,
            vec![
                EntryKind::Attestation {
                    of: Some(Digest::sha256_of(&[2]))
                },
                EntryKind::Image,
                EntryKind::Image,
                EntryKind::Attestation {
                    of: Some(Digest::sha256_of(&[1]))
                },
                EntryKind::Other,
                EntryKind::Other,
                EntryKind::Index,
            ]
        );
    }

    #[test]
    fn selects_platforms_with_their_attestations_across_nested_indexes() {
        let nested = |d: &Descriptor| {
            assert_eq!(d.digest, Digest::sha256_of(&[6]));
            index(vec![
                desc(7, media::OCI_MANIFEST, Some("linux/arm/v7"), None),
                desc(8, media::OCI_MANIFEST, Some("linux/s390x"), None),
            ])
        };
        let all = walk_all(&[], &nested).unwrap();
        let digests: Vec<Digest> = all.iter().map(|i| i.descriptor.digest.clone()).collect();
        let want: Vec<Digest> = [1u8, 2, 7, 8]
            .iter()
            .map(|n| Digest::sha256_of(&[*n]))
            .collect();
        assert_eq!(digests, want);
        assert_eq!(all[0].attestations[0].digest, Digest::sha256_of(&[3]));
        assert_eq!(all[1].attestations[0].digest, Digest::sha256_of(&[9]));
        assert_eq!((all[1].depth, all[2].depth), (0, 1));

        let arm64 = walk_all(&["linux/arm64"], &nested).unwrap();
        assert_eq!(arm64.len(), 1);
        assert_eq!(arm64[0].descriptor.digest, Digest::sha256_of(&[2]));
        let arm = walk_all(&["linux/arm"], &nested).unwrap();
        assert_eq!(arm[0].descriptor.digest, Digest::sha256_of(&[7]));
        assert_eq!(
            walk_all(&["linux/amd64,linux/arm/v7"], &nested)
                .unwrap()
                .len(),
            2
        );

        let e = walk_all(&["linux/arm64/v9"], &nested).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the index has no linux/arm64/v9 image (it has: linux/amd64, linux/arm64/v8, linux/arm/v7, linux/s390x)"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut w = IndexWalk::new(&root(), &PlatformFilter::all());
        let deeper = index(vec![desc(6, media::OCI_INDEX, None, None)]);
        let mut steps = 0;
        let err = loop {
            let n = w.next_index().expect("always one more");
            if let Err(e) = w.add_index(n, &deeper) {
                break e;
            }
            steps += 1;
        };
        assert_eq!(steps, MAX_DEPTH);
        assert_eq!(err, WalkError::TooDeep(Digest::sha256_of(&[6])));
    }
}

//! In-process listings: repositories, tags, manifests, recent pulls and
//! pushes. A database failure is an error (logged with its cause), never
//! an empty list: callers must not mistake a broken database for an empty
//! registry.

use crate::{ManifestInfo, Registry, RegistryError, from_nanos, nanos};
use oci::{Digest, Name, Tag};
use storage::block_on;
use time::OffsetDateTime;

impl Registry {
    /// All repositories, in lexical order.
    pub fn repositories(&self) -> Result<Vec<Name>, RegistryError> {
        Ok(block_on(self.inner.store.meta.repositories(None, None))?
            .into_iter()
            .filter_map(|n| Name::parse(&n).ok())
            .collect())
    }

    /// A repository's tags, in lexical order.
    pub fn tags(&self, repo: &Name) -> Result<Vec<(Tag, Digest)>, RegistryError> {
        Ok(
            block_on(self.inner.store.meta.tags(repo.as_str(), None, None))?
                .into_iter()
                .filter_map(|(t, d)| Tag::parse(&t).ok().map(|t| (t, d)))
                .collect(),
        )
    }

    /// A repository's manifests, newest first.
    pub fn manifests(&self, repo: &Name) -> Result<Vec<ManifestInfo>, RegistryError> {
        Ok(block_on(self.inner.store.meta.manifests(repo.as_str()))?
            .into_iter()
            .map(|m| ManifestInfo {
                digest: m.digest,
                media_type: m.media_type,
                size: m.size,
                pushed_at: from_nanos(m.pushed_at),
                tags: m.tags.iter().filter_map(|t| Tag::parse(t).ok()).collect(),
            })
            .collect())
    }

    /// Manifests pulled since `since`, with the last pull time.
    pub fn recent_pulls(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(Name, Digest, OffsetDateTime)>, RegistryError> {
        self.inner.flush_pulls();
        Ok(block_on(self.inner.store.meta.recent_pulls(nanos(since)))?
            .into_iter()
            .filter_map(|(r, d, t)| Name::parse(&r).ok().map(|r| (r, d, from_nanos(t))))
            .collect())
    }

    /// Manifests pushed (or imported) since `since`.
    pub fn recent_pushes(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(Name, Digest, OffsetDateTime)>, RegistryError> {
        Ok(block_on(self.inner.store.meta.recent_pushes(nanos(since)))?
            .into_iter()
            .filter_map(|(r, d, t)| Name::parse(&r).ok().map(|r| (r, d, from_nanos(t))))
            .collect())
    }
}

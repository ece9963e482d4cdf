//! The real neighbours: [`RegistryContent`] for `registry::Registry`,
//! [`Cataloger`] over `catalog::catalog_image` with the store as the
//! registry-wide layer cache, [`VulnSource`] for `vulndb::Handle`, and the
//! registry's `EventSink` for [`Service`].

use crate::ports::{CatalogFailure, Cataloged, Cataloger, RegistryContent};
use crate::service::Service;
use crate::vuln::{Finding, VulnDatabase, VulnSource};
use catalog::{LayerCache, LayerInventory};
use inventory::Inventory;
use oci::{BlobSource, Digest, ImageManifest, Name, Reference, Tag};
use std::sync::Arc;
use time::OffsetDateTime;

/// The registry as the assessor's [`RegistryContent`].
#[derive(Clone)]
pub struct RegistrySource(pub registry::Registry);

impl RegistryContent for RegistrySource {
    fn manifest(&self, repo: &Name, digest: &Digest) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        let reference = Reference::Digest(digest.clone());
        let fut = self.0.get_manifest(repo, &reference);
        // The registry's lookup does no real waiting, but the port is sync
        // and its callers run anywhere: on a blocking thread, or (the patch
        // watcher reading an image view, whose judging reads platform
        // sizes) on a worker of the multi-thread runtime, where a bare
        // `block_on` panics; `block_in_place` hands the worker's other
        // tasks on first.
        let m = match tokio::runtime::Handle::try_current() {
            Ok(h) => match h.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => h.block_on(fut),
                _ => tokio::task::block_in_place(|| h.block_on(fut)),
            },
            Err(_) => futures_lite_block_on(fut),
        }?;
        Ok(m.map(|m| (m.bytes.to_vec(), m.media_type)))
    }

    fn blob_source(&self) -> Arc<dyn BlobSource> {
        self.0.blob_source()
    }

    fn repositories(&self) -> anyhow::Result<Vec<Name>> {
        Ok(self.0.repositories()?)
    }

    fn tags(&self, repo: &Name) -> anyhow::Result<Vec<(Tag, Digest)>> {
        Ok(self.0.tags(repo)?)
    }

    fn manifests(&self, repo: &Name) -> anyhow::Result<Vec<(Digest, String)>> {
        Ok(self
            .0
            .manifests(repo)?
            .into_iter()
            .map(|m| (m.digest, m.media_type))
            .collect())
    }

    fn recent_pulls(&self, since: OffsetDateTime) -> Vec<(Name, Digest, OffsetDateTime)> {
        // The port has no error: pull times are not updated this round
        // (the registry logged the cause); nothing is forgotten.
        self.0.recent_pulls(since).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the pull record");
            Vec::new()
        })
    }

    fn attach(&self, repo: &Name, artifact: &crate::ports::Artifact) -> anyhow::Result<Digest> {
        let (manifest, layer) = artifact.manifest();
        let digest = Digest::sha256_of(&manifest);
        let reg = self.0.clone();
        let repo = repo.clone();
        let bytes = artifact.bytes.clone();
        // Through the in-process API, as an import: the referrers index and
        // the events are the registry's own; no client quota applies.
        let fut = async move {
            let config = Digest::sha256_of(crate::ports::EMPTY_CONFIG);
            reg.put_blob(&repo, &config, crate::ports::EMPTY_CONFIG)
                .await?;
            reg.put_blob(&repo, &layer, bytes.as_slice()).await?;
            reg.put_manifest(
                &repo,
                &Reference::Digest(digest.clone()),
                manifest.into(),
                Some(oci::OCI_MANIFEST),
                registry::Origin::Import,
            )
            .await
        };
        let d = match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(fut),
            Err(_) => futures_lite_block_on(fut),
        }?;
        Ok(d)
    }

    fn delete_manifest(&self, repo: &Name, digest: &Digest) -> anyhow::Result<()> {
        Ok(self.0.delete_manifest(repo, digest)?)
    }
}

/// Minimal executor for a future that never waits (no runtime present).
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(fut)
}

/// The cataloger, with limits.
#[derive(Debug, Clone, Default)]
pub struct CatalogCataloger {
    pub limits: catalog::Limits,
}

impl Cataloger for CatalogCataloger {
    fn version(&self) -> u32 {
        catalog::CATALOG_VERSION
    }

    fn catalog(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<Inventory, CatalogFailure> {
        self.catalog_image(source, manifest, cache)
            .map(|c| c.inventory)
    }

    fn catalog_image(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        cache: &dyn LayerCache,
    ) -> Result<Cataloged, CatalogFailure> {
        let image = catalog::catalog_image(source, manifest, cache, &self.limits)?;
        Ok(Cataloged {
            incomplete: image.reasons(),
            inventory: image.inventory,
        })
    }

    fn prefetch_layer(
        &self,
        source: &dyn BlobSource,
        layer: &Digest,
        cache: &dyn LayerCache,
    ) -> bool {
        use std::io::Read;
        if catalog::cached_layer(cache, layer, &self.limits).is_some() {
            return false;
        }
        let Ok(mut reader) = source.open_blob(layer) else {
            return false;
        };
        let mut head = Vec::with_capacity(catalog::SNIFF_LEN);
        if (&mut reader)
            .take(catalog::SNIFF_LEN as u64)
            .read_to_end(&mut head)
            .is_err()
        {
            return false;
        }
        let Some(compression) = catalog::sniff_layer(&head) else {
            return false; // a config, or some other non-layer blob
        };
        let stream = std::io::Cursor::new(head).chain(reader);
        match catalog::catalog_layer(stream, compression, layer, &self.limits) {
            Ok(inv) => {
                cache.put(layer, catalog::CATALOG_VERSION, &inv);
                true
            }
            Err(e) => {
                tracing::debug!(%layer, error = %e, "blob not cataloged on upload");
                false
            }
        }
    }

    fn catalog_upload(
        &self,
        reader: &mut dyn std::io::Read,
        placeholder: &Digest,
    ) -> Option<LayerInventory> {
        use std::io::Read;
        let mut head = Vec::with_capacity(catalog::SNIFF_LEN);
        (&mut *reader)
            .take(catalog::SNIFF_LEN as u64)
            .read_to_end(&mut head)
            .ok()?;
        let compression = catalog::sniff_layer(&head)?;
        let stream = std::io::Cursor::new(head).chain(reader);
        // The registry verifies the digest; the placeholder would not match.
        let limits = catalog::Limits {
            verify_digest: false,
            ..self.limits.clone()
        };
        match catalog::catalog_layer(stream, compression, placeholder, &limits) {
            Ok(inv) => Some(inv),
            Err(e) => {
                tracing::debug!(error = %e, "upload not cataloged from its stream");
                None
            }
        }
    }
}

impl VulnDatabase for vulndb::Database {
    fn version(&self) -> String {
        vulndb::Database::version(self).to_string()
    }
    fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        vulndb::Database::match_inventory(self, inventory)
    }
    fn status(&self) -> serde_json::Value {
        serde_json::to_value(vulndb::Database::status(self)).unwrap_or_default()
    }
}

/// The vulnerability database handle as a [`VulnSource`].
#[derive(Clone)]
pub struct HandleSource(pub vulndb::Handle);

impl VulnSource for HandleSource {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        self.0.current().map(|d| d as Arc<dyn VulnDatabase>)
    }
}

impl registry::EventSink for Service {
    fn on_event(&self, event: &registry::Event) {
        match event {
            registry::Event::ManifestPushed {
                repo,
                digest,
                media_type,
                tags,
                pusher,
                ..
            } => self.manifest_pushed_by(
                repo.as_str(),
                &digest.to_string(),
                media_type,
                &tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                pusher.as_ref().map(|i| match i {
                    auth::Identity::Unrestricted => crate::vex::Pusher::Unrestricted,
                    auth::Identity::Anonymous => crate::vex::Pusher::Anonymous,
                    auth::Identity::User { name, groups } => crate::vex::Pusher::User {
                        name: name.clone(),
                        groups: groups.clone(),
                    },
                    auth::Identity::Robot { name } => {
                        crate::vex::Pusher::Robot { name: name.clone() }
                    }
                }),
            ),
            registry::Event::ManifestDeleted { repo, digest } => {
                self.manifest_deleted(repo.as_str(), &digest.to_string())
            }
            registry::Event::TagDeleted { .. } => {}
            registry::Event::BlobPushed { digest, .. } => self.blob_pushed(digest),
        }
    }
}

/// Everything `drydock serve` needs: open the assessor over the registry,
/// the catalog and the vulnerability database handle, start it, and
/// register it as the registry's event sink.
///
/// Layers are read without checking their digest again
/// ([`catalog::Limits::verify_digest`] is turned off): the registry's blob
/// store verified each one before committing it, and the second hash would
/// be most of the cost of reading an incompressible layer.
pub async fn start_with_registry(
    opts: crate::Options,
    registry: registry::Registry,
    vulndb: vulndb::Handle,
    limits: catalog::Limits,
    clock: Arc<dyn crate::Clock>,
) -> anyhow::Result<Service> {
    let limits = catalog::Limits {
        verify_digest: false,
        ..limits
    };
    let service = Service::open(
        opts,
        Arc::new(RegistrySource(registry.clone())),
        Arc::new(CatalogCataloger { limits }),
        Arc::new(HandleSource(vulndb)),
        clock,
    )?;
    // Register the sink before the startup scan so no push falls between.
    registry.add_sink(Arc::new(service.clone()));
    registry.set_blob_observer(service.blob_observer());
    registry.register_metrics(service.metrics())?;
    service.start().await?;
    Ok(service)
}

//! The layers of a platform image: sizes, the build steps from the
//! config's history, and the packages each layer adds.

use super::{MAX_PAGE, PageError, cursor_for, parse_cursor};
use crate::service::Service;
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// Packages listed per layer in [`LayersPage`]; the rest are counted.
pub const LAYER_PACKAGES: usize = 200;
/// The largest image config read for its history (configs are a few kB;
/// a bigger one is not read, and its layers show no command).
const MAX_CONFIG: u64 = 4 << 20;

/// A package a layer adds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayerPackage {
    pub name: String,
    pub version: String,
    pub ecosystem: String,
    pub purl: String,
}

/// One layer of an image: its size, the build step that made it and the
/// packages it adds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayerView {
    /// Position in the manifest, from 0 (the bottom layer).
    pub index: usize,
    pub digest: String,
    pub media_type: String,
    /// Compressed size, as the manifest gives it.
    pub size: u64,
    /// The config history's `created_by` of this layer (the build command).
    pub created_by: Option<String>,
    pub created: Option<String>,
    pub comment: Option<String>,
    /// How many packages of the stored inventory this layer introduced;
    /// `None` while the image has no stored inventory.
    pub packages_total: Option<usize>,
    /// The first [`LAYER_PACKAGES`] of them.
    pub packages: Vec<LayerPackage>,
}

/// A page of an image's layers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayersPage {
    pub digest: String,
    /// Layers in the image.
    pub total: usize,
    pub layers: Vec<LayerView>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Why commands or packages are missing, when they are (no history in
    /// the config, a history that does not match the layers, not cataloged
    /// yet).
    pub notes: Vec<String>,
}

/// The `created_by`, `created` and `comment` of each layer, from an image
/// config's `history`: the entries marked `empty_layer` (ENV, CMD, …)
/// made no layer and are skipped; the others match the layers in order.
/// `None` when the history does not have one entry per layer, since a
/// guess would name the wrong command.
pub fn layer_history(
    config: &serde_json::Value,
    layers: usize,
) -> Option<Vec<[Option<String>; 3]>> {
    let history = config.get("history")?.as_array()?;
    let text = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_str()).map(String::from);
    let steps: Vec<[Option<String>; 3]> = history
        .iter()
        .filter(|e| {
            !e.get("empty_layer")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        })
        .map(|e| {
            [
                text(e, "created_by"),
                text(e, "created"),
                text(e, "comment"),
            ]
        })
        .collect();
    (steps.len() == layers).then_some(steps)
}

impl Service {
    /// One page of the layers of a platform image: size and media type
    /// from the manifest, the command from the config's history, and the
    /// packages each layer introduced from the stored inventory (no layer
    /// is read). `Ok(None)` when the digest is unknown.
    pub fn image_layers(
        &self,
        digest: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<LayersPage>, PageError> {
        let Some(row) = self.store().image(digest)? else {
            return Ok(None);
        };
        let start = match cursor {
            Some(c) => parse_cursor(c, digest)?,
            None => 0,
        };
        let mut page = LayersPage {
            digest: digest.to_string(),
            total: 0,
            layers: Vec::new(),
            next_cursor: None,
            notes: Vec::new(),
        };
        if row.kind != "image" {
            page.notes.push(match row.kind.as_str() {
                "index" => "an index has no layers of its own: each platform image has them".into(),
                "unknown" => "not looked at yet: the layers are listed once the assessor has read the manifest (within seconds of a push)".into(),
                k => format!("a manifest of kind {k} has no image layers"),
            });
            return Ok(Some(page));
        }
        let repo = oci::Name::parse(&row.repo).map_err(|e| anyhow::anyhow!("{e}"))?;
        let d = oci::Digest::parse(digest).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some((bytes, _)) = self.source().manifest(&repo, &d)? else {
            page.notes
                .push("the manifest is no longer in the registry".into());
            return Ok(Some(page));
        };
        let manifest: oci::ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("the manifest does not parse: {e}"))?;
        let history = self.config_history(&manifest, &mut page.notes);
        let inventory = self.store().inventory(digest)?.map(|(_, i)| i);
        if inventory.is_none() {
            page.notes
                .push("not cataloged yet: the packages of each layer are not known".into());
        }
        let mut by_layer: HashMap<&str, Vec<&inventory::Package>> = HashMap::new();
        for p in inventory.iter().flat_map(|i| &i.packages) {
            by_layer.entry(p.layer.as_str()).or_default().push(p);
        }
        page.total = manifest.layers.len();
        let end = start
            .saturating_add(limit.clamp(1, MAX_PAGE))
            .min(page.total);
        for (i, l) in manifest.layers.iter().enumerate().take(end).skip(start) {
            let [created_by, created, comment] = history
                .as_ref()
                .and_then(|h| h.get(i).cloned())
                .unwrap_or_default();
            let added = by_layer
                .get(l.digest.to_string().as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            page.layers.push(LayerView {
                index: i,
                digest: l.digest.to_string(),
                media_type: l.media_type.clone(),
                size: l.size,
                created_by,
                created,
                comment,
                packages_total: inventory.as_ref().map(|_| added.len()),
                packages: added
                    .iter()
                    .take(LAYER_PACKAGES)
                    .map(|p| LayerPackage {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        ecosystem: p.ecosystem.as_str().to_string(),
                        purl: p.purl.clone(),
                    })
                    .collect(),
            });
        }
        page.next_cursor = (end < page.total).then(|| cursor_for(end, digest));
        Ok(Some(page))
    }

    /// The per-layer history of an image's config, or `None` with a note
    /// saying why there is none.
    fn config_history(
        &self,
        manifest: &oci::ImageManifest,
        notes: &mut Vec<String>,
    ) -> Option<Vec<[Option<String>; 3]>> {
        use std::io::Read;
        if manifest.config.size > MAX_CONFIG {
            notes.push(format!(
                "the image config is {} bytes; configs over {MAX_CONFIG} are not read",
                manifest.config.size
            ));
            return None;
        }
        let config: Option<serde_json::Value> = (|| {
            let mut buf = Vec::new();
            self.source()
                .blob_source()
                .open_blob(&manifest.config.digest)
                .ok()?
                .take(MAX_CONFIG)
                .read_to_end(&mut buf)
                .ok()?;
            serde_json::from_slice(&buf).ok()
        })();
        let Some(config) = config else {
            notes.push("the image config cannot be read".into());
            return None;
        };
        let found = layer_history(&config, manifest.layers.len());
        if found.is_none() {
            notes.push(
                "the config's history does not list one step per layer, so no command is shown"
                    .into(),
            );
        }
        found
    }
}

#[cfg(test)]
mod layer_tests {
    use super::layer_history;
    use serde_json::json;

    #[test]
    fn empty_layer_steps_are_skipped_and_the_rest_match_layers_in_order() {
        let config = json!({"history": [
            {"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
            {"created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": true},
            {"created_by": "RUN apt-get install -y curl", "created": "2024-01-01T00:00:00Z"},
            {"created_by": "ENV A=b", "empty_layer": true},
            {"created_by": "COPY app /app", "comment": "buildkit", "empty_layer": false},
        ]});
        let h = layer_history(&config, 3).unwrap();
        let cmds: Vec<_> = h.iter().map(|s| s[0].as_deref().unwrap()).collect();
        assert_eq!(
            cmds,
            [
                "/bin/sh -c #(nop) ADD file:abc in /",
                "RUN apt-get install -y curl",
                "COPY app /app"
            ]
        );
        assert_eq!(h[1][1].as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(h[2][2].as_deref(), Some("buildkit"));
        // Not one step per layer: no guess.
        assert!(layer_history(&config, 4).is_none());
        assert!(layer_history(&json!({}), 1).is_none());
    }
}

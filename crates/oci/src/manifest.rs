use crate::{Digest, media};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`, the form `--platform` flags use.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest of either kind, with the media type it is served as.
// Parsed once per push or catalog run; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image {
        media_type: String,
        manifest: ImageManifest,
    },
    Index {
        media_type: String,
        index: ImageIndex,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest")]
    Schema1,
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest is invalid: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

impl Manifest {
    /// Parse and validate a manifest body. `content_type` is the request's
    /// `Content-Type`, if any. The media type is the body's `mediaType` when
    /// present (it must then agree with a manifest `content_type`), else the
    /// content type, else inferred from the body's shape.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        if matches!(
            content_type,
            Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
        ) {
            return Err(ManifestError::Schema1);
        }
        let probe: Probe =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        if matches!(
            probe.media_type.as_deref(),
            Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
        ) || probe.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1)
        {
            return Err(ManifestError::Schema1);
        }
        match probe.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(2) => {}
            _ => return Err(invalid("schemaVersion must be 2")),
        }
        if let (Some(body_type), Some(ct)) = (&probe.media_type, content_type)
            && media::is_manifest_media_type(ct)
            && body_type != ct
        {
            return Err(invalid(format!(
                "mediaType {body_type:?} does not match Content-Type {ct:?}"
            )));
        }
        let media_type = match (&probe.media_type, content_type) {
            (Some(m), _) => m.clone(),
            (None, Some(ct)) if ct != "application/json" && ct != "application/octet-stream" => {
                ct.to_string()
            }
            _ if probe.manifests.is_some() => media::OCI_INDEX.to_string(),
            _ => media::OCI_MANIFEST.to_string(),
        };
        let is_index = match media_type.as_str() {
            media::OCI_INDEX | media::DOCKER_MANIFEST_LIST => true,
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => false,
            // An artifact media type: judge by shape.
            _ => probe.manifests.is_some() && probe.config.is_none(),
        };
        if is_index {
            let index: ImageIndex =
                serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
            validate_index(&media_type, &index)?;
            Ok(Manifest::Index { media_type, index })
        } else {
            let manifest: ImageManifest =
                serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
            validate_image(&media_type, &manifest)?;
            Ok(Manifest::Image {
                media_type,
                manifest,
            })
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image { media_type, .. } | Manifest::Index { media_type, .. } => media_type,
        }
    }

    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Manifest::Image { manifest, .. } => manifest.subject.as_ref(),
            Manifest::Index { index, .. } => index.subject.as_ref(),
        }
    }

    /// The artifact type the referrers API reports: `artifactType`, else for
    /// an image manifest the config's media type.
    pub fn artifact_type(&self) -> Option<&str> {
        match self {
            Manifest::Image { manifest, .. } => manifest
                .artifact_type
                .as_deref()
                .or(Some(manifest.config.media_type.as_str())),
            Manifest::Index { index, .. } => index.artifact_type.as_deref(),
        }
    }

    pub fn annotations(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Manifest::Image { manifest, .. } => manifest.annotations.as_ref(),
            Manifest::Index { index, .. } => index.annotations.as_ref(),
        }
    }

    /// Blobs this manifest needs present (config and layers), in order.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Image { manifest, .. } => std::iter::once(&manifest.config)
                .chain(manifest.layers.iter())
                .collect(),
            Manifest::Index { .. } => Vec::new(),
        }
    }

    /// Child manifests this manifest needs present (index entries).
    pub fn children(&self) -> &[Descriptor] {
        match self {
            Manifest::Image { .. } => &[],
            Manifest::Index { index, .. } => &index.manifests,
        }
    }

    pub fn is_index(&self) -> bool {
        matches!(self, Manifest::Index { .. })
    }
}

fn validate_descriptor(what: &str, d: &Descriptor) -> Result<(), ManifestError> {
    if !valid_media_type(&d.media_type) {
        return Err(invalid(format!(
            "{what}: mediaType {:?} is not a valid media type",
            d.media_type
        )));
    }
    if let Some(a) = &d.artifact_type
        && !valid_media_type(a)
    {
        return Err(invalid(format!(
            "{what}: artifactType {a:?} is not a valid media type"
        )));
    }
    Ok(())
}

/// RFC 6838 `type/subtype` with restricted-name characters (and parameters).
fn valid_media_type(m: &str) -> bool {
    let m = m.split(';').next().unwrap_or("");
    let restricted = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(m.split_once('/'), Some((t, s)) if restricted(t) && restricted(s))
}

fn validate_image(media_type: &str, m: &ImageManifest) -> Result<(), ManifestError> {
    validate_descriptor("config", &m.config)?;
    for (i, l) in m.layers.iter().enumerate() {
        validate_descriptor(&format!("layers[{i}]"), l)?;
    }
    if let Some(s) = &m.subject {
        validate_descriptor("subject", s)?;
    }
    // No minimum layer count for Docker manifests: `FROM scratch` with
    // only metadata builds an image with none, and clients push it.
    if media_type == media::DOCKER_MANIFEST && m.config.media_type != media::DOCKER_CONFIG {
        return Err(invalid(format!(
            "a Docker schema 2 manifest's config must be {}, not {:?}",
            media::DOCKER_CONFIG,
            m.config.media_type
        )));
    }
    if let Some(a) = &m.artifact_type
        && !valid_media_type(a)
    {
        return Err(invalid(format!(
            "artifactType {a:?} is not a valid media type"
        )));
    }
    Ok(())
}

fn validate_index(media_type: &str, idx: &ImageIndex) -> Result<(), ManifestError> {
    for (i, d) in idx.manifests.iter().enumerate() {
        validate_descriptor(&format!("manifests[{i}]"), d)?;
        if media_type == media::DOCKER_MANIFEST_LIST
            && !matches!(
                d.media_type.as_str(),
                media::DOCKER_MANIFEST | media::OCI_MANIFEST
            )
        {
            return Err(invalid(format!(
                "manifests[{i}]: a manifest list may only list image manifests, not {:?}",
                d.media_type
            )));
        }
    }
    if let Some(s) = &idx.subject {
        validate_descriptor("subject", s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(media_type: &str, config_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","digest":"{D}","size":2}},"layers":[{{"mediaType":"{}","digest":"{D}","size":0}}]}}"#,
            media::OCI_LAYER_GZIP
        )
    }

    #[test]
    fn parses_oci_and_docker_images() {
        let m = Manifest::parse(
            image(media::OCI_MANIFEST, media::OCI_CONFIG).as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(m.media_type(), media::OCI_MANIFEST);
        assert_eq!(m.blobs().len(), 2);
        let m = Manifest::parse(
            image(media::DOCKER_MANIFEST, media::DOCKER_CONFIG).as_bytes(),
            Some(media::DOCKER_MANIFEST),
        )
        .unwrap();
        assert_eq!(m.artifact_type(), Some(media::DOCKER_CONFIG));
        // `FROM scratch` with only metadata: no layers at all.
        let scratch = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":2}},"layers":[]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG
        );
        let m = Manifest::parse(scratch.as_bytes(), None).unwrap();
        assert_eq!(m.blobs().len(), 1);
    }

    #[test]
    fn rejects_schema1_and_mismatches() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(
            Manifest::parse(s1.as_bytes(), None),
            Err(ManifestError::Schema1)
        );
        assert_eq!(
            Manifest::parse(b"{}", Some(media::DOCKER_SCHEMA1_SIGNED)),
            Err(ManifestError::Schema1)
        );
        let oci = image(media::OCI_MANIFEST, media::OCI_CONFIG);
        assert!(matches!(
            Manifest::parse(oci.as_bytes(), Some(media::DOCKER_MANIFEST)),
            Err(ManifestError::Invalid(_))
        ));
        let bad_config = image(media::DOCKER_MANIFEST, media::OCI_CONFIG);
        assert!(Manifest::parse(bad_config.as_bytes(), None).is_err());
        assert!(matches!(
            Manifest::parse(b"not json", None),
            Err(ManifestError::Json(_))
        ));
        let missing_config = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert!(Manifest::parse(missing_config.as_bytes(), None).is_err());
    }

    #[test]
    fn parses_index_with_platforms() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D}","size":10,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert!(m.is_index());
        assert_eq!(
            m.children()[0].platform.as_ref().unwrap().display(),
            "linux/arm64/v8"
        );
    }
}

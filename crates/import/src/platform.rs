//! `--platform os/arch[/variant]` selection from an index.

use oci::{Descriptor, Platform};

/// Which platforms of an index to keep; empty keeps all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformFilter(Vec<(String, String, Option<String>)>);

/// Annotations BuildKit puts on attestation manifests in an index.
const REF_TYPE: &str = "vnd.docker.reference.type";
const REF_DIGEST: &str = "vnd.docker.reference.digest";

impl PlatformFilter {
    /// Parse `os/arch[/variant]` entries (comma-separated lists allowed).
    pub fn parse(items: &[String]) -> Result<PlatformFilter, String> {
        let mut out = Vec::new();
        for item in items.iter().flat_map(|s| s.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let parts: Vec<&str> = item.split('/').collect();
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            };
            match parts.as_slice() {
                [os, arch] if ok(os) && ok(arch) => {
                    out.push((os.to_string(), arch.to_string(), None))
                }
                [os, arch, v] if ok(os) && ok(arch) && ok(v) => {
                    out.push((os.to_string(), arch.to_string(), Some(v.to_string())))
                }
                _ => {
                    return Err(format!(
                        "platform {item:?} is not os/arch[/variant] (e.g. linux/arm64/v8)"
                    ));
                }
            }
        }
        Ok(PlatformFilter(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn matches(&self, p: &Platform) -> bool {
        self.0.iter().any(|(os, arch, variant)| {
            *os == p.os
                && *arch == p.architecture
                && variant
                    .as_ref()
                    .is_none_or(|v| p.variant.as_ref() == Some(v))
        })
    }

    /// The entries of an index to keep: those whose platform matches, plus
    /// attestations attached to a kept entry. Errors when a requested
    /// platform matches nothing (listing what the index has).
    pub fn select(&self, entries: &[Descriptor]) -> Result<Vec<Descriptor>, String> {
        if self.is_empty() {
            return Ok(entries.to_vec());
        }
        for want in &self.0 {
            let one = PlatformFilter(vec![want.clone()]);
            if !entries
                .iter()
                .any(|d| d.platform.as_ref().is_some_and(|p| one.matches(p)))
            {
                let have: Vec<String> = entries
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .filter(|p| p.os != "unknown")
                    .map(Platform::display)
                    .collect();
                let want = match &want.2 {
                    Some(v) => format!("{}/{}/{v}", want.0, want.1),
                    None => format!("{}/{}", want.0, want.1),
                };
                return Err(format!(
                    "the index has no {want} image (it has: {})",
                    have.join(", ")
                ));
            }
        }
        let kept: Vec<&Descriptor> = entries
            .iter()
            .filter(|d| {
                d.platform.as_ref().is_some_and(|p| self.matches(p))
                    && !d
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(REF_TYPE))
            })
            .collect();
        let mut out: Vec<Descriptor> = Vec::new();
        for d in entries {
            let keep = kept.iter().any(|k| k.digest == d.digest)
                || d.annotations.as_ref().is_some_and(|a| {
                    a.contains_key(REF_TYPE)
                        && a.get(REF_DIGEST)
                            .is_some_and(|t| kept.iter().any(|k| k.digest.to_string() == *t))
                });
            if keep {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    /// How many image (non-attestation) entries `select` kept.
    pub fn images(selected: &[Descriptor]) -> usize {
        selected
            .iter()
            .filter(|d| {
                !d.annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(REF_TYPE))
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(
        n: u8,
        platform: Option<(&str, &str, Option<&str>)>,
        attests: Option<u8>,
    ) -> Descriptor {
        let d = oci::Digest::sha256_of(&[n]);
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(t) = attests {
            annotations.insert(REF_TYPE.to_string(), "attestation-manifest".to_string());
            annotations.insert(
                REF_DIGEST.to_string(),
                oci::Digest::sha256_of(&[t]).to_string(),
            );
        }
        Descriptor {
            media_type: oci::OCI_MANIFEST.into(),
            digest: d,
            size: 1,
            urls: None,
            annotations: (!annotations.is_empty()).then_some(annotations),
            platform: platform.map(|(os, arch, v)| Platform {
                architecture: arch.into(),
                os: os.into(),
                os_version: None,
                os_features: None,
                variant: v.map(str::to_string),
            }),
            artifact_type: None,
            data: None,
        }
    }

    #[test]
    fn selects_platforms_and_their_attestations() {
        let entries = vec![
            desc(1, Some(("linux", "amd64", None)), None),
            desc(2, Some(("linux", "arm64", Some("v8"))), None),
            desc(3, Some(("unknown", "unknown", None)), Some(1)),
            desc(4, Some(("unknown", "unknown", None)), Some(2)),
        ];
        let f = PlatformFilter::parse(&["linux/arm64".into()]).unwrap();
        let s = f.select(&entries).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].digest, entries[1].digest);
        assert_eq!(s[1].digest, entries[3].digest);
        assert_eq!(PlatformFilter::images(&s), 1);
        let f = PlatformFilter::parse(&["linux/arm64/v7".into()]).unwrap();
        let e = f.select(&entries).unwrap_err();
        assert!(e.contains("linux/amd64, linux/arm64/v8"), "{e}");
        let all = PlatformFilter::parse(&[])
            .unwrap()
            .select(&entries)
            .unwrap();
        assert_eq!(all.len(), 4);
        let both = PlatformFilter::parse(&["linux/amd64,linux/arm64/v8".into()]).unwrap();
        assert_eq!(both.select(&entries).unwrap().len(), 4);
        assert!(PlatformFilter::parse(&["linux".into()]).is_err());
        assert!(PlatformFilter::parse(&["linux/a m d".into()]).is_err());
    }
}

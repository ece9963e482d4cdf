//! CVSS vectors: base scores computed by the `cvss` crate (v3.0, v3.1,
//! v4.0), and the choice of one vector among several candidates.

use crate::model::Cvss;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A vector as found in a record, before scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Candidate {
    pub vector: String,
    /// Score stated by the record, used only when the vector cannot be
    /// parsed.
    pub stated: Option<f64>,
    /// Lower is preferred among vectors of the same CVSS version.
    pub rank: u8,
    pub source: String,
}

/// Preference among sources for vectors of the same CVSS version.
pub(crate) mod rank {
    pub const OSV: u8 = 0;
    pub const NVD_PRIMARY: u8 = 1;
    pub const NVD_11: u8 = 2;
    pub const CVE5_CNA: u8 = 3;
    pub const CVE5_ADP: u8 = 4;
    pub const NVD_SECONDARY: u8 = 5;
}

/// CVSS version of a vector string, from its prefix.
pub fn vector_version(vector: &str) -> Option<&'static str> {
    let v = vector.trim();
    if v.starts_with("CVSS:4.0/") {
        Some("4.0")
    } else if v.starts_with("CVSS:3.1/") {
        Some("3.1")
    } else if v.starts_with("CVSS:3.0/") {
        Some("3.0")
    } else if v.starts_with("AV:") || v.starts_with("(AV:") {
        Some("2.0")
    } else {
        None
    }
}

/// Base score of a v3.x or v4.0 vector. `None` for v2 and for vectors the
/// calculator rejects.
pub fn base_score(vector: &str) -> Option<f64> {
    match ::cvss::Cvss::from_str(vector.trim()).ok()? {
        ::cvss::Cvss::CvssV30(v) | ::cvss::Cvss::CvssV31(v) => Some(v.base_score().value()),
        ::cvss::Cvss::CvssV40(v) => Some(round1(v.score().value())),
        _ => None,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn version_rank(v: &str) -> u8 {
    match v {
        "4.0" => 0,
        "3.1" => 1,
        "3.0" => 2,
        _ => 9,
    }
}

/// Pick the vector that rates an advisory: the newest CVSS version (4.0,
/// then 3.1, then 3.0), then the preferred source. v2 vectors are never
/// used for the rating.
pub(crate) fn choose(candidates: &[Candidate]) -> Option<Cvss> {
    let mut best: Option<(u8, u8, Cvss)> = None;
    for c in candidates {
        let Some(version) = vector_version(&c.vector) else {
            continue;
        };
        if version == "2.0" {
            continue;
        }
        let Some(score) = base_score(&c.vector).or(c.stated) else {
            continue;
        };
        let key = (version_rank(version), c.rank);
        if best.as_ref().is_none_or(|(v, r, _)| key < (*v, *r)) {
            best = Some((
                key.0,
                key.1,
                Cvss {
                    version: version.to_string(),
                    vector: c.vector.trim().to_string(),
                    score,
                    source: c.source.clone(),
                },
            ));
        }
    }
    best.map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_known_vectors() {
        assert_eq!(
            base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            base_score("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:N"),
            Some(5.5)
        );
        assert_eq!(base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"), None);
        assert_eq!(base_score("garbage"), None);
        assert_eq!(vector_version("CVSS:4.0/AV:N"), Some("4.0"));
    }

    #[test]
    fn prefers_v4_then_source_rank() {
        let c = |v: &str, rank, src: &str| Candidate {
            vector: v.into(),
            stated: None,
            rank,
            source: src.into(),
        };
        let v31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
        let v30 = "CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:N";
        let v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        let got = choose(&[c(v31, rank::OSV, "osv"), c(v4, rank::CVE5_CNA, "cve5:cna")]).unwrap();
        assert_eq!(got.version, "4.0");
        assert_eq!(got.source, "cve5:cna");
        assert_eq!(got.score, 9.3);
        let got = choose(&[c(v30, rank::NVD_11, "nvd-1.1"), c(v31, rank::CVE5_ADP, "a")]).unwrap();
        assert_eq!(got.version, "3.1");
        let got = choose(&[
            c(v31, rank::NVD_SECONDARY, "second"),
            c(v31, rank::NVD_PRIMARY, "first"),
        ])
        .unwrap();
        assert_eq!(got.source, "first");
        assert!(choose(&[c("AV:N/AC:L/Au:N/C:P/I:P/A:P", 0, "v2")]).is_none());
    }
}

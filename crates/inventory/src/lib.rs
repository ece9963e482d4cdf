//! The package inventory: what is installed in an image.
//!
//! This crate holds only the data model shared by the stage that produces an
//! inventory (`catalog`, reading layers) and the stages that consume it
//! (`vulndb` matching, `assess` storing and re-matching). It has no logic
//! beyond naming and serialisation, so both sides agree on one definition.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The packaging system a package belongs to. OS package managers and
/// language ecosystems are kept apart on purpose: an OS package is matched
/// only against its own distribution's advisories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Debian and derivatives (dpkg).
    Deb,
    /// Alpine (apk).
    Apk,
    /// RPM-based distributions.
    Rpm,
    /// Python packages.
    #[serde(rename = "pypi")]
    PyPI,
    /// JavaScript packages.
    Npm,
    /// Rust crates.
    Cargo,
    /// Go modules (and the `stdlib` pseudo-module).
    Go,
    /// Java archives.
    Maven,
    /// Ruby gems.
    #[serde(rename = "gem")]
    RubyGems,
    /// PHP packages.
    Composer,
    /// .NET packages.
    NuGet,
}

impl Ecosystem {
    pub const ALL: [Ecosystem; 11] = [
        Ecosystem::Deb,
        Ecosystem::Apk,
        Ecosystem::Rpm,
        Ecosystem::PyPI,
        Ecosystem::Npm,
        Ecosystem::Cargo,
        Ecosystem::Go,
        Ecosystem::Maven,
        Ecosystem::RubyGems,
        Ecosystem::Composer,
        Ecosystem::NuGet,
    ];

    /// Short lower-case name, as used in JSON, the CLI and purl types.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::PyPI => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Go => "go",
            Ecosystem::Maven => "maven",
            Ecosystem::RubyGems => "gem",
            Ecosystem::Composer => "composer",
            Ecosystem::NuGet => "nuget",
        }
    }

    /// Whether packages of this ecosystem come from an OS distribution.
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm)
    }

    /// Parse the short name (case-insensitive); also accepts common aliases.
    pub fn parse(s: &str) -> Option<Ecosystem> {
        let lower = s.to_ascii_lowercase();
        Some(match lower.as_str() {
            "deb" | "debian" | "dpkg" => Ecosystem::Deb,
            "apk" | "alpine" => Ecosystem::Apk,
            "rpm" => Ecosystem::Rpm,
            "pypi" | "python" | "pip" => Ecosystem::PyPI,
            "npm" | "node" => Ecosystem::Npm,
            "cargo" | "rust" | "crates" => Ecosystem::Cargo,
            "go" | "golang" => Ecosystem::Go,
            "maven" | "java" => Ecosystem::Maven,
            "gem" | "rubygems" | "ruby" => Ecosystem::RubyGems,
            "composer" | "php" | "packagist" => Ecosystem::Composer,
            "nuget" | "dotnet" => Ecosystem::NuGet,
            _ => return None,
        })
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Python package name normalised as PEP 503 says (lower case, each run
/// of `-`, `_` and `.` replaced by one `-`): the form advisories and purls
/// use, so packages and advisories meet on the same key.
pub fn pep503_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The operating system an image was built from, read from `os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Distro {
    /// `ID` from os-release: `debian`, `alpine`, `ubuntu`, `rhel`, …
    pub id: String,
    /// `VERSION_ID` from os-release: `12`, `3.20.3`, …
    pub version_id: String,
    /// `VERSION_CODENAME`, when given: `bookworm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    /// `PRETTY_NAME`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// For OS packages: the source package (dpkg `Source:`, apk origin,
    /// source RPM name). Advisories for distributions are keyed on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// For OS packages: the source package version, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Package URL (purl) identifying the package.
    pub purl: String,
    /// The file that declared the package, as a path inside the image.
    pub location: String,
    /// Digest of the layer that introduced the package.
    pub layer: String,
}

/// Everything installed in one image (one platform).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<Distro>,
    pub packages: Vec<Package>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_normalises_case_and_separator_runs() {
        assert_eq!(pep503_name("Foo.Bar__baz-Qux"), "foo-bar-baz-qux");
        assert_eq!(pep503_name(" zope.interface "), "zope-interface");
        assert_eq!(pep503_name("a-._b"), "a-b");
        assert_eq!(pep503_name("requests"), "requests");
    }

    #[test]
    fn ecosystem_names_round_trip() {
        for e in Ecosystem::ALL {
            assert_eq!(Ecosystem::parse(e.as_str()), Some(e));
            // The serde name must equal as_str so JSON and CLI agree.
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<Ecosystem>(&json).unwrap(), e);
        }
        assert_eq!(Ecosystem::parse("nonsense"), None);
    }
}

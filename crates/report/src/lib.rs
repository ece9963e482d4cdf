//! Every report drydock writes, produced in one place from typed models:
//! the scan result as JSON and as a terminal table, CycloneDX 1.6 (an
//! inventory, with its findings as vulnerabilities), SPDX 2.3 and SARIF
//! 2.1.0, plus the plain column tables of the CLI's listings.
//!
//! The inputs are the shared models — [`inventory::Inventory`] for what is
//! installed, [`vulndb::Finding`] for what is vulnerable — so no report
//! keeps a second definition of a package or a finding. Each format is a
//! set of serde types (or, for SARIF, `serde-sarif`'s); nothing is built
//! as loose JSON. This crate does no I/O beyond writing to a
//! [`std::io::Write`] it is handed: no files, no network, no SQL.

pub mod cyclonedx;
pub mod sarif;
pub mod scan;
pub mod spdx;
pub mod table;

pub use scan::{DatabaseInfo, ImageScan, ScanReport};

use serde::Serialize;
use std::io::Write;

/// What an SBOM is about and who made it.
#[derive(Debug, Clone)]
pub struct SbomMeta {
    /// The image reference as the user gave it.
    pub name: String,
    /// The manifest digest, when known.
    pub digest: Option<String>,
    pub tool_name: String,
    pub tool_version: String,
    /// RFC 3339 creation time; `None` means now.
    pub timestamp: Option<String>,
}

impl SbomMeta {
    pub fn new(name: impl Into<String>) -> SbomMeta {
        SbomMeta {
            name: name.into(),
            digest: None,
            tool_name: "drydock".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            timestamp: None,
        }
    }

    fn time(&self) -> String {
        self.timestamp.clone().unwrap_or_else(|| {
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            now.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
        })
    }
}

/// Write `value` as indented JSON followed by a newline.
pub fn write_json<W: Write, T: Serialize + ?Sized>(mut w: W, value: &T) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut w, value)?;
    w.write_all(b"\n")
}

/// `value` as indented JSON followed by a newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    write_json(&mut out, value).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

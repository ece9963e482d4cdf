//! Reading a `.deb`: an `ar` archive of `debian-binary`, `control.tar.*`
//! and `data.tar.*` (each compressed with xz, zstd, gzip or not at all).

use crate::control::{Stanza, parse_stanzas};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Control files are small; a larger member is refused.
const MAX_CONTROL_FILE: u64 = 16 << 20;

/// The control archive of a package.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub stanza: Stanza,
    /// Every other control member (`md5sums`, `conffiles`, `shlibs`,
    /// `triggers`, maintainer scripts…) by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Control {
    pub fn conffiles(&self) -> Vec<String> {
        self.files
            .get("conffiles")
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(|l| l.trim())
                    // `remove-on-upgrade /path` entries are directives, not files
                    .filter(|l| l.starts_with('/'))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn decoder<'a>(name: &str, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    Ok(if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new(r))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(r)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(r))
    } else if name.ends_with(".tar") {
        Box::new(r)
    } else {
        bail!("unsupported member {name}")
    })
}

fn member_name(e: &ar::Entry<'_, std::fs::File>) -> String {
    String::from_utf8_lossy(e.header().identifier())
        .trim_end_matches('/')
        .to_string()
}

/// Read the control archive of a `.deb`.
pub fn read_control(path: &Path) -> Result<Control> {
    let mut ar = ar::Archive::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    while let Some(entry) = ar.next_entry() {
        let entry = entry.context("reading the .deb (ar)")?;
        let name = member_name(&entry);
        if !name.starts_with("control.tar") {
            continue;
        }
        let mut tar = tar::Archive::new(decoder(&name, entry)?);
        let mut control = Control::default();
        for e in tar.entries()? {
            let mut e = e?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let p = e
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if e.size() > MAX_CONTROL_FILE {
                bail!("control member {p} is too large");
            }
            let mut buf = Vec::new();
            e.read_to_end(&mut buf)?;
            if p == "control" {
                control.stanza = parse_stanzas(&String::from_utf8_lossy(&buf))
                    .into_iter()
                    .next()
                    .unwrap_or_default();
            } else {
                control.files.insert(p, buf);
            }
        }
        if control.stanza.package().is_empty() {
            bail!("{}: control archive has no control file", path.display());
        }
        return Ok(control);
    }
    bail!("{}: not a Debian package (no control.tar)", path.display())
}

/// Stream the data archive of a `.deb` to `f`.
pub fn with_data<T>(
    path: &Path,
    f: impl FnOnce(&mut tar::Archive<Box<dyn Read + '_>>) -> Result<T>,
) -> Result<T> {
    let mut ar = ar::Archive::new(std::fs::File::open(path)?);
    while let Some(entry) = ar.next_entry() {
        let entry = entry?;
        let name = member_name(&entry);
        if !name.starts_with("data.tar") {
            continue;
        }
        let mut tar = tar::Archive::new(decoder(&name, entry)?);
        return f(&mut tar);
    }
    bail!("{}: not a Debian package (no data.tar)", path.display())
}

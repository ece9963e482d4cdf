//! What the patch needs to know of an image's filesystem, read from its
//! layers as streams: the dpkg database (`status`, `info/*`) and the type
//! of every path (so symlinked directories such as a merged `/usr` are
//! followed, not replaced, and whiteouts name only what exists).

use crate::control::{Stanza, parse_stanzas};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

pub const STATUS: &str = "var/lib/dpkg/status";
pub const INFO: &str = "var/lib/dpkg/info/";

/// Bound on one dpkg database file read into memory.
const MAX_DB_FILE: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// The merged view of an image's layers (whiteouts applied).
#[derive(Debug, Default)]
pub struct RootFs {
    pub status: Option<String>,
    /// `var/lib/dpkg/info/<name>` → content.
    pub info: BTreeMap<String, Vec<u8>>,
    pub kinds: HashMap<String, Kind>,
    pub symlinks: HashMap<String, String>,
}

/// A path as stored in a layer: relative, no `./`, no trailing `/`.
pub fn clean(p: &str) -> String {
    let p = p.trim_start_matches("./").trim_start_matches('/');
    let p = p.trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

impl RootFs {
    /// Apply one layer (an uncompressed tar stream).
    pub fn apply_layer(&mut self, layer: impl Read) -> Result<()> {
        let mut tar = tar::Archive::new(layer);
        for e in tar.entries().context("reading a layer")? {
            let mut e = e.context("reading a layer entry")?;
            let path = clean(&e.path()?.to_string_lossy());
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (d.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            if name == ".wh..wh..opq" {
                self.remove_under(&dir, false);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let target = if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                };
                self.remove_under(&target, true);
                continue;
            }
            let et = e.header().entry_type();
            let kind = if et.is_dir() {
                Kind::Dir
            } else if et.is_symlink() {
                Kind::Symlink
            } else {
                Kind::File
            };
            // A non-directory replaces whatever was there, subtree included.
            if kind != Kind::Dir && self.kinds.get(&path) == Some(&Kind::Dir) {
                self.remove_under(&path, true);
            }
            self.symlinks.remove(&path);
            if kind == Kind::Symlink
                && let Some(t) = e.link_name()?
            {
                self.symlinks
                    .insert(path.clone(), t.to_string_lossy().into_owned());
            }
            self.kinds.insert(path.clone(), kind);
            if kind == Kind::File && (path == STATUS || path.starts_with(INFO)) {
                if e.size() > MAX_DB_FILE {
                    bail!("{path} is larger than {MAX_DB_FILE} bytes");
                }
                let mut buf = Vec::new();
                e.read_to_end(&mut buf)?;
                if path == STATUS {
                    self.status = Some(String::from_utf8_lossy(&buf).into_owned());
                } else {
                    self.info.insert(path, buf);
                }
            } else if path == STATUS {
                self.status = None;
            }
        }
        Ok(())
    }

    fn remove_under(&mut self, p: &str, itself: bool) {
        let prefix = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        let hit = |k: &String| (itself && k == p) || k.starts_with(&prefix);
        self.kinds.retain(|k, _| !hit(k));
        self.symlinks.retain(|k, _| !hit(k));
        self.info.retain(|k, _| !hit(k));
        if hit(&STATUS.to_string()) {
            self.status = None;
        }
    }

    /// The installed packages by name (and `name:arch` for `Multi-Arch:
    /// same` ones, under both keys).
    pub fn installed(&self) -> Result<Vec<Stanza>> {
        let Some(s) = &self.status else {
            bail!("the image has no dpkg database ({STATUS}): not a Debian-based image");
        };
        Ok(parse_stanzas(s))
    }

    /// Resolve symlinked directories in a path's parents (the last
    /// component is kept as it is: a symlink there is replaced, as dpkg does).
    pub fn canonical(&self, path: &str) -> String {
        let mut parts: Vec<String> = clean(path).split('/').map(str::to_string).collect();
        let mut hops = 0;
        let mut i = 0;
        while i + 1 < parts.len() {
            let prefix = parts[..=i].join("/");
            if let Some(t) = self.symlinks.get(&prefix)
                && hops < 40
            {
                hops += 1;
                let base: Vec<String> = if t.starts_with('/') {
                    Vec::new()
                } else {
                    parts[..i].to_vec()
                };
                let mut joined = base;
                for c in t.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => {
                            joined.pop();
                        }
                        c => joined.push(c.to_string()),
                    }
                }
                let rest = parts[i + 1..].to_vec();
                parts = joined;
                parts.extend(rest);
                i = 0;
                continue;
            }
            i += 1;
        }
        parts.join("/")
    }
}

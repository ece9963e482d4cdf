//! A build as a byte stream, so that one node's build can serve others:
//! [`pack`] writes a build directory as a tar stream; [`receive`] unpacks
//! one beside the current build (`<version>.partial`) and
//! [`Incoming::install`] makes it current, as a local build is made
//! (renamed into place, then `CURRENT` replaced by rename). Plain
//! `std::io` only: moving and verifying the bytes is the caller's work.

use crate::{Error, Status, store};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The files of a build, in the order they are packed.
const FILES: [&str; 2] = ["db.bin", "status.json"];

/// The version `<data>/vulndb/CURRENT` names, if any.
pub fn current_version(data_dir: &Path) -> Result<Option<String>, Error> {
    store::current_version(data_dir)
}

/// The status a build recorded when it was made (`status.json`).
pub fn build_status(data_dir: &Path, version: &str) -> Result<Status, Error> {
    let path = build_dir(data_dir, version)?.join("status.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
}

fn build_dir(data_dir: &Path, version: &str) -> Result<PathBuf, Error> {
    if version.is_empty()
        || version.starts_with('.')
        || version.contains(['/', '\\'])
        || version.contains("..")
    {
        return Err(Error::Corrupt(format!("bad version {version:?}")));
    }
    Ok(store::root(data_dir).join(version))
}

/// Write build `version` as a tar stream. The headers carry no time,
/// owner or mode of this host, so the same build packs to the same bytes
/// on every node.
pub fn pack(data_dir: &Path, version: &str, out: impl Write) -> Result<(), Error> {
    let dir = build_dir(data_dir, version)?;
    let mut tar = tar::Builder::new(out);
    for name in FILES {
        let path = dir.join(name);
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path(name).map_err(|e| Error::io(&path, e))?;
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        tar.append(&h, f).map_err(|e| Error::io(&path, e))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io(&dir, e))
}

/// A build unpacked beside the current one, not yet in use. Dropped
/// without [`Incoming::install`], it is removed.
#[derive(Debug)]
pub struct Incoming {
    root: PathBuf,
    version: String,
    partial: PathBuf,
    installed: bool,
}

/// Unpack a build packed by [`pack`] into `<data>/vulndb/<version>.partial`.
/// Only the build's own files are taken; anything else in the stream is
/// refused. The caller reads what follows the archive (its end blocks)
/// itself, to finish verifying the stream.
pub fn receive(data_dir: &Path, version: &str, input: impl Read) -> Result<Incoming, Error> {
    build_dir(data_dir, version)?;
    let root = store::root(data_dir);
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let partial = root.join(format!("{version}.partial"));
    // A leftover of an interrupted receive: never read, so never kept.
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir(&partial).map_err(|e| Error::io(&partial, e))?;
    let incoming = Incoming {
        root,
        version: version.to_string(),
        partial,
        installed: false,
    };
    let bad = |m: String| Error::Corrupt(format!("received build {version}: {m}"));
    let mut seen = Vec::new();
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| bad(format!("entry name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let Some(&file) = FILES.iter().find(|f| **f == name) else {
            return Err(bad(format!("unexpected entry {name:?}")));
        };
        if entry.header().entry_type() != tar::EntryType::Regular || seen.contains(&file) {
            return Err(bad(format!("entry {name:?} is not one regular file")));
        }
        seen.push(file);
        let path = incoming.partial.join(file);
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        std::io::copy(&mut entry, &mut f).map_err(|e| Error::io(&path, e))?;
        f.sync_all().map_err(|e| Error::io(&path, e))?;
    }
    if seen.len() != FILES.len() {
        return Err(bad(format!("incomplete: only {seen:?}")));
    }
    Ok(incoming)
}

impl Incoming {
    /// The version being received.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Check that the build is the version it claims, in this format, then
    /// rename it into place and make it current. On error nothing changes.
    pub fn install(mut self) -> Result<(), Error> {
        let meta = store::load_meta(&self.partial.join("db.bin"))?;
        if meta.version != self.version {
            return Err(Error::Corrupt(format!(
                "received build {} says it is version {}",
                self.version, meta.version
            )));
        }
        store::sync_dir(&self.partial);
        let target = self.root.join(&self.version);
        if target.join("db.bin").exists() {
            // Built or received already (builds never change).
            let _ = std::fs::remove_dir_all(&self.partial);
        } else {
            let _ = std::fs::remove_dir_all(&target);
            std::fs::rename(&self.partial, &target).map_err(|e| Error::io(&target, e))?;
        }
        self.installed = true;
        store::sync_dir(&self.root);
        store::make_current(&self.root, &self.version)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

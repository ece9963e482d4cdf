//! `drydock scan dir:PATH`: a root filesystem or a project folder is
//! cataloged as if it were one image layer. A thread walks the directory
//! and writes a tar stream of the files the catalog reads (lock files,
//! package databases, release files, binaries; see
//! [`catalog::reads_file`]) into a pipe; [`catalog::catalog_layer`] reads
//! the other end, so the layer's one walk, its parsers and its limits
//! apply unchanged.
//!
//! Symbolic links are recorded as links, never followed, so nothing
//! outside the directory is read; the walk stays on the directory's
//! filesystem (like `find -xdev`: a root filesystem's `/proc`, `/sys` and
//! `/dev` are not walked). Whatever cannot be read (a directory or file
//! without permission, a file that changes while read) is named as an
//! incomplete reason.

use anyhow::Context;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a directory scan found.
pub struct DirScan {
    /// The directory, absolute.
    pub root: PathBuf,
    pub inventory: inventory::Inventory,
    /// Parts not read, one sentence each.
    pub incomplete: Vec<String>,
}

/// Catalog the directory `root`, leaving out the relative paths (and
/// everything under them) in `exclude`.
pub fn catalog_dir(
    root: &Path,
    exclude: &[String],
    limits: &catalog::Limits,
) -> anyhow::Result<DirScan> {
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("cannot open the directory {}", root.display()))?;
    let meta = std::fs::metadata(&root).with_context(|| format!("{}", root.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", root.display());
    // Packages name the layer they came from: a stable digest of the path
    // stands in for the layer digest.
    let layer = oci::Digest::sha256_of(root.to_string_lossy().as_bytes());
    let exclude: Vec<String> = exclude
        .iter()
        .map(|e| e.trim_matches('/').trim_start_matches("./").to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let (reader, writer) = io::pipe().context("creating a pipe")?;
    let walker = {
        let (root, limits) = (root.clone(), limits.clone());
        std::thread::spawn(move || {
            let mut w = Walker {
                tar: tar::Builder::new(io::BufWriter::with_capacity(256 << 10, writer)),
                dev: meta.dev(),
                limits,
                exclude,
                problems: Vec::new(),
            };
            // A write error means the reader stopped (a limit, an error it
            // reports itself): nothing more to say here.
            let _ = w.dir(&root, "").and_then(|()| w.tar.finish());
            w.problems
        })
    };
    let limits = catalog::Limits {
        verify_digest: false,
        ..limits.clone()
    };
    let read = catalog::catalog_layer(reader, oci::LayerCompression::None, &layer, &limits);
    let problems = walker
        .join()
        .map_err(|_| anyhow::anyhow!("the directory walk failed"))?;
    let layer_inv = read.with_context(|| format!("cataloging {}", root.display()))?;
    let image = catalog::merge_image(vec![(layer, layer_inv)], &limits);
    let mut incomplete = problems;
    incomplete.extend(image.reasons());
    Ok(DirScan {
        root,
        inventory: image.inventory,
        incomplete,
    })
}

struct Walker<W: Write> {
    tar: tar::Builder<W>,
    dev: u64,
    limits: catalog::Limits,
    exclude: Vec<String>,
    problems: Vec<String>,
}

/// A path for a reason: control characters escaped, as the catalog does.
fn shown(rel: &str) -> String {
    format!("/{}", rel.escape_debug())
}

impl<W: Write> Walker<W> {
    fn note(&mut self, rel: &str, what: impl std::fmt::Display) {
        self.problems
            .push(format!("{}: {what}; not read", shown(rel)));
    }

    fn excluded(&self, rel: &str) -> bool {
        self.exclude.iter().any(|e| {
            rel == e
                || rel
                    .strip_prefix(e.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }

    /// Walk `abs` (relative path `rel`). Errors are the tar stream's
    /// (the reader went away); everything else is noted and skipped.
    fn dir(&mut self, abs: &Path, rel: &str) -> io::Result<()> {
        let entries = match std::fs::read_dir(abs) {
            Ok(e) => e,
            Err(e) => {
                self.note(
                    if rel.is_empty() { "." } else { rel },
                    format!("cannot list the directory ({e})"),
                );
                return Ok(());
            }
        };
        let mut names = Vec::new();
        for e in entries {
            match e {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.note(rel, format!("cannot list the directory ({e})")),
            }
        }
        // Sorted, so a scan of the same tree lists packages in one order.
        names.sort();
        for name in names {
            let Some(name) = name.to_str() else {
                let lossy = name.to_string_lossy().into_owned();
                self.note(&join(rel, &lossy), "the name is not UTF-8");
                continue;
            };
            let child_rel = join(rel, name);
            if self.excluded(&child_rel) {
                continue;
            }
            let child = abs.join(name);
            let meta = match std::fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(e) => {
                    self.note(&child_rel, format!("cannot read ({e})"));
                    continue;
                }
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if meta.dev() != self.dev {
                    continue; // another filesystem (/proc, a mount)
                }
                let mut h = header(tar::EntryType::Directory, &meta, 0);
                self.tar
                    .append_data(&mut h, format!("{child_rel}/"), io::empty())?;
                self.dir(&child, &child_rel)?;
            } else if ft.is_symlink() {
                match std::fs::read_link(&child) {
                    Ok(target) => {
                        let mut h = header(tar::EntryType::Symlink, &meta, 0);
                        self.tar.append_link(&mut h, &child_rel, target)?;
                    }
                    Err(e) => self.note(&child_rel, format!("cannot read the link ({e})")),
                }
            } else if ft.is_file() {
                let (mode, size) = (meta.mode() & 0o7777, meta.len());
                if !catalog::reads_file(&child_rel, mode, size, &self.limits) {
                    continue;
                }
                let file = match File::open(&child) {
                    Ok(f) => f,
                    Err(e) => {
                        self.note(&child_rel, format!("cannot open ({e})"));
                        continue;
                    }
                };
                let mut h = header(tar::EntryType::Regular, &meta, size);
                let mut body = Exact {
                    inner: file,
                    left: size,
                    failed: None,
                };
                self.tar.append_data(&mut h, &child_rel, &mut body)?;
                if let Some(why) = body.failed {
                    self.note(&child_rel, why);
                }
            }
            // Sockets, FIFOs and devices hold no packages.
        }
        Ok(())
    }
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn header(kind: tar::EntryType, meta: &Metadata, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_size(size);
    h.set_mtime(meta.mtime().max(0) as u64);
    h
}

/// Exactly `left` bytes of a file whose size was read before: a file that
/// shrinks, or fails while read, is padded with zeros (the tar stream must
/// stay whole) and the reason kept, so it is reported, not parsed as truth.
struct Exact {
    inner: File,
    left: u64,
    failed: Option<String>,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = if self.failed.is_some() {
            0
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    self.failed = Some("the file shrank while it was read".into());
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.read(buf),
                Err(e) => {
                    self.failed = Some(format!("read failed ({e})"));
                    0
                }
            }
        };
        let n = if n == 0 {
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

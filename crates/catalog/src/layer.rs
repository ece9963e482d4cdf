//! Reading one layer: decompress, walk the tar stream, hand the few files
//! catalogers care about to them, record whiteouts.

mod pipe;
mod streams;

use crate::catalogers::{self, Handler, PkgCtx};
use crate::targuard::{HeaderTooLarge, TarGuard};
use crate::{
    CatalogError, FileFacts, FileKind, LayerInventory, Limits, SkipKind, Skipped, escape_path,
};
use oci::{Digest, Digester, LayerCompression};
use pipe::{Blocks, PIPE_DEPTH, inflate_into};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use streams::{Counters, HashingReader, LimitedReader, SourceError, StreamLimit};

/// A private scratch directory, made on first use and removed with the
/// value, for the few files that need random access.
pub(crate) struct Scratch {
    base: Option<std::path::PathBuf>,
    dir: Option<tempfile::TempDir>,
    spool: Option<std::fs::File>,
}

impl Scratch {
    pub(crate) fn new(base: Option<std::path::PathBuf>) -> Scratch {
        Scratch {
            base,
            dir: None,
            spool: None,
        }
    }

    pub(crate) fn dir(&mut self) -> io::Result<&std::path::Path> {
        if self.dir.is_none() {
            let d = match &self.base {
                Some(b) => tempfile::Builder::new().prefix("catalog-").tempdir_in(b)?,
                None => tempfile::Builder::new().prefix("catalog-").tempdir()?,
            };
            self.dir = Some(d);
        }
        Ok(self.dir.as_ref().expect("just made").path())
    }

    /// An emptied, unnamed file inside the scratch directory.
    pub(crate) fn spool(&mut self) -> io::Result<&mut std::fs::File> {
        if self.spool.is_none() {
            let dir = self.dir()?.to_path_buf();
            self.spool = Some(tempfile::tempfile_in(dir)?);
        }
        let f = self.spool.as_mut().expect("just made");
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        Ok(f)
    }
}

/// A tar path whose `..` leads above the layer's root.
#[derive(Debug, thiserror::Error)]
#[error("path climbs out of the layer root with '..'")]
pub(crate) struct ClimbsOut;

/// Normalise a tar path: drop `/`, `.` and empty components, resolve `..`
/// lexically. `Ok(None)` for the root itself; `Err` when `..` climbs out.
pub(crate) fn normalize(raw: &[u8]) -> Result<Option<String>, ClimbsOut> {
    let s = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ClimbsOut);
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parts.join("/")))
    }
}

fn split_dir(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Catalog one layer read from `reader` (the blob as stored, compressed as
/// `compression` says). `layer` is the blob's digest: it is recorded on
/// every package, named in every error, and checked against the content
/// when [`Limits::verify_digest`] is set.
pub fn catalog_layer(
    reader: impl Read,
    compression: LayerCompression,
    layer: &Digest,
    limits: &Limits,
) -> Result<LayerInventory, CatalogError> {
    std::thread::scope(|scope| {
        let (tx, hasher) = if limits.verify_digest {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(8);
            let algorithm = layer.algorithm();
            let h = scope.spawn(move || {
                let mut d = Digester::new(algorithm);
                for chunk in rx {
                    d.update(&chunk);
                }
                d.finish()
            });
            (Some(tx), Some(h))
        } else {
            (None, None)
        };
        let result = read_layer(reader, tx, compression, layer, limits);
        let actual = hasher.map(|h| h.join());
        let out = result?;
        if let Some(actual) = actual {
            let actual = actual.map_err(|_| CatalogError::Corrupt {
                layer: layer.clone(),
                detail: "the hashing thread failed".into(),
            })?;
            if &actual != layer {
                return Err(CatalogError::DigestMismatch {
                    layer: layer.clone(),
                    actual,
                });
            }
        }
        Ok(out)
    })
}

fn read_layer(
    reader: impl Read,
    tx: Option<std::sync::mpsc::SyncSender<Arc<Vec<u8>>>>,
    compression: LayerCompression,
    layer: &Digest,
    limits: &Limits,
) -> Result<LayerInventory, CatalogError> {
    let counters = Arc::new(Counters::default());
    let mut hashing = HashingReader::new(reader, tx, counters.clone());
    let mut out = LayerInventory::new();
    out.limits = limits.key();
    let mut scratch = Scratch::new(limits.scratch_dir.clone());
    {
        let decoder: Box<dyn Read + '_> = match compression {
            LayerCompression::None => Box::new(&mut hashing),
            // The `bufread` decoder inflates straight out of this buffer;
            // `read`'s would copy every compressed byte once more into a
            // 32 KiB buffer of its own.
            LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(128 << 10, &mut hashing),
            )),
            LayerCompression::Zstd => Box::new(
                zstd::Decoder::with_buffer(BufReader::with_capacity(128 << 10, &mut hashing))
                    .map_err(|e| stream_error(layer, e, "starting zstd"))?,
            ),
        };
        let mut limited = LimitedReader {
            inner: decoder,
            counters: counters.clone(),
            max_bytes: limits.max_layer_bytes,
            max_ratio: limits.max_ratio.max(1),
            grace: limits.ratio_grace_bytes,
        };
        // Two stages on two threads, so that on two cores inflating
        // (most of the time: ~70% of a Debian base layer's) overlaps the
        // tar walk, the catalogers and their spooling instead of adding to
        // them. This thread inflates; the walk runs on a scoped one and is
        // handed the decompressed bytes in a few recycled blocks.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel(PIPE_DEPTH);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel();
        let (out, scratch, counters) = (&mut out, &mut scratch, &*counters);
        std::thread::scope(|scope| {
            let walker = std::thread::Builder::new()
                .name("layer-walk".into())
                .spawn_scoped(scope, move || {
                    let mut blocks = Blocks::new(full_rx, empty_tx);
                    walk(
                        TarGuard::new(&mut blocks, MAX_EXTENSION_HEADER),
                        layer,
                        limits,
                        out,
                        scratch,
                        counters,
                    )?;
                    // Read to the end of the decompressed stream so a
                    // truncated or corrupt tail (after the tar end marker)
                    // is still noticed.
                    io::copy(&mut blocks, &mut io::sink()).map_err(|e| {
                        stream_error(layer, e, "reading past the end of the archive")
                    })?;
                    Ok(())
                })
                .map_err(|e| CatalogError::Scratch {
                    layer: layer.clone(),
                    source: e,
                })?;
            inflate_into(&mut limited, &full_tx, &empty_rx);
            // The walker sees the end of the stream once this is gone.
            drop(full_tx);
            match walker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })?;
    }
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| stream_error(layer, e, "reading the blob"))?;
    drop(hashing); // closes the channel: the hasher finishes
    out.stats.compressed_bytes = counters.compressed.load(Relaxed);
    out.stats.uncompressed_bytes = counters.uncompressed.load(Relaxed);
    Ok(out)
}

/// Largest PAX header or GNU long name accepted (the tar parser reads
/// them into memory whole; real ones are a few hundred bytes).
const MAX_EXTENSION_HEADER: u64 = 1 << 20;

/// Map an I/O error from the stream to the error naming the layer.
fn stream_error(layer: &Digest, e: io::Error, doing: &str) -> CatalogError {
    if e.get_ref().is_some_and(|i| i.is::<SourceError>()) {
        let source = match e.into_inner().map(|i| i.downcast::<SourceError>()) {
            Some(Ok(s)) => s.0,
            _ => io::Error::other("the blob's reader failed"),
        };
        return CatalogError::Read {
            layer: layer.clone(),
            source,
        };
    }
    if let Some(h) = e.get_ref().and_then(|i| i.downcast_ref::<HeaderTooLarge>()) {
        return CatalogError::Limit {
            layer: layer.clone(),
            detail: h.to_string(),
        };
    }
    if let Some(limit) = e.get_ref().and_then(|i| i.downcast_ref::<StreamLimit>()) {
        return match limit {
            StreamLimit::TooLarge { .. } => CatalogError::Limit {
                layer: layer.clone(),
                detail: limit.to_string(),
            },
            StreamLimit::Ratio { .. } => CatalogError::Bomb {
                layer: layer.clone(),
                detail: limit.to_string(),
            },
        };
    }
    let detail = match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("{doing}: unexpected end of data ({e})"),
        _ => format!("{doing}: {e}"),
    };
    CatalogError::Corrupt {
        layer: layer.clone(),
        detail,
    }
}

fn walk<R: Read>(
    reader: R,
    layer: &Digest,
    limits: &Limits,
    out: &mut LayerInventory,
    scratch: &mut Scratch,
    counters: &Counters,
) -> Result<(), CatalogError> {
    let layer_str = layer.to_string();
    let mut caps = Caps::default();
    // Where the last entry's data ends in the uncompressed stream.
    let mut content_end: u64 = 0;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| stream_error(layer, e, "opening the tar stream"))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // Some tar writers stop right after the last file's data,
                // without its padding or the end-of-archive blocks. Every
                // file is complete, so accept it (noting it); a stream cut
                // anywhere else is an error.
                let total = counters.uncompressed.load(Relaxed);
                if counters.eof.load(Relaxed)
                    && content_end > 0
                    && total >= content_end
                    && total < content_end.next_multiple_of(512) + 1024
                {
                    out.warn("tar stream ends without its end-of-archive marker".into());
                    return Ok(());
                }
                return Err(stream_error(layer, e, "reading a tar header"));
            }
        };
        out.stats.entries += 1;
        content_end = entry.raw_file_position() + entry.size();
        if out.stats.entries > limits.max_entries {
            return Err(CatalogError::Limit {
                layer: layer.clone(),
                detail: format!("more than {} entries", limits.max_entries),
            });
        }
        let raw = entry.path_bytes();
        let path = match normalize(&raw) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(reason) => {
                // Nothing is ever written at an archive path, so the entry
                // is harmless here; but where it would land is unknown, so
                // the layer is not read whole.
                out.skip(Skipped {
                    kind: SkipKind::UnsafePath,
                    layer: Some(layer_str.clone()),
                    path: Some(escape_path(&raw)),
                    detail: format!("{reason}; entry skipped"),
                });
                continue;
            }
        };
        let (dir, base) = split_dir(&path);
        if let Some(rest) = base.strip_prefix(".wh.") {
            if rest == ".wh..opq" {
                out.opaque_dirs.push(dir.to_string());
            } else if !rest.starts_with(".wh.") && !rest.is_empty() {
                out.whiteouts.push(join(dir, rest));
            }
            continue;
        }
        let etype = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0);
        let size = entry.size();
        if etype.is_file() || etype == tar::EntryType::Continuous || etype.is_gnu_sparse() {
            let Some(handler) = catalogers::classify(&path, mode, size, limits) else {
                continue;
            };
            let always = catalogers::always_read(handler, &path);
            if !always && !caps.admit(out, &layer_str, &path, limits) {
                continue;
            }
            let ctx = PkgCtx {
                layer: &layer_str,
                location: format!("/{path}"),
            };
            out.stats.files_examined += 1;
            let facts =
                read_file(&mut entry, handler, &ctx, size, limits, scratch, out).map_err(|e| {
                    match e {
                        FileError::Stream(e) => stream_error(layer, e, &format!("reading /{path}")),
                        FileError::Scratch(e) => CatalogError::Scratch {
                            layer: layer.clone(),
                            source: e,
                        },
                    }
                })?;
            if let Some(mut facts) = facts {
                if !always {
                    caps.take_packages(out, &layer_str, &path, &mut facts, limits);
                }
                caps.packages += facts.packages.len();
                out.files.insert(path, facts);
            }
        } else if etype.is_hard_link() {
            let target = match entry.link_name_bytes().map(|t| normalize(&t)) {
                Some(Err(reason)) => {
                    out.skip(Skipped {
                        kind: SkipKind::UnsafePath,
                        layer: Some(layer_str.clone()),
                        path: Some(escape_path(format!("/{path}").as_bytes())),
                        detail: format!("hard link target: {reason}; entry skipped"),
                    });
                    continue;
                }
                Some(Ok(t)) => t,
                None => None,
            };
            let handler = catalogers::classify(&path, 0o755, u64::MAX, limits);
            let known = target.and_then(|t| out.files.get(&t).cloned());
            if handler.is_none() && known.is_none() {
                continue;
            }
            if !handler.is_some_and(|h| catalogers::always_read(h, &path))
                && !caps.admit(out, &layer_str, &path, limits)
            {
                continue;
            }
            if let Some(mut facts) = known {
                let location = format!("/{path}");
                for p in &mut facts.packages {
                    p.location.clone_from(&location);
                }
                caps.take_packages(out, &layer_str, &path, &mut facts, limits);
                caps.packages += facts.packages.len();
                out.files.insert(path, facts);
            } else {
                shadow(out, path);
            }
        } else if etype.is_symlink() {
            let Some(handler) = catalogers::classify(&path, 0, 0, limits) else {
                continue;
            };
            if catalogers::always_read(handler, &path) || caps.admit(out, &layer_str, &path, limits)
            {
                shadow(out, path);
            }
        }
    }
    Ok(())
}

/// The per-layer caps on what a layer contributes, checked as the walk
/// goes so that nothing beyond them is ever held.
#[derive(Default)]
struct Caps {
    /// Watched files recorded, not counting the OS's own.
    files: u64,
    /// Packages recorded.
    packages: usize,
    /// Each cap is named once, where it was reached.
    files_full: bool,
    packages_full: bool,
}

impl Caps {
    /// Whether one more watched file (not an OS file) may be read and
    /// recorded; names the cap the first time it refuses.
    fn admit(
        &mut self,
        out: &mut LayerInventory,
        layer: &str,
        path: &str,
        limits: &Limits,
    ) -> bool {
        if self.packages >= limits.max_packages_per_layer {
            self.packages_full(out, layer, path, limits);
            return false;
        }
        if self.files >= limits.max_files_per_layer {
            if !self.files_full {
                self.files_full = true;
                out.skip(Skipped {
                    kind: SkipKind::Limit,
                    layer: Some(layer.to_string()),
                    path: None,
                    detail: format!(
                        "more than {} package files, executables and archives in one layer \
                         (max_files_per_layer); the rest, from /{}, not read",
                        limits.max_files_per_layer,
                        escape_path(path.as_bytes())
                    ),
                });
            }
            return false;
        }
        self.files += 1;
        true
    }

    /// Cut `facts` to what the layer's package cap still allows, naming
    /// the cap when it is reached.
    fn take_packages(
        &mut self,
        out: &mut LayerInventory,
        layer: &str,
        path: &str,
        facts: &mut FileFacts,
        limits: &Limits,
    ) {
        let room = limits.max_packages_per_layer.saturating_sub(self.packages);
        if facts.packages.len() <= room {
            return;
        }
        facts.packages.truncate(room);
        self.packages_full(out, layer, path, limits);
    }

    /// Name the package cap, once, at the file where it was reached.
    fn packages_full(
        &mut self,
        out: &mut LayerInventory,
        layer: &str,
        path: &str,
        limits: &Limits,
    ) {
        if self.packages_full {
            return;
        }
        self.packages_full = true;
        out.skip(Skipped {
            kind: SkipKind::Limit,
            layer: Some(layer.to_string()),
            path: None,
            detail: format!(
                "more than {} packages in one layer (max_packages_per_layer); \
                 the rest, from /{}, not listed",
                limits.max_packages_per_layer,
                escape_path(path.as_bytes())
            ),
        });
    }
}

fn shadow(out: &mut LayerInventory, path: String) {
    out.files.insert(
        path,
        FileFacts {
            kind: FileKind::Shadow,
            packages: Vec::new(),
            distro: None,
        },
    );
}

enum FileError {
    Stream(io::Error),
    Scratch(io::Error),
}

fn read_file(
    entry: &mut impl Read,
    handler: Handler,
    ctx: &PkgCtx,
    size: u64,
    limits: &Limits,
    scratch: &mut Scratch,
    out: &mut LayerInventory,
) -> Result<Option<FileFacts>, FileError> {
    match handler {
        Handler::Text(kind) => {
            if size > limits.max_file_bytes {
                // Not recorded: an unreadable file says nothing, so it
                // hides nothing below it.
                out.skip(ctx.skipped(
                    SkipKind::TooLarge,
                    format!(
                        "{size} bytes, over the limit of {} bytes (max_file_bytes); not read",
                        limits.max_file_bytes
                    ),
                ));
                return Ok(None);
            }
            let mut data = Vec::with_capacity(size as usize);
            entry
                .take(limits.max_file_bytes)
                .read_to_end(&mut data)
                .map_err(FileError::Stream)?;
            Ok(Some(catalogers::parse_text(kind, &data, ctx, out)))
        }
        Handler::Binary => {
            let mut head = [0u8; 64];
            let n = read_full(entry, &mut head).map_err(FileError::Stream)?;
            if !catalogers::binary::is_executable_format(&head[..n]) {
                return Ok(None);
            }
            let spool = if size <= limits.max_binary_bytes {
                Some(scratch.spool().map_err(FileError::Scratch)?)
            } else {
                None
            };
            let found = catalogers::binary::scan(&head[..n], entry, spool, ctx, out)?;
            Ok(Some(FileFacts {
                kind: FileKind::Binary,
                packages: found,
                distro: None,
            }))
        }
        Handler::Java => {
            if size > limits.max_binary_bytes {
                out.skip(too_big_binary(ctx, size, limits));
                return Ok(None);
            }
            let spool = scratch.spool().map_err(FileError::Scratch)?;
            copy_to(entry, spool)?;
            let packages = catalogers::java::scan_file(spool, ctx, limits, out);
            Ok(Some(FileFacts {
                kind: FileKind::JavaArchive,
                packages,
                distro: None,
            }))
        }
        Handler::RpmSqlite => {
            if size > limits.max_binary_bytes {
                out.skip(too_big_binary(ctx, size, limits));
                return Ok(None);
            }
            let dir = scratch.dir().map_err(FileError::Scratch)?.to_path_buf();
            let path = dir.join("rpmdb.sqlite");
            {
                let mut f = std::fs::File::create(&path).map_err(FileError::Scratch)?;
                copy_to(entry, &mut f)?;
            }
            let packages = catalogers::rpm::read_sqlite(&path, ctx, out);
            let _ = std::fs::remove_file(&path);
            Ok(Some(FileFacts {
                kind: FileKind::RpmDb,
                packages,
                distro: None,
            }))
        }
        Handler::RpmBdb | Handler::RpmNdb => {
            if size > limits.max_binary_bytes {
                out.skip(too_big_binary(ctx, size, limits));
                return Ok(None);
            }
            let spool = scratch.spool().map_err(FileError::Scratch)?;
            copy_to(entry, spool)?;
            let packages = if handler == Handler::RpmBdb {
                catalogers::rpm::read_bdb(spool, ctx, out)
            } else {
                catalogers::rpm::read_ndb(spool, ctx, out)
            };
            Ok(Some(FileFacts {
                kind: FileKind::RpmDb,
                packages,
                distro: None,
            }))
        }
    }
}

fn too_big_binary(ctx: &PkgCtx, size: u64, limits: &Limits) -> Skipped {
    ctx.skipped(
        SkipKind::TooLarge,
        format!(
            "{size} bytes, over the limit of {} bytes (max_binary_bytes); not read",
            limits.max_binary_bytes
        ),
    )
}

fn copy_to(entry: &mut impl Read, f: &mut std::fs::File) -> Result<(), FileError> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match read_some(entry, &mut buf).map_err(FileError::Stream)? {
            0 => break,
            n => n,
        };
        f.write_all(&buf[..n]).map_err(FileError::Scratch)?;
    }
    f.flush().map_err(FileError::Scratch)?;
    f.seek(SeekFrom::Start(0)).map_err(FileError::Scratch)?;
    Ok(())
}

/// Read until `buf` is full or the stream ends; returns bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read_some(r, &mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One `read`, tried again when a signal interrupted it (the one retry
/// rule of every read loop in the crate).
pub(crate) fn read_some(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> Self {
        FileError::Stream(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(
            normalize(b"./etc/os-release").unwrap().unwrap(),
            "etc/os-release"
        );
        assert_eq!(normalize(b"/usr//lib/./x").unwrap().unwrap(), "usr/lib/x");
        assert_eq!(normalize(b"a/b/../c").unwrap().unwrap(), "a/c");
        assert_eq!(normalize(b"./").unwrap(), None);
        assert!(normalize(b"../etc/passwd").is_err());
        assert!(normalize(b"a/../../etc").is_err());
    }
}

use inventory::{Distro, Inventory, Package};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What kind of file a [`FileFacts`] entry came from. The merge uses it to
/// pick the distribution and to prefer installed packages over lockfiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    OsRelease,
    DebianVersion,
    AlpineRelease,
    RedhatRelease,
    DpkgStatus,
    ApkInstalled,
    RpmDb,
    PythonMetadata,
    NpmPackage,
    NpmLock,
    YarnLock,
    PnpmLock,
    CargoLock,
    Binary,
    JavaArchive,
    Gemspec,
    ComposerLock,
    ComposerInstalled,
    DotnetDeps,
    /// A non-regular entry (symlink, directory, device) at a path a
    /// cataloger watches: it hides the lower layers' file and declares
    /// nothing itself.
    Shadow,
}

impl FileKind {
    /// Whether packages from this kind of file are only declared (a
    /// lockfile), as opposed to found installed or built in.
    pub fn is_lockfile(self) -> bool {
        matches!(
            self,
            FileKind::NpmLock
                | FileKind::YarnLock
                | FileKind::PnpmLock
                | FileKind::CargoLock
                | FileKind::ComposerLock
        )
    }
}

/// What one file of a layer declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    pub kind: FileKind,
    /// Packages the file declares, with `layer` set to the layer read and
    /// `location` to the file's absolute path in the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    /// For os-release and its fallbacks: the distribution it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<Distro>,
}

/// Counters for one layer read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    pub entries: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    /// Files whose contents a cataloger read or examined.
    pub files_examined: u64,
    /// Parts of the layer skipped, including any beyond the ones named in
    /// [`LayerInventory::skipped`] (which keeps at most [`MAX_NOTES`]).
    #[serde(default)]
    pub skipped: u64,
}

/// Most notes (skipped parts, warnings) one layer keeps by name: a layer
/// of a million malformed files must not make a million notes.
pub const MAX_NOTES: usize = 100;

/// Why part of an image was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipKind {
    /// A file over its size cap ([`crate::Limits::max_file_bytes`],
    /// [`crate::Limits::max_binary_bytes`]).
    TooLarge,
    /// A package database, manifest or archive that could not be parsed.
    Malformed,
    /// An archive entry whose path or link target climbs out of the root.
    UnsafePath,
    /// A cap on what a layer or image may contribute was reached, or the
    /// layer could not be read to its end; what lies beyond was not read.
    Limit,
}

/// One part of an image that was not read completely, named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Skipped {
    pub kind: SkipKind,
    /// Digest of the layer concerned; `None` for the image as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// The file or archive entry, as an absolute path in the image with
    /// every byte outside printable ASCII escaped ([`escape_path`]);
    /// `None` when the note is about a whole layer or image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What was wrong, naming the limit and its setting when one applies.
    pub detail: String,
}

impl Skipped {
    /// The in-image path an upper layer can replace or delete (and with
    /// it this note): set for files skipped as too large or malformed.
    pub(crate) fn file_path(&self) -> Option<&str> {
        match self.kind {
            SkipKind::TooLarge | SkipKind::Malformed => {
                self.path.as_deref().map(|p| p.trim_start_matches('/'))
            }
            SkipKind::UnsafePath | SkipKind::Limit => None,
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.detail)?;
        if let Some(l) = &self.layer {
            // The algorithm and 12 hex digits are plenty to find the layer.
            let short: String = l.chars().take(l.find(':').map_or(12, |i| i + 13)).collect();
            write!(f, " (layer {short})")?;
        }
        Ok(())
    }
}

/// A path from an archive, made safe to print and store: printable ASCII
/// is kept (a backslash doubled), every other byte becomes `\xNN`, and
/// the result is cut at 256 input bytes with `…`. Hostile names cannot
/// smuggle control characters, terminal escapes or direction overrides
/// into logs, tables or JSON consumers.
pub fn escape_path(raw: &[u8]) -> String {
    const MAX: usize = 256;
    let mut out = String::with_capacity(raw.len().min(MAX) + 8);
    for &b in raw.iter().take(MAX) {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if raw.len() > MAX {
        out.push('…');
    }
    out
}

/// What one layer contributes to an image, independent of every other
/// layer: enough to merge without reading the blob again.
///
/// `files` holds every file at a path a cataloger watches (even when it
/// declares nothing, so it can hide a lower layer's file at the same path),
/// keyed by its normalised path without a leading `/`. `whiteouts` are
/// paths this layer deletes from lower layers (with everything below
/// them); `opaque_dirs` are directories whose lower-layer contents this
/// layer hides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInventory {
    pub catalog_version: u32,
    pub files: BTreeMap<String, FileFacts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whiteouts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opaque_dirs: Vec<String>,
    pub stats: LayerStats,
    /// Files skipped or not understood (too large, malformed), for display.
    /// Every [`Skipped`] note is here too, as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Parts of the layer not read completely (at most [`MAX_NOTES`]; the
    /// count of all is [`LayerStats::skipped`]). Empty when the layer was
    /// read whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// The [`crate::Limits::key`] the layer was read under. A cached result
    /// with skipped parts is read again under other limits (raising a cap
    /// is how an administrator gets the whole layer read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub limits: String,
}

impl LayerInventory {
    pub fn new() -> LayerInventory {
        LayerInventory {
            catalog_version: crate::CATALOG_VERSION,
            files: BTreeMap::new(),
            whiteouts: Vec::new(),
            opaque_dirs: Vec::new(),
            stats: LayerStats::default(),
            warnings: Vec::new(),
            skipped: Vec::new(),
            limits: String::new(),
        }
    }

    /// Whether every part of the layer was read.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty() && self.stats.skipped == 0
    }

    /// Note a warning for display (at most [`MAX_NOTES`] are kept).
    pub(crate) fn warn(&mut self, text: String) {
        if self.warnings.len() < MAX_NOTES {
            self.warnings.push(text);
        }
    }

    /// Name a part of the layer that was not read (it also shows among
    /// the warnings). Beyond [`MAX_NOTES`] notes only the count grows.
    pub(crate) fn skip(&mut self, note: Skipped) {
        self.stats.skipped += 1;
        if self.skipped.len() < MAX_NOTES {
            self.warn(note.to_string());
            self.skipped.push(note);
        }
    }

    /// A layer that could not be read at all, with the reason.
    pub(crate) fn unread(layer: &oci::Digest, detail: String) -> LayerInventory {
        let mut out = LayerInventory::new();
        out.skip(Skipped {
            kind: SkipKind::Limit,
            layer: Some(layer.to_string()),
            path: None,
            detail,
        });
        out
    }

    /// Every package this layer declares (before any merge).
    pub fn packages(&self) -> impl Iterator<Item = &Package> {
        self.files.values().flat_map(|f| f.packages.iter())
    }
}

impl Default for LayerInventory {
    fn default() -> Self {
        LayerInventory::new()
    }
}

/// One image cataloged: its inventory and the parts of it that could not
/// be read. An empty `incomplete` means every layer was read whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInventory {
    pub inventory: Inventory,
    /// What was skipped and why, from every layer (notes about files that
    /// an upper layer replaced or deleted are dropped) and the image caps.
    pub incomplete: Vec<Skipped>,
}

impl ImageInventory {
    pub fn is_complete(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// The reasons as one sentence each, for display and storage.
    pub fn reasons(&self) -> Vec<String> {
        self.incomplete.iter().map(ToString::to_string).collect()
    }
}

use inventory::{Distro, Package};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
        }
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

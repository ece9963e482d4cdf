use std::path::PathBuf;

/// Bounds on the work and memory one layer may cost. The defaults suit a
/// registry: generous for real images, fatal for bombs.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest uncompressed layer (bytes) read before giving up.
    pub max_layer_bytes: u64,
    /// Largest ratio of uncompressed to compressed bytes tolerated once
    /// more than [`Limits::ratio_grace_bytes`] have been decompressed.
    pub max_ratio: u64,
    /// Uncompressed bytes always allowed before the ratio is enforced
    /// (small layers of zeros compress very well and are harmless).
    pub ratio_grace_bytes: u64,
    /// Largest text file (package database, manifest, lockfile) read into
    /// memory; larger ones are skipped and named, and the image is
    /// incomplete. Lower layers' copy of the file stays visible.
    pub max_file_bytes: u64,
    /// Largest executable or Java archive examined (spooled to scratch).
    pub max_binary_bytes: u64,
    /// Most tar entries in one layer.
    pub max_entries: u64,
    /// Most packages one layer may declare; the rest are not listed and
    /// the layer is incomplete. Once reached, the layer's remaining
    /// package files are not read at all.
    pub max_packages_per_layer: usize,
    /// Most packages in one image's inventory (after the layers are
    /// merged); the rest are not listed and the image is incomplete.
    pub max_packages_per_image: usize,
    /// Most watched files (language manifests, lockfiles, executables,
    /// Java archives, links at such paths) one layer may contribute; the
    /// rest are not read and the layer is incomplete. The OS package
    /// databases and release files at their fixed paths are always read.
    pub max_files_per_layer: u64,
    /// How deep Java archives nested in Java archives are followed.
    pub max_nesting: u32,
    /// Look inside executables (Go build info, cargo-auditable data).
    pub scan_binaries: bool,
    /// Check the compressed stream against the layer digest.
    pub verify_digest: bool,
    /// Where to make the private scratch file (default: the system's).
    pub scratch_dir: Option<PathBuf>,
    /// How many of an image's uncached layers are read at once (default:
    /// the number of CPUs, at most 4). Each reader uses its own fixed
    /// buffers, so memory grows with this number, not with layer size.
    pub parallel_layers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 64 << 30,
            max_ratio: 100,
            ratio_grace_bytes: 256 << 20,
            max_file_bytes: 32 << 20,
            max_binary_bytes: 512 << 20,
            max_entries: 5_000_000,
            max_packages_per_layer: 50_000,
            max_packages_per_image: 50_000,
            max_files_per_layer: 100_000,
            max_nesting: 3,
            scan_binaries: true,
            verify_digest: true,
            scratch_dir: None,
            parallel_layers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
        }
    }
}

impl Limits {
    /// The settings that change what a layer read reports, as a short
    /// key stored with each layer result ([`crate::LayerInventory::limits`]).
    pub fn key(&self) -> String {
        format!(
            "l{}r{}g{}f{}b{}e{}n{}p{}w{}s{}",
            self.max_layer_bytes,
            self.max_ratio,
            self.ratio_grace_bytes,
            self.max_file_bytes,
            self.max_binary_bytes,
            self.max_entries,
            self.max_nesting,
            self.max_packages_per_layer,
            self.max_files_per_layer,
            u8::from(self.scan_binaries),
        )
    }
}

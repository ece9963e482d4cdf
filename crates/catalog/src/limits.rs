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
    /// memory; larger ones are skipped with a warning.
    pub max_file_bytes: u64,
    /// Largest executable or Java archive examined (spooled to scratch).
    pub max_binary_bytes: u64,
    /// Most tar entries in one layer.
    pub max_entries: u64,
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

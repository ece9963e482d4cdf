//! The content-addressed blob store: a small driver trait and its
//! filesystem implementation.

use oci::{Algorithm, Digest};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A reader over a stored blob, positioned where it was opened.
pub type BlobReader = Box<dyn Read + Send>;

/// What a blob backend must do. Kept small so another backend (S3) can
/// implement it: stat, ranged open, commit of a verified temporary file,
/// delete, and a walk over everything stored.
pub trait BlobDriver: Send + Sync + 'static {
    /// The blob's size, or `None` when it is not stored.
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;
    /// Open the blob for reading from `offset`.
    fn open(&self, digest: &Digest, offset: u64) -> io::Result<BlobReader>;
    /// Move a temporary file whose content has been verified to hash to
    /// `digest` into the store. Durable on return. If the blob is already
    /// stored the temporary file is removed and the stored one kept.
    /// Returns `true` when the blob is new to the store.
    fn commit(&self, temp: &Path, digest: &Digest) -> io::Result<bool>;
    /// Remove a blob; `false` when it was not there.
    fn delete(&self, digest: &Digest) -> io::Result<bool>;
    /// Visit every stored blob with its size and modification time.
    fn walk(&self, visit: &mut dyn FnMut(Digest, u64, SystemTime)) -> io::Result<()>;
}

/// Blobs on a local filesystem: `<root>/blobs/<alg>/<hex[0..2]>/<hex>`.
/// Temporary files live in `<root>/tmp`, on the same filesystem, so a
/// commit is a `rename`.
#[derive(Debug)]
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    /// Open (creating directories as needed) a store rooted at `root`.
    pub fn open(root: &Path) -> io::Result<FsBlobs> {
        fs::create_dir_all(root.join("blobs"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(FsBlobs {
            root: root.to_path_buf(),
        })
    }

    /// Where a blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    /// Directory for temporary files (same filesystem as the blobs).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Create a new temporary file for an incoming blob.
    pub fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        let path = self.tmp_dir().join(uuid::Uuid::new_v4().to_string());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// Remove every temporary file (called at startup: anything there was
    /// being written when the previous process stopped). Returns how many.
    pub fn clear_temp(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(self.tmp_dir())? {
            let entry = entry?;
            if fs::remove_file(entry.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlobDriver for FsBlobs {
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, digest: &Digest, offset: u64) -> io::Result<BlobReader> {
        let mut f = File::open(self.path(digest))?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(f))
    }

    fn commit(&self, temp: &Path, digest: &Digest) -> io::Result<bool> {
        let target = self.path(digest);
        if target.exists() {
            // Already stored: refresh its time so a concurrent GC's grace
            // period protects it, and drop the duplicate.
            if let Ok(f) = OpenOptions::new().write(true).open(&target) {
                let _ = f.set_modified(SystemTime::now());
            }
            let _ = fs::remove_file(temp);
            return Ok(false);
        }
        File::open(temp)?.sync_all()?;
        let dir = target.parent().expect("blob path has a parent");
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(p) = dir.parent() {
                sync_dir(p)?;
            }
        }
        fs::rename(temp, &target)?;
        sync_dir(dir)?;
        Ok(true)
    }

    fn delete(&self, digest: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn walk(&self, visit: &mut dyn FnMut(Digest, u64, SystemTime)) -> io::Result<()> {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let base = self.root.join("blobs").join(alg.as_str());
            let Ok(prefixes) = fs::read_dir(&base) else {
                continue;
            };
            for prefix in prefixes {
                let prefix = prefix?;
                if !prefix.file_type()?.is_dir() {
                    continue;
                }
                for entry in fs::read_dir(prefix.path())? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Ok(d) = Digest::parse(&format!("{}:{name}", alg.as_str())) else {
                        continue;
                    };
                    let Ok(meta) = entry.metadata() else { continue };
                    visit(
                        d,
                        meta.len(),
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Adapts a driver to [`oci::BlobSource`].
pub struct DriverSource<D: BlobDriver>(pub std::sync::Arc<D>);

impl<D: BlobDriver> oci::BlobSource for DriverSource<D> {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.0.open(digest, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commit_stat_open_delete_walk() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobs::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello");
        assert_eq!(s.stat(&d).unwrap(), None);
        let (p, mut f) = s.temp_file().unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        assert!(s.commit(&p, &d).unwrap());
        assert!(!p.exists());
        assert_eq!(s.stat(&d).unwrap(), Some(5));
        let mut r = s.open(&d, 2).unwrap();
        let mut buf = String::new();
        r.read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "llo");
        // A duplicate commit keeps the stored copy and drops the temp file.
        let (p2, mut f2) = s.temp_file().unwrap();
        f2.write_all(b"hello").unwrap();
        s.commit(&p2, &d).unwrap();
        assert!(!p2.exists());
        let mut seen = vec![];
        s.walk(&mut |d, n, _| seen.push((d, n))).unwrap();
        assert_eq!(seen, vec![(d.clone(), 5)]);
        assert!(s.delete(&d).unwrap());
        assert!(!s.delete(&d).unwrap());
    }

    #[test]
    fn clear_temp_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobs::open(dir.path()).unwrap();
        let _ = s.temp_file().unwrap();
        assert_eq!(s.clear_temp().unwrap(), 1);
    }
}

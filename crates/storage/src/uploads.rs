//! Upload sessions of the filesystem driver: `<root>/uploads/<uuid>/`
//! holds `data` (the bytes received, in order), `state` (the saved offset
//! and sha256 state: bytes of `data` beyond the offset were appended by a
//! request that failed and are cut off at the next resume), `repo` (the
//! repository the session belongs to) and `owner` (who started it: only
//! they may use it). A session without `state` predates saved states: its
//! offset is the length of `data`, rehashed when it resumes. Its last
//! activity is `data`'s modification time.

use crate::MetaError;
use crate::hashstate::Sha256State;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::time::Duration;
use std::time::SystemTime;
use uuid::Uuid;

/// What is known about one session, as last saved.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: Uuid,
    pub repo: String,
    /// Who started the session; `None` for a session created before
    /// owners were recorded.
    pub owner: Option<String>,
    /// Bytes received (as of the last save).
    pub len: u64,
    pub updated: SystemTime,
}

/// One upload session as the metadata store keeps it (the S3 driver's
/// sessions, so that any node resumes them): who it belongs to, how far
/// it got, and the driver's own state (hash state, part list…), opaque
/// to the store. `revision` moves with every save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: Uuid,
    pub repo: String,
    pub owner: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds of the last save: what idle expiry looks at.
    pub updated_ms: i64,
    pub offset: u64,
    pub revision: i64,
    pub state: Vec<u8>,
}

impl UploadRecord {
    /// When it was last saved.
    pub fn updated(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(self.updated_ms.max(0) as u64)
    }

    /// As the blob driver describes a session.
    pub fn info(&self) -> UploadInfo {
        UploadInfo {
            id: self.id,
            repo: self.repo.clone(),
            owner: Some(self.owner.clone()),
            len: self.offset,
            updated: self.updated(),
        }
    }
}

/// Why a compare-and-swap on a session failed. Either way nothing was
/// written.
#[derive(Debug, thiserror::Error)]
pub enum UploadCasError {
    /// Another writer saved the session since this one read it: its
    /// revision moved on.
    #[error("the upload session was changed by another request")]
    Conflict,
    /// The session was cancelled (or expired, or completed) meanwhile.
    #[error("the upload session is gone")]
    Gone,
    #[error(transparent)]
    Store(#[from] MetaError),
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Upload sessions in the metadata store (SQLite or PostgreSQL). A save
/// is a compare-and-swap on the revision its writer resumed from, and
/// never creates a row: a session deleted (cancelled, expired, committed)
/// while a request of it still ran on another node stays deleted, and of
/// two writers that resumed the same revision only the first saves.
#[async_trait::async_trait]
pub trait UploadSessions: Send + Sync + 'static {
    /// A new session at offset 0, revision 0.
    async fn create(
        &self,
        id: Uuid,
        repo: &str,
        owner: &str,
        state: &[u8],
    ) -> Result<UploadRecord, MetaError>;
    /// A session as last saved; `None` when unknown.
    async fn get(&self, id: &Uuid) -> Result<Option<UploadRecord>, MetaError>;
    /// Save `offset` and `state` if the session is still at `revision`;
    /// returns the new revision.
    async fn save(
        &self,
        id: &Uuid,
        revision: i64,
        offset: u64,
        state: &[u8],
    ) -> Result<i64, UploadCasError>;
    /// Delete a session whatever its revision; the row as it was, `None`
    /// when unknown.
    async fn delete(&self, id: &Uuid) -> Result<Option<UploadRecord>, MetaError>;
    /// Delete a session only if it is still at `revision`: a writer ending
    /// the session (its commit) or expiry, which must not remove what a
    /// newer save described.
    async fn delete_at(&self, id: &Uuid, revision: i64) -> Result<UploadRecord, UploadCasError>;
    /// Every session.
    async fn list(&self) -> Result<Vec<UploadRecord>, MetaError>;
}

#[derive(Debug, Clone)]
pub(crate) struct SessionFiles {
    dir: PathBuf,
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl SessionFiles {
    pub(crate) fn open(root: &Path) -> io::Result<SessionFiles> {
        let dir = root.join("uploads");
        fs::create_dir_all(&dir)?;
        Ok(SessionFiles { dir })
    }

    fn session_dir(&self, id: &Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Start a session for `repo`, owned by `owner`.
    pub(crate) fn create(&self, repo: &str, owner: &str) -> io::Result<UploadInfo> {
        let id = Uuid::new_v4();
        let dir = self.session_dir(&id);
        fs::create_dir(&dir)?;
        File::create(dir.join("data"))?;
        fs::write(
            dir.join("state"),
            format!("0 {}\n", Sha256State::new().save()),
        )?;
        // `owner` before `repo`: a session is complete once `repo` exists,
        // so one with `repo` but no `owner` predates owners.
        fs::write(dir.join("owner"), owner)?;
        fs::write(dir.join("repo"), repo)?;
        Ok(UploadInfo {
            id,
            repo: repo.to_string(),
            owner: Some(owner.to_string()),
            len: 0,
            updated: SystemTime::now(),
        })
    }

    /// The saved offset and hash state, if saved.
    fn state(&self, id: &Uuid) -> io::Result<Option<(u64, Sha256State)>> {
        let Some(text) = not_found_is_none(fs::read_to_string(self.session_dir(id).join("state")))?
        else {
            return Ok(None);
        };
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed upload state");
        let (offset, hash) = text.trim().split_once(' ').ok_or_else(bad)?;
        let offset: u64 = offset.parse().map_err(|_| bad())?;
        let hash = Sha256State::load(hash).ok_or_else(bad)?;
        if hash.len() != offset {
            return Err(bad());
        }
        Ok(Some((offset, hash)))
    }

    /// Save the offset and hash state (atomically: written aside, renamed).
    pub(crate) fn save_state(&self, id: &Uuid, offset: u64, hash: &str) -> io::Result<()> {
        let dir = self.session_dir(id);
        if !dir.join("repo").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "upload session gone",
            ));
        }
        let tmp = dir.join("state.tmp");
        fs::write(&tmp, format!("{offset} {hash}\n"))?;
        fs::rename(tmp, dir.join("state"))
    }

    /// Look a session up; `None` when unknown (or half created).
    pub(crate) fn get(&self, id: &Uuid) -> io::Result<Option<UploadInfo>> {
        let dir = self.session_dir(id);
        let Some(repo) = not_found_is_none(fs::read_to_string(dir.join("repo")))? else {
            return Ok(None);
        };
        let owner = not_found_is_none(fs::read_to_string(dir.join("owner")))?;
        let Some(meta) = not_found_is_none(fs::metadata(dir.join("data")))? else {
            return Ok(None);
        };
        let len = match self.state(id)? {
            Some((offset, _)) => offset,
            None => meta.len(),
        };
        Ok(Some(UploadInfo {
            id: *id,
            repo,
            owner,
            len,
            updated: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        }))
    }

    /// Open a session to write on (blocking): its data file for appending,
    /// cut back to the saved offset, and the hash state there.
    pub(crate) fn load(&self, id: &Uuid) -> io::Result<Option<(PathBuf, File, u64, Sha256State)>> {
        if self.get(id)?.is_none() {
            return Ok(None);
        }
        let data = self.session_dir(id).join("data");
        let Some(file) = not_found_is_none(OpenOptions::new().read(true).append(true).open(&data))?
        else {
            return Ok(None);
        };
        let (offset, hash) = match self.state(id)? {
            Some(s) => s,
            // A device in place of the data (a test's /dev/full) has no
            // content to rehash.
            None if !fs::metadata(&data)?.is_file() => (0, Sha256State::new()),
            None => {
                let mut h = Sha256State::new();
                let mut f = File::open(&data)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                (h.len(), h)
            }
        };
        // Cut off what a failed request appended after the last save (a
        // device such as /dev/full has no length to cut).
        if file.metadata()?.len() > offset {
            file.set_len(offset)?;
        }
        Ok(Some((data, file, offset, hash)))
    }

    /// Remove a session and its data. `false` when it did not exist.
    pub(crate) fn remove(&self, id: &Uuid) -> io::Result<bool> {
        match fs::remove_dir_all(self.session_dir(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// All sessions.
    pub(crate) fn list(&self) -> io::Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            match self.get(&id)? {
                Some(info) => out.push(info),
                None => {
                    // Half-created session (crash between mkdir and write).
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(out)
    }

    /// Remove sessions idle for longer than `max_idle`; returns their ids.
    #[cfg(test)]
    fn expire(&self, max_idle: Duration) -> io::Result<Vec<Uuid>> {
        let now = SystemTime::now();
        let mut gone = Vec::new();
        for info in self.list()? {
            let idle = now.duration_since(info.updated).unwrap_or_default();
            if idle > max_idle && self.remove(&info.id)? {
                gone.push(info.id);
            }
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let u = SessionFiles::open(dir.path()).unwrap();
        let s = u.create("a/b", "robot$ci").unwrap();
        let got = u.get(&s.id).unwrap().unwrap();
        assert_eq!(got.repo, "a/b");
        assert_eq!(got.owner.as_deref(), Some("robot$ci"));
        assert_eq!(got.len, 0);
        assert_eq!(u.list().unwrap().len(), 1);
        assert!(u.expire(Duration::from_secs(3600)).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(u.expire(Duration::from_millis(1)).unwrap(), vec![s.id]);
        assert!(u.get(&s.id).unwrap().is_none());
        assert!(!u.remove(&s.id).unwrap());
    }

    #[test]
    fn session_without_owner_or_state_predates_them() {
        let dir = tempfile::tempdir().unwrap();
        let u = SessionFiles::open(dir.path()).unwrap();
        let s = u.create("a/b", "alice").unwrap();
        let sdir = dir.path().join("uploads").join(s.id.to_string());
        fs::remove_file(sdir.join("owner")).unwrap();
        fs::remove_file(sdir.join("state")).unwrap();
        fs::write(sdir.join("data"), b"abc").unwrap();
        let got = u.get(&s.id).unwrap().unwrap();
        assert_eq!(got.repo, "a/b");
        assert_eq!(got.owner, None);
        assert_eq!(got.len, 3);
        let (_, _, offset, hash) = u.load(&s.id).unwrap().unwrap();
        assert_eq!(offset, 3);
        assert_eq!(hash.digest(), oci::Digest::sha256_of(b"abc"));
    }
}

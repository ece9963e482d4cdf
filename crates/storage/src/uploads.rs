//! Upload sessions on the filesystem: `<root>/uploads/<uuid>/` holds
//! `data` (the bytes received so far, in order), `repo` (the repository
//! the session belongs to) and `owner` (who started it: only they may use
//! it). The session's offset is the length of `data`; its last activity is
//! `data`'s modification time.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
}

/// What is known about one session.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: Uuid,
    pub repo: String,
    /// Who started the session; `None` for a session created before
    /// owners were recorded.
    pub owner: Option<String>,
    pub data: PathBuf,
    pub len: u64,
    pub updated: SystemTime,
}

impl Uploads {
    pub fn open(root: &Path) -> io::Result<Uploads> {
        let dir = root.join("uploads");
        fs::create_dir_all(&dir)?;
        Ok(Uploads { dir })
    }

    fn session_dir(&self, id: &Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Start a session for `repo`, owned by `owner`.
    pub fn create(&self, repo: &str, owner: &str) -> io::Result<UploadInfo> {
        let id = Uuid::new_v4();
        let dir = self.session_dir(&id);
        fs::create_dir(&dir)?;
        // `owner` before `repo`: a session is complete once `repo` exists,
        // so one with `repo` but no `owner` predates owners.
        fs::write(dir.join("owner"), owner)?;
        fs::write(dir.join("repo"), repo)?;
        let data = dir.join("data");
        File::create(&data)?;
        Ok(UploadInfo {
            id,
            repo: repo.to_string(),
            owner: Some(owner.to_string()),
            data,
            len: 0,
            updated: SystemTime::now(),
        })
    }

    /// Look a session up; `None` when unknown (or half created).
    pub fn get(&self, id: &Uuid) -> io::Result<Option<UploadInfo>> {
        let dir = self.session_dir(id);
        let repo = match fs::read_to_string(dir.join("repo")) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let owner = match fs::read_to_string(dir.join("owner")) {
            Ok(o) => Some(o),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let data = dir.join("data");
        let meta = match fs::metadata(&data) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(UploadInfo {
            id: *id,
            repo,
            owner,
            data,
            len: meta.len(),
            updated: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        }))
    }

    /// Open a session's data file for appending.
    pub fn open_data(&self, info: &UploadInfo) -> io::Result<File> {
        OpenOptions::new().read(true).append(true).open(&info.data)
    }

    /// Remove a session and its data. `false` when it did not exist.
    pub fn remove(&self, id: &Uuid) -> io::Result<bool> {
        match fs::remove_dir_all(self.session_dir(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// All sessions.
    pub fn list(&self) -> io::Result<Vec<UploadInfo>> {
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
    pub fn expire(&self, max_idle: Duration) -> io::Result<Vec<Uuid>> {
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
        let u = Uploads::open(dir.path()).unwrap();
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
    fn session_without_owner_file_predates_owners() {
        let dir = tempfile::tempdir().unwrap();
        let u = Uploads::open(dir.path()).unwrap();
        let s = u.create("a/b", "alice").unwrap();
        fs::remove_file(
            dir.path()
                .join("uploads")
                .join(s.id.to_string())
                .join("owner"),
        )
        .unwrap();
        let got = u.get(&s.id).unwrap().unwrap();
        assert_eq!(got.repo, "a/b");
        assert_eq!(got.owner, None);
    }
}

//! `[import]`: server-side import sources, remote registries and
//! pull-through mirrors.

use serde::Deserialize;
use std::path::PathBuf;

/// `[import]`: what the server's import jobs may read, stored settings per
/// remote registry, and pull-through mirrors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSection {
    /// Directories whose contents `oci:` and `docker-archive:` sources of
    /// the import API may name (paths on the server; administrators only).
    /// Empty, the default: no server-side paths. `drydock import` reads
    /// local sources on the client and needs none. Env (comma-separated):
    /// `DRYDOCK_IMPORT_LOCAL_DIRS`.
    pub local_dirs: Vec<PathBuf>,
    /// Replaced by `local_dirs`: still accepted so older files load, but it
    /// allows nothing by itself. Env: `DRYDOCK_IMPORT_ALLOW_LOCAL`.
    pub allow_local: Option<bool>,
    /// Import jobs that run at once.
    pub max_concurrent_jobs: usize,
    /// `[import.remotes."HOST[:PORT]"]`: `username`, `password`,
    /// `insecure`, `ca_file`.
    pub remotes: std::collections::HashMap<String, import::RemoteConfig>,
    /// `[[import.mirrors]]`: `prefix`, `upstream`, `insecure`, `platforms`.
    pub mirrors: Vec<import::mirror::MirrorRule>,
    /// Seconds a pull through a mirror waits for the upstream.
    pub mirror_timeout_secs: u64,
}

impl Default for ImportSection {
    fn default() -> Self {
        let defaults = import::ImportConfig::default();
        ImportSection {
            local_dirs: defaults.local_dirs,
            allow_local: None,
            max_concurrent_jobs: defaults.max_concurrent_jobs,
            remotes: Default::default(),
            mirrors: Vec::new(),
            mirror_timeout_secs: 600,
        }
    }
}

impl ImportSection {
    /// The importer's settings.
    pub fn importer_config(&self) -> import::ImportConfig {
        if self.allow_local == Some(true) && self.local_dirs.is_empty() {
            tracing::warn!(
                "import.allow_local no longer allows server-side paths; list the directories \
                 imports may read in import.local_dirs (DRYDOCK_IMPORT_LOCAL_DIRS)"
            );
        }
        import::ImportConfig {
            local_dirs: self.local_dirs.clone(),
            max_concurrent_jobs: self.max_concurrent_jobs,
            remotes: self.remotes.clone(),
            ..import::ImportConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::{Path, PathBuf};

    #[test]
    fn import_section_maps_to_importer_config() {
        let c: Config = toml::from_str(
            r#"
            [import]
            local_dirs = ["/srv/drydock-import"]
            allow_local = false
            [import.remotes."127.0.0.1:5001"]
            username = "u"
            password = "p"
            insecure = true
            [[import.mirrors]]
            prefix = "hub"
            upstream = "127.0.0.1:5001/library"
            insecure = true
            "#,
        )
        .unwrap();
        let ic = c.import.importer_config();
        assert_eq!(ic.local_dirs, [PathBuf::from("/srv/drydock-import")]);
        assert!(ic.remotes["127.0.0.1:5001"].insecure);
        assert_eq!(c.import.mirrors[0].prefix, "hub");
        let mut d = Config::default();
        assert!(d.import.importer_config().local_dirs.is_empty());
        d.apply_env(|k| match k {
            "DRYDOCK_IMPORT_ALLOW_LOCAL" => Some("yes".into()),
            "DRYDOCK_IMPORT_LOCAL_DIRS" => Some("/a, /b/c,".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(d.import.allow_local, Some(true));
        assert_eq!(
            d.import.importer_config().local_dirs,
            [PathBuf::from("/a"), PathBuf::from("/b/c")]
        );
        assert!(d.assess.catalog_on_upload);
        d.apply_env(|k| (k == "DRYDOCK_ASSESS_CATALOG_ON_UPLOAD").then(|| "false".into()))
            .unwrap();
        assert!(!d.assess.options(Path::new("d")).catalog_on_upload);
        assert!(
            d.apply_env(|k| (k == "DRYDOCK_ASSESS_CATALOG_ON_UPLOAD").then(|| "maybe".into()))
                .is_err()
        );
        assert_eq!(d.vulndb.update_hours, 24);
        assert_eq!(d.vulndb.update_urls().len(), vulndb::DEFAULT_SOURCES.len());
        d.apply_env(|k| match k {
            "DRYDOCK_VULNDB_UPDATE_HOURS" => Some("0".into()),
            "DRYDOCK_VULNDB_SOURCES" => {
                Some("http://127.0.0.1:1/a.zip, http://127.0.0.1:1/b.zip".into())
            }
            _ => None,
        })
        .unwrap();
        assert_eq!(d.vulndb.update_hours, 0);
        assert_eq!(
            d.vulndb.update_urls(),
            ["http://127.0.0.1:1/a.zip", "http://127.0.0.1:1/b.zip"]
        );
    }
}

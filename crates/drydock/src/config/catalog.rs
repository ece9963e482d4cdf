//! `[vulndb]` and `[catalog]`: the vulnerability database's sources and
//! age, and what one image may cost the catalog (`serve` and `scan`).

use serde::Deserialize;

/// `[vulndb]`: where `drydock db update` downloads from, and how often the
/// server looks for a new database build.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VulndbConfig {
    /// Source URLs for `drydock db update`; empty means the built-in
    /// defaults. Env (comma-separated): `DRYDOCK_VULNDB_SOURCES`.
    pub sources: Vec<String>,
    /// Seconds between the server's checks for a new database build.
    pub poll_secs: u64,
    /// `drydock serve` runs `db update` when the database is this many
    /// hours old (and at start when there is none); 0 turns it off. Env:
    /// `DRYDOCK_VULNDB_UPDATE_HOURS`.
    pub update_hours: u64,
    /// Days after its build at which the dashboard calls the database
    /// stale (overview warning, settings). Env: `DRYDOCK_DB_STALE_DAYS`.
    pub stale_days: u32,
}

impl VulndbConfig {
    /// What `db update` downloads: the configured sources, else the
    /// built-in defaults.
    pub fn update_urls(&self) -> Vec<String> {
        if self.sources.is_empty() {
            vulndb::DEFAULT_SOURCES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            self.sources.clone()
        }
    }
}

impl Default for VulndbConfig {
    fn default() -> Self {
        VulndbConfig {
            sources: Vec::new(),
            poll_secs: 2,
            update_hours: 24,
            stale_days: 7,
        }
    }
}

/// `[catalog]`: caps on what one layer or image may contribute. Whatever
/// they stop is named, and the image is incomplete (never healthy).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSection {
    /// Largest package database, manifest or lockfile read (bytes).
    pub max_file_bytes: u64,
    /// Most packages one layer may declare.
    pub max_packages_per_layer: usize,
    /// Most packages in one image's inventory.
    pub max_packages_per_image: usize,
    /// Most package files, executables and archives read in one layer.
    pub max_files_per_layer: u64,
}

impl Default for CatalogSection {
    fn default() -> Self {
        let l = catalog::Limits::default();
        CatalogSection {
            max_file_bytes: l.max_file_bytes,
            max_packages_per_layer: l.max_packages_per_layer,
            max_packages_per_image: l.max_packages_per_image,
            max_files_per_layer: l.max_files_per_layer,
        }
    }
}

impl CatalogSection {
    /// The catalog's limits: these keys over the catalog's defaults.
    pub fn limits(&self) -> catalog::Limits {
        catalog::Limits {
            max_file_bytes: self.max_file_bytes,
            max_packages_per_layer: self.max_packages_per_layer,
            max_packages_per_image: self.max_packages_per_image,
            max_files_per_layer: self.max_files_per_layer,
            ..catalog::Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn database_stale_days_from_the_file_and_the_environment() {
        assert_eq!(Config::default().vulndb.stale_days, 7);
        let mut c: Config = toml::from_str("[vulndb]\nstale_days = 30\n").unwrap();
        c.apply_env(|_| None).unwrap();
        assert_eq!(c.vulndb.stale_days, 30);
        // The variable overrides the file.
        c.apply_env(|k| (k == "DRYDOCK_DB_STALE_DAYS").then(|| "3".into()))
            .unwrap();
        assert_eq!(c.vulndb.stale_days, 3);
        for bad in ["0", "soon"] {
            let mut c = Config::default();
            let err = c
                .apply_env(|k| (k == "DRYDOCK_DB_STALE_DAYS").then(|| bad.into()))
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("stale_days")
                    || format!("{err:#}").contains("STALE_DAYS"),
                "{err:#}"
            );
        }
        assert!(toml::from_str::<Config>("[vulndb]\nstale_days = -1\n").is_err());
    }

    #[test]
    fn catalog_section_sets_the_limits() {
        let c: Config = toml::from_str(
            r#"
            [catalog]
            max_file_bytes = 1000
            max_packages_per_image = 7
            "#,
        )
        .unwrap();
        let l = c.catalog.limits();
        assert_eq!((l.max_file_bytes, l.max_packages_per_image), (1000, 7));
        let d = catalog::Limits::default();
        assert_eq!(l.max_packages_per_layer, d.max_packages_per_layer);
        assert_eq!(l.max_files_per_layer, d.max_files_per_layer);
        assert!(
            toml::from_str::<Config>(
                "[catalog]
max_packages = 1
"
            )
            .is_err()
        );
    }
}

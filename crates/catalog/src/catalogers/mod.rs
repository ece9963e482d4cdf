//! The catalogers: which paths each one watches ([`classify`]) and how it
//! reads them. Every cataloger is a pure function of one file's bytes, so
//! its result can be cached with the layer.

pub(crate) mod binary;
mod dotnet;
mod dpkg;
pub(crate) mod java;
mod npm;
mod os;
mod php;
mod python;
pub(crate) mod rpm;
mod ruby;
mod rust;
mod simple;

use crate::{FileFacts, FileKind, LayerInventory, Limits, SkipKind, Skipped, escape_path};
use inventory::{Ecosystem, Package};

/// How a watched file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    /// Read whole into memory (under the size cap) and parsed.
    Text(FileKind),
    /// An executable: Go build info, cargo-auditable data.
    Binary,
    /// A JAR/WAR/EAR: spooled to scratch, read as a zip.
    Java,
    RpmSqlite,
    RpmBdb,
    RpmNdb,
}

/// Where a package was found: the layer and the file's absolute path.
pub(crate) struct PkgCtx<'a> {
    pub layer: &'a str,
    pub location: String,
}

impl PkgCtx<'_> {
    /// A note naming this file as skipped.
    pub(crate) fn skipped(&self, kind: SkipKind, detail: impl Into<String>) -> Skipped {
        Skipped {
            kind,
            layer: Some(self.layer.to_string()),
            path: Some(escape_path(self.location.as_bytes())),
            detail: detail.into(),
        }
    }

    /// A note naming this file as not understood.
    pub(crate) fn malformed(&self, detail: impl Into<String>) -> Skipped {
        self.skipped(SkipKind::Malformed, detail)
    }

    pub(crate) fn package(
        &self,
        ecosystem: Ecosystem,
        name: impl Into<String>,
        version: impl Into<String>,
        purl: String,
    ) -> Package {
        Package {
            ecosystem,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            purl,
            location: self.location.clone(),
            layer: self.layer.to_string(),
        }
    }
}

fn in_node_modules(path: &str) -> bool {
    path.starts_with("node_modules/") || path.contains("/node_modules/")
}

/// Whether a watched file is one of the OS's own (package databases and
/// release files at their fixed paths): read whatever the layer's caps on
/// files and packages say, so junk elsewhere cannot push them out.
pub(crate) fn always_read(handler: Handler, path: &str) -> bool {
    match handler {
        Handler::Text(FileKind::DpkgStatus) => path == "var/lib/dpkg/status",
        Handler::Text(
            FileKind::OsRelease
            | FileKind::DebianVersion
            | FileKind::AlpineRelease
            | FileKind::RedhatRelease
            | FileKind::ApkInstalled,
        )
        | Handler::RpmSqlite
        | Handler::RpmBdb
        | Handler::RpmNdb => true,
        Handler::Text(_) | Handler::Binary | Handler::Java => false,
    }
}

/// Which cataloger, if any, wants the regular file at `path` (normalised,
/// no leading `/`). `mode` and `size` come from the tar header. Called for
/// every file of every layer: keep it cheap.
pub(crate) fn classify(path: &str, mode: u32, size: u64, limits: &Limits) -> Option<Handler> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let text = |k| Some(Handler::Text(k));
    match path {
        "etc/os-release" | "usr/lib/os-release" => return text(FileKind::OsRelease),
        "etc/debian_version" => return text(FileKind::DebianVersion),
        "etc/alpine-release" => return text(FileKind::AlpineRelease),
        "etc/redhat-release"
        | "etc/centos-release"
        | "etc/rocky-release"
        | "etc/almalinux-release"
        | "etc/fedora-release" => {
            return text(FileKind::RedhatRelease);
        }
        "var/lib/dpkg/status" => return text(FileKind::DpkgStatus),
        "lib/apk/db/installed" => return text(FileKind::ApkInstalled),
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => {
            return Some(Handler::RpmSqlite);
        }
        "var/lib/rpm/Packages" | "usr/lib/sysimage/rpm/Packages" => {
            return Some(Handler::RpmBdb);
        }
        "var/lib/rpm/Packages.db" | "usr/lib/sysimage/rpm/Packages.db" => {
            return Some(Handler::RpmNdb);
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("var/lib/dpkg/status.d/") {
        // distroless: one control file per package, plus .md5sums.
        if !rest.contains('/') && !rest.ends_with(".md5sums") {
            return text(FileKind::DpkgStatus);
        }
        return None;
    }
    match base {
        "METADATA" if path.ends_with(".dist-info/METADATA") => {
            return text(FileKind::PythonMetadata);
        }
        "PKG-INFO" if path.ends_with(".egg-info/PKG-INFO") => {
            return text(FileKind::PythonMetadata);
        }
        "package.json" => {
            // node_modules/NAME/package.json or node_modules/@SCOPE/NAME/package.json
            let parts: Vec<&str> = path.rsplitn(4, '/').collect();
            let direct = parts.get(2) == Some(&"node_modules");
            let scoped = parts.get(3).is_some_and(|p| p.ends_with("node_modules"))
                && parts.get(2).is_some_and(|s| s.starts_with('@'));
            if direct || scoped {
                return text(FileKind::NpmPackage);
            }
            return None;
        }
        "package-lock.json" | "npm-shrinkwrap.json" if !in_node_modules(path) => {
            return text(FileKind::NpmLock);
        }
        "yarn.lock" if !in_node_modules(path) => return text(FileKind::YarnLock),
        "pnpm-lock.yaml" if !in_node_modules(path) => return text(FileKind::PnpmLock),
        "Cargo.lock" if !path.contains(".cargo/registry/") && !path.contains(".cargo/git/") => {
            return text(FileKind::CargoLock);
        }
        "composer.lock" if !path.contains("/vendor/") => return text(FileKind::ComposerLock),
        "installed.json" if path.ends_with("vendor/composer/installed.json") => {
            return text(FileKind::ComposerInstalled);
        }
        _ => {}
    }
    if base.ends_with(".egg-info") {
        // Old-style single-file egg-info (Debian's dist-packages).
        return text(FileKind::PythonMetadata);
    }
    if base.ends_with(".gemspec") && path.contains("specifications/") {
        return text(FileKind::Gemspec);
    }
    if base.ends_with(".deps.json") {
        return text(FileKind::DotnetDeps);
    }
    if let Some((_, ext)) = base.rsplit_once('.') {
        let ext = ext.to_ascii_lowercase();
        if matches!(
            ext.as_str(),
            "jar" | "war" | "ear" | "jpi" | "hpi" | "par" | "sar"
        ) {
            return Some(Handler::Java);
        }
    }
    if limits.scan_binaries && mode & 0o111 != 0 && size >= 1024 {
        return Some(Handler::Binary);
    }
    None
}

/// Why a package file could not be read: its packages are skipped, and
/// the skip names this.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error("invalid Cargo.lock: {0}")]
    CargoLock(toml::de::Error),
    #[error("cargo-auditable data: {0}")]
    Auditable(serde_json::Error),
    #[error("not a readable zip: {0}")]
    Zip(zip::result::ZipError),
}

/// Parse a text file a cataloger watches.
pub(crate) fn parse_text(
    kind: FileKind,
    data: &[u8],
    ctx: &PkgCtx,
    out: &mut LayerInventory,
) -> FileFacts {
    let text = String::from_utf8_lossy(data);
    let mut facts = FileFacts {
        kind,
        packages: Vec::new(),
        distro: None,
    };
    let result: Result<(), ParseError> = (|| {
        match kind {
            FileKind::OsRelease => facts.distro = os::os_release(&text),
            FileKind::DebianVersion => facts.distro = os::debian_version(&text),
            FileKind::AlpineRelease => facts.distro = os::alpine_release(&text),
            FileKind::RedhatRelease => facts.distro = os::redhat_release(&text),
            FileKind::DpkgStatus => facts.packages = dpkg::parse(&text, ctx),
            FileKind::ApkInstalled => facts.packages = simple::apk(&text, ctx),
            FileKind::PythonMetadata => facts.packages = python::parse(&text, ctx),
            FileKind::NpmPackage => facts.packages = npm::package_json(data, ctx)?,
            FileKind::NpmLock => facts.packages = npm::package_lock(data, ctx)?,
            FileKind::YarnLock => facts.packages = npm::yarn_lock(&text, ctx),
            FileKind::PnpmLock => facts.packages = npm::pnpm_lock(&text, ctx),
            FileKind::CargoLock => facts.packages = rust::cargo_lock(&text, ctx)?,
            FileKind::Gemspec => facts.packages = ruby::gemspec(&text, ctx),
            FileKind::ComposerLock | FileKind::ComposerInstalled => {
                facts.packages = php::composer(data, ctx)?
            }
            FileKind::DotnetDeps => facts.packages = dotnet::deps_json(data, ctx)?,
            FileKind::RpmDb | FileKind::Binary | FileKind::JavaArchive | FileKind::Shadow => {}
        }
        Ok(())
    })();
    if let Err(e) = result {
        out.skip(ctx.malformed(e.to_string()));
    }
    facts
}

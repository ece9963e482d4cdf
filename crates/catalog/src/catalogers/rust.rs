//! Rust: `Cargo.lock` (the binary side, cargo-auditable, is in `binary`).

use super::{ParseError, PkgCtx};
use crate::purl;
use inventory::{Ecosystem, Package};

#[derive(serde::Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(serde::Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Packages from a registry or git; workspace and path crates (no
/// `source`) are the project itself, not dependencies.
pub(crate) fn cargo_lock(text: &str, ctx: &PkgCtx) -> Result<Vec<Package>, ParseError> {
    let lock: Lock = toml::from_str(text).map_err(ParseError::CargoLock)?;
    Ok(lock
        .package
        .into_iter()
        .filter(|p| p.source.is_some())
        .map(|p| crate_package(ctx, p.name, p.version))
        .collect())
}

/// A crate as a package, whether a lock file or a binary's
/// cargo-auditable data names it.
pub(crate) fn crate_package(ctx: &PkgCtx, name: String, version: String) -> Package {
    let purl = purl::cargo(&name, &version);
    ctx.package(Ecosystem::Cargo, name, version, purl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lock() {
        let ctx = PkgCtx {
            layer: "l",
            location: "/app/Cargo.lock".into(),
        };
        let p = cargo_lock(
            "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://example.invalid/index\"\n",
            &ctx,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].purl, "pkg:cargo/smallvec@1.6.0");
    }
}

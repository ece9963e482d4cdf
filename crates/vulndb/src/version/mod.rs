//! Version ordering, one implementation per versioning scheme.
//!
//! Every scheme implements [`VersionScheme`]. A comparison either yields an
//! [`Ordering`] or fails with [`VersionError`] when one side is not a valid
//! version in that scheme: the matcher turns that into a "cannot compare"
//! outcome instead of guessing.
//!
//! The distribution schemes (dpkg, apk, rpm), Maven, RubyGems, NuGet and
//! Composer are written here because their orderings are small, precisely specified algorithms
//! with no well-kept crate that also reports unparseable input. SemVer and
//! PEP 440 parse with the `semver` and `pep440_rs` crates.

use inventory::Ecosystem;
use std::cmp::Ordering;

mod apk;
mod composer;
mod dpkg;
mod maven;
mod nuget;
mod pep440;
mod rpm;
mod rubygems;
mod semver;

pub use apk::Apk;
pub use composer::Composer;
pub use dpkg::Dpkg;
pub use maven::Maven;
pub use nuget::NuGet;
pub use pep440::Pep440;
pub use rpm::Rpm;
pub use rubygems::RubyGems;
pub use semver::{GoSemver, Semver};

/// A version string that is not valid in the scheme it was compared in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot compare: {version:?} is not a valid {scheme} version")]
pub struct VersionError {
    /// Name of the scheme (`dpkg`, `apk`, …).
    pub scheme: &'static str,
    /// The offending version string.
    pub version: String,
}

/// A total order over the valid versions of one packaging ecosystem.
pub trait VersionScheme: Send + Sync {
    /// Short name of the scheme, e.g. `dpkg`.
    fn name(&self) -> &'static str;

    /// Check that `v` is a valid version in this scheme.
    fn validate(&self, v: &str) -> Result<(), VersionError>;

    /// Compare two versions. Fails when either is not valid.
    fn compare(&self, a: &str, b: &str) -> Result<Ordering, VersionError>;

    /// Helper for implementations: the error for `v`.
    fn invalid(&self, v: &str) -> VersionError {
        VersionError {
            scheme: self.name(),
            version: v.to_string(),
        }
    }
}

/// What each scheme here defines: how a version parses and how two
/// parsed versions order. Validation, comparison and their errors follow
/// from these alike for every scheme (the `VersionScheme` impl below).
pub(crate) trait Scheme: Send + Sync {
    const NAME: &'static str;
    type Parsed<'a>;
    fn parse(v: &str) -> Option<Self::Parsed<'_>>;
    fn order(a: &Self::Parsed<'_>, b: &Self::Parsed<'_>) -> Ordering;
}

impl<S: Scheme> VersionScheme for S {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn validate(&self, v: &str) -> Result<(), VersionError> {
        S::parse(v).map(|_| ()).ok_or_else(|| self.invalid(v))
    }
    fn compare(&self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        let pa = S::parse(a).ok_or_else(|| self.invalid(a))?;
        let pb = S::parse(b).ok_or_else(|| self.invalid(b))?;
        Ok(S::order(&pa, &pb))
    }
}

/// The version scheme used by an ecosystem, or `None` when drydock has no
/// ordering for it (then every comparison is "cannot compare").
pub fn scheme_for(ecosystem: Ecosystem) -> Option<&'static dyn VersionScheme> {
    Some(match ecosystem {
        Ecosystem::Deb => &Dpkg,
        Ecosystem::Apk => &Apk,
        Ecosystem::Rpm => &Rpm,
        Ecosystem::PyPI => &Pep440,
        Ecosystem::Npm | Ecosystem::Cargo => &Semver,
        Ecosystem::Go => &GoSemver,
        Ecosystem::Maven => &Maven,
        Ecosystem::RubyGems => &RubyGems,
        Ecosystem::Composer => &Composer,
        Ecosystem::NuGet => &NuGet,
    })
}

#[cfg(test)]
pub(crate) fn check_table(scheme: &dyn VersionScheme, table: &[(&str, &str, Ordering)]) {
    for (a, b, want) in table {
        let got = scheme
            .compare(a, b)
            .unwrap_or_else(|e| panic!("{a} vs {b}: {e}"));
        assert_eq!(got, *want, "{}: {a} vs {b}", scheme.name());
        let rev = scheme.compare(b, a).unwrap();
        assert_eq!(
            rev,
            want.reverse(),
            "{}: {b} vs {a} (reversed)",
            scheme.name()
        );
    }
}

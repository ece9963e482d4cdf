//! PEP 440 versions (Python packages), parsed and ordered by `pep440_rs`.

use super::Scheme;
use std::cmp::Ordering;
use std::str::FromStr;

/// PEP 440 ordering (PyPI).
pub struct Pep440;

fn parse(v: &str) -> Option<pep440_rs::Version> {
    pep440_rs::Version::from_str(v.trim()).ok()
}

impl Scheme for Pep440 {
    const NAME: &'static str = "pep440";
    type Parsed<'a> = pep440_rs::Version;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        pa.cmp(pb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn pep440_spec_ordering() {
        // The summary ordering example from PEP 440 ("Summary of permitted
        // suffixes and relative ordering").
        let chain = [
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for w in chain.windows(2) {
            check_table(&Pep440, &[(w[0], w[1], Less)]);
        }
        check_table(
            &Pep440,
            &[
                ("1.0", "1.0.0", Equal),
                ("1.0c1", "1.0rc1", Equal),
                ("1!1.0", "2.0", Greater),
                ("v1.0", "1.0", Equal),
                ("1.0-1", "1.0.post1", Equal),
                ("2.31.0", "2.32.0", Less),
                ("0", "0.0.1", Less),
            ],
        );
        for bad in ["", "1.0-foo-bar", "latest", "1..0"] {
            assert!(Pep440.validate(bad).is_err(), "{bad:?}");
        }
    }
}

//! RubyGems versions: dot-separated segments, split further at
//! digit/letter boundaries; a segment containing letters makes the version
//! a pre-release, and string segments sort before numeric ones. A `-` is
//! read as `.pre.`. Trailing zero segments are not significant.

use super::Scheme;
use std::cmp::Ordering;

/// RubyGems ordering.
pub struct RubyGems;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Num(String),
    Str(String),
}

fn parse(v: &str) -> Option<Vec<Seg>> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if !v.as_bytes()[0].is_ascii_digit()
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return None;
    }
    let v = v.replace('-', ".pre.");
    let mut segs = Vec::new();
    for part in v.split('.') {
        if part.is_empty() {
            return None;
        }
        let b = part.as_bytes();
        let mut s = 0;
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
                let chunk = &part[s..i];
                segs.push(if b[s].is_ascii_digit() {
                    Seg::Num(chunk.trim_start_matches('0').to_string())
                } else {
                    Seg::Str(chunk.to_string())
                });
                s = i;
            }
        }
    }
    // Canonical form: drop trailing zeros of the release part and of the
    // pre-release part.
    let first_str = segs.iter().position(|s| matches!(s, Seg::Str(_)));
    let (mut release, mut pre) = match first_str {
        Some(i) => {
            let pre = segs.split_off(i);
            (segs, pre)
        }
        None => (segs, Vec::new()),
    };
    while matches!(release.last(), Some(Seg::Num(n)) if n.is_empty()) {
        release.pop();
    }
    while matches!(pre.last(), Some(Seg::Num(n)) if n.is_empty()) {
        pre.pop();
    }
    release.extend(pre);
    Some(release)
}

impl Scheme for RubyGems {
    const NAME: &'static str = "rubygems";
    type Parsed<'a> = Vec<Seg>;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        let zero = Seg::Num(String::new());
        for i in 0..pa.len().max(pb.len()) {
            let x = pa.get(i).unwrap_or(&zero);
            let y = pb.get(i).unwrap_or(&zero);
            let o = match (x, y) {
                (Seg::Num(x), Seg::Num(y)) => super::dpkg::cmp_digits(x.as_bytes(), y.as_bytes()),
                (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
                (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
                (Seg::Str(x), Seg::Str(y)) => x.cmp(y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn rubygems_ordering() {
        // Examples from the Gem::Version documentation and its test suite.
        check_table(
            &RubyGems,
            &[
                ("1.0", "1.0.0", Equal),
                ("1.0", "1", Equal),
                ("1.0.a", "1.0", Less),
                ("1.0.a", "1.0.b", Less),
                ("1.0.b1", "1.0.b2", Less),
                ("1.0.b10", "1.0.b2", Greater),
                ("1.0.a10", "1.0.a9", Greater),
                ("1.0.0.rc1", "1.0.0", Less),
                ("1.0.a", "1.a", Equal),
                ("1.9.3", "1.10.0", Less),
                ("2.0.0-rc1", "2.0.0", Less),
                ("1.16.4", "1.16.5", Less),
                ("1.13.10", "1.16.5", Less),
                ("1.8.0", "1.8.0.1", Less),
            ],
        );
        for bad in ["", "junk", "1..2", "1.0 beta", "v1.0"] {
            assert!(RubyGems.validate(bad).is_err(), "{bad:?}");
        }
    }
}

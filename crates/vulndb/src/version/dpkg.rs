//! Debian package versions: `[epoch:]upstream[-revision]`, ordered as in
//! Debian Policy §5.6.12.

use super::Scheme;
use std::cmp::Ordering;

/// dpkg ordering (Debian, Ubuntu).
pub struct Dpkg;

pub(crate) struct Parts<'a> {
    epoch: u64,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(v: &str) -> Option<Parts<'_>> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (e.parse().ok()?, rest)
        }
        None => (0, v),
    };
    let (upstream, revision) = match rest.rfind('-') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if upstream.is_empty() || !upstream.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let ok_up = upstream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+~-:".contains(&b));
    let ok_rev = revision
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+~".contains(&b));
    if !ok_up || !ok_rev || (rest.ends_with('-')) {
        return None;
    }
    Some(Parts {
        epoch,
        upstream,
        revision,
    })
}

/// Weight of a non-digit character: `~` sorts before everything, even the
/// end of the string; letters sort before other characters.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// Compare one component (upstream or revision) by alternating non-digit
/// and digit runs.
fn cmp_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let wa = weight(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let wb = weight(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digit run, compared numerically (leading zeros ignored).
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let o = cmp_digits(&a[si..i], &b[sj..j]);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Numeric comparison of two ASCII digit runs of any length.
pub(crate) fn cmp_digits(a: &[u8], b: &[u8]) -> Ordering {
    let a = trim_zeros(a);
    let b = trim_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

impl Scheme for Dpkg {
    const NAME: &'static str = "dpkg";
    type Parsed<'a> = Parts<'a>;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        pa.epoch
            .cmp(&pb.epoch)
            .then_with(|| cmp_part(pa.upstream, pb.upstream))
            .then_with(|| cmp_part(pa.revision, pb.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn policy_examples() {
        // Debian Policy 5.6.12 and dpkg's own test-suite conventions.
        check_table(
            &Dpkg,
            &[
                ("1.0", "1.0", Equal),
                ("1.0-1", "1.0-1", Equal),
                ("1.0", "1.0-0", Equal),
                ("0:1.0", "1.0", Equal),
                ("1:1.0", "2.0", Greater),
                ("1.0~rc1", "1.0", Less),
                ("1.0~~", "1.0~", Less),
                ("1.0~~a", "1.0~~", Greater),
                ("1.0~", "1.0", Less),
                ("1.0", "1.0a", Less),
                ("1.0a", "1.0+", Less),
                ("1.0+", "1.0.", Less),
                ("1.2.10", "1.2.9", Greater),
                ("1.02", "1.2", Equal),
                ("1.0-1", "1.0-2", Less),
                ("1.0-1ubuntu1", "1.0-1", Greater),
                ("2.36-9+deb12u3", "2.36-9+deb12u10", Less),
                ("2.36-9+deb12u3", "2.36-9", Greater),
                ("3.0.14-1~deb12u1", "3.0.14-1", Less),
                ("3.0.13-1~deb12u1", "3.0.14-1~deb12u1", Less),
                ("1:1.2.13.dfsg-1", "1:1.2.11.dfsg-4.1", Greater),
                ("5.6.1+really5.4.5-1", "5.6.1-1", Greater),
                ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u2", Greater),
                ("7.88.1-10+deb12u8", "8.3.0-3", Less),
                ("1.0-a-1", "1.0-a-2", Less),
            ],
        );
    }

    #[test]
    fn invalid_versions_cannot_compare() {
        for bad in ["", "a1.0", ":1.0", "x:1.0", "1.0-", "1.0 beta", "1:"] {
            assert!(Dpkg.validate(bad).is_err(), "{bad:?} should be invalid");
            assert!(Dpkg.compare(bad, "1.0").is_err());
        }
    }
}

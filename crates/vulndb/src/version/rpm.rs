//! RPM versions `[epoch:]version[-release]`, each part ordered by the
//! rpmvercmp rules: alternating alphabetic and numeric segments, numeric
//! segments newer than alphabetic ones, `~` sorting before anything (even
//! the end) and `^` sorting after the end but before any further segment.

use super::Scheme;
use std::cmp::Ordering;

/// RPM ordering (Red Hat, Fedora, SUSE, …).
pub struct Rpm;

fn parse(v: &str) -> Option<(u64, &str, Option<&str>)> {
    let v = v.trim();
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return None;
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().ok()?, r)
        }
        Some(_) => return None,
        None => (0, v),
    };
    let (ver, rel) = match rest.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    if ver.is_empty() || rel == Some("") || !ver.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((epoch, ver, rel))
}

/// rpmvercmp on one part.
pub(crate) fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let si = i;
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        let sj = j;
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        let (sa, sb) = (&a[si..i], &b[sj..j]);
        if sb.is_empty() {
            // Segments of different kinds: numeric is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let o = if numeric {
            super::dpkg::cmp_digits(sa, sb)
        } else {
            sa.cmp(sb)
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    match (i < a.len(), j < b.len()) {
        (false, false) => Ordering::Equal,
        (true, _) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

impl Scheme for Rpm {
    const NAME: &'static str = "rpm";
    type Parsed<'a> = (u64, &'a str, Option<&'a str>);
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        let (&(ea, va, ra), &(eb, vb, rb)) = (pa, pb);
        let mut o = ea.cmp(&eb).then_with(|| rpmvercmp(va, vb));
        // A missing release matches any release (as rpm does for EVR
        // comparisons where one side has no release).
        if o == Ordering::Equal
            && let (Some(ra), Some(rb)) = (ra, rb)
        {
            o = rpmvercmp(ra, rb);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn rpmvercmp_table() {
        // Cases from rpm's rpmvercmp test suite conventions.
        let table = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("1b.fc17", "1.fc17", Less),
            ("1.0a", "1.0", Greater),
            ("2a", "2.0", Less),
            ("1.0", "1.0~rc1", Greater),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.01", "1.1", Equal),
            ("1.010", "1.1", Greater),
        ];
        for (a, b, want) in table {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn evr_ordering() {
        check_table(
            &Rpm,
            &[
                ("1:1.0-1", "2.0-1", Greater),
                ("0:1.0-1", "1.0-1", Equal),
                ("1.0-1.el9", "1.0-2.el9", Less),
                ("3.0.7-25.el9_3", "3.0.7-24.el9", Greater),
            ],
        );
        assert!(Rpm.validate("").is_err());
        assert!(Rpm.validate("a:1.0").is_err());
        assert!(Rpm.validate("1.0-").is_err());
    }
}

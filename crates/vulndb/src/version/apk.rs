//! Alpine package versions:
//! `N[.N]*[letter][_suffix[N]]*[~hash][-rN]`, where the pre-release suffixes
//! `_alpha < _beta < _pre < _rc` sort before the plain version and the
//! post-release suffixes `_cvs < _svn < _git < _hg < _p` after it.

use super::Scheme;
use std::cmp::Ordering;

/// apk-tools ordering (Alpine).
pub struct Apk;

#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    suffixes: Vec<(i8, &'a str)>,
    revision: &'a str,
}

const SUFFIXES: [(&str, i8); 9] = [
    ("alpha", -4),
    ("beta", -3),
    ("pre", -2),
    ("rc", -1),
    ("cvs", 1),
    ("svn", 2),
    ("git", 3),
    ("hg", 4),
    ("p", 5),
];

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

fn parse(v: &str) -> Option<Parsed<'_>> {
    let mut rest = v.trim();
    let mut numbers = Vec::new();
    loop {
        let n = digits(rest);
        if n == 0 {
            return None;
        }
        numbers.push(&rest[..n]);
        rest = &rest[n..];
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => break,
        }
    }
    let mut letter = None;
    if let Some(&c) = rest.as_bytes().first()
        && c.is_ascii_lowercase()
    {
        letter = Some(c);
        rest = &rest[1..];
    }
    let mut suffixes = Vec::new();
    while let Some(r) = rest.strip_prefix('_') {
        let (name, rank) = SUFFIXES.iter().find(|(name, _)| r.starts_with(name))?;
        let r = &r[name.len()..];
        let n = digits(r);
        suffixes.push((*rank, &r[..n]));
        rest = &r[n..];
    }
    if let Some(r) = rest.strip_prefix('~') {
        let n = r.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    let mut revision = "";
    if let Some(r) = rest.strip_prefix("-r") {
        let n = digits(r);
        if n == 0 {
            return None;
        }
        revision = &r[..n];
        rest = &r[n..];
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Parsed {
        numbers,
        letter,
        suffixes,
        revision,
    })
}

/// Compare the numeric components after the first: a component with a
/// leading zero is a decimal fraction (`1.01 < 1.1`), others are integers.
fn cmp_component(a: &str, b: &str, first: bool) -> Ordering {
    if !first && (a.starts_with('0') || b.starts_with('0')) {
        // Decimal fraction: compare digit strings, shorter-is-padded.
        let (a, b) = (a.trim_end_matches('0'), b.trim_end_matches('0'));
        return a.cmp(b);
    }
    super::dpkg::cmp_digits(a.as_bytes(), b.as_bytes())
}

fn num(s: &str) -> &[u8] {
    s.as_bytes()
}

impl Scheme for Apk {
    const NAME: &'static str = "apk";
    type Parsed<'a> = Parsed<'a>;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        for (i, (x, y)) in pa.numbers.iter().zip(&pb.numbers).enumerate() {
            let o = cmp_component(x, y, i == 0);
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = pa.numbers.len().cmp(&pb.numbers.len());
        if o != Ordering::Equal {
            return o;
        }
        let o = pa.letter.cmp(&pb.letter);
        if o != Ordering::Equal {
            return o;
        }
        let n = pa.suffixes.len().max(pb.suffixes.len());
        for i in 0..n {
            let (ra, na) = pa.suffixes.get(i).copied().unwrap_or((0, ""));
            let (rb, nb) = pb.suffixes.get(i).copied().unwrap_or((0, ""));
            let o = ra
                .cmp(&rb)
                .then_with(|| super::dpkg::cmp_digits(num(na), num(nb)));
            if o != Ordering::Equal {
                return o;
            }
        }
        super::dpkg::cmp_digits(num(pa.revision), num(pb.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn apk_ordering_table() {
        check_table(
            &Apk,
            &[
                ("1.0", "1.0", Equal),
                ("1.0-r0", "1.0", Equal),
                ("1.0-r1", "1.0-r0", Greater),
                ("1.0-r10", "1.0-r9", Greater),
                ("1.2.10", "1.2.9", Greater),
                ("1.2", "1.2.1", Less),
                ("1.0_alpha1", "1.0_beta1", Less),
                ("1.0_beta2", "1.0_pre1", Less),
                ("1.0_pre1", "1.0_rc1", Less),
                ("1.0_rc1", "1.0", Less),
                ("1.0_rc2", "1.0_rc10", Less),
                ("1.0", "1.0_p1", Less),
                ("1.0_cvs1", "1.0_svn1", Less),
                ("1.0_git20240101", "1.0_p1", Less),
                ("1.0_p1", "1.0_p2", Less),
                ("1.0", "1.0a", Less),
                ("1.0a", "1.0b", Less),
                ("1.0z", "1.0.1", Less),
                ("1.01", "1.1", Less),
                ("1.2.11-r4", "1.2.12-r2", Less),
                ("1.3.1-r1", "1.2.12-r2", Greater),
                ("3.3.2-r0", "3.3.2_rc1-r0", Greater),
                ("6.0.5.1", "6.0.5", Greater),
                ("2.4.59-r0", "2.4.60-r0", Less),
                ("1.0_rc1_p1", "1.0_rc1", Greater),
            ],
        );
    }

    #[test]
    fn invalid_versions_cannot_compare() {
        // Keys seen in real secdb files that are not apk versions.
        for bad in ["2021-03-27-r5", "10.0.11-0", "", "v1.0", "1.0_foo", "1.0-r"] {
            assert!(Apk.validate(bad).is_err(), "{bad:?} should be invalid");
        }
        assert!(Apk.compare("1.0", "10.0.11-0").is_err());
    }
}

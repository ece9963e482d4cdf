//! NuGet versions: one to four numeric parts (`Major.Minor.Patch.Revision`,
//! missing parts are 0, so `1.0` = `1.0.0` = `1.0.0.0`), an optional
//! pre-release after `-` ordered as in SemVer 2.0 but with labels compared
//! case-insensitively, and build metadata after `+` that does not take
//! part in ordering.

use super::Scheme;
use std::cmp::Ordering;

/// NuGet ordering.
pub struct NuGet;

pub(crate) struct Parsed {
    numbers: [u64; 4],
    pre: Vec<String>,
}

fn parse(v: &str) -> Option<Parsed> {
    let v = v.trim();
    let v = v.split_once('+').map_or(v, |(main, _)| main);
    let (main, pre) = match v.split_once('-') {
        Some((main, pre)) => (main, Some(pre)),
        None => (v, None),
    };
    let parts: Vec<&str> = main.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = [0u64; 4];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    let pre = match pre {
        None => Vec::new(),
        Some(p) => {
            let labels: Vec<String> = p.split('.').map(str::to_ascii_lowercase).collect();
            let valid = |l: &String| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if !labels.iter().all(valid) {
                return None;
            }
            labels
        }
    };
    Some(Parsed { numbers, pre })
}

/// SemVer §11 identifier order: numeric below alphanumeric, numbers by
/// value, text lexically; a shorter list that is a prefix sorts first.
fn cmp_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater, // a release beats its pre-releases
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

impl Scheme for NuGet {
    const NAME: &'static str = "nuget";
    type Parsed<'a> = Parsed;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        pa.numbers
            .cmp(&pb.numbers)
            .then_with(|| cmp_pre(&pa.pre, &pb.pre))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn ordering() {
        check_table(
            &NuGet,
            &[
                ("1.0", "1.0.0", Equal),
                ("1.0.0", "1.0.0.0", Equal),
                ("1.0.0.1", "1.0.0", Greater),
                ("13.0.1", "13.0.3", Less),
                ("2.0.0", "10.0.0", Less),
                ("1.0.0-beta", "1.0.0", Less),
                ("1.0.0-Beta", "1.0.0-beta", Equal),
                ("1.0.0-alpha", "1.0.0-beta", Less),
                ("1.0.0-beta.2", "1.0.0-beta.11", Less),
                ("1.0.0-beta", "1.0.0-beta.1", Less),
                ("1.0.0-1", "1.0.0-alpha", Less),
                ("1.0.0+build.5", "1.0.0", Equal),
                ("4.7.2-preview.1.20", "4.7.2", Less),
            ],
        );
        for bad in ["", "1.2.3.4.5", "a.b", "1..2", "1.0-", "1.0-be$ta"] {
            assert!(NuGet.validate(bad).is_err(), "{bad:?}");
        }
    }
}

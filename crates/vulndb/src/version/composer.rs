//! Composer (PHP) versions as Composer normalises them: an optional `v`,
//! one to four numeric parts (missing parts are 0), then an optional
//! stability suffix with an optional number (`-dev`, `-alpha2`/`-a2`,
//! `-beta.1`/`-b1`, `-RC3`, `-patch1`/`-pl1`/`-p1`). Stabilities order
//! dev < alpha < beta < RC < stable < patch. Branch names (`dev-main`,
//! `2.x-dev`) have no place in that order and are not valid here.

use super::Scheme;
use std::cmp::Ordering;

/// Composer ordering.
pub struct Composer;

/// (numbers, stability rank, stability number); stable is rank 4.
type Parsed = ([u64; 4], u8, u64);

fn parse(v: &str) -> Option<Parsed> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (main, rest) = v.split_at(split);
    let main = main.strip_suffix('.').unwrap_or(main);
    let parts: Vec<&str> = main.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = [0u64; 4];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        if part.is_empty() {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    let rest = rest
        .trim_start_matches(['-', '_', '.', '+'])
        .to_ascii_lowercase();
    if rest.is_empty() {
        return Some((numbers, 4, 0));
    }
    let label_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let (label, number) = rest.split_at(label_end);
    let rank = match label {
        "dev" => 0,
        "alpha" | "a" => 1,
        "beta" | "b" => 2,
        "rc" => 3,
        "patch" | "pl" | "p" => 5,
        _ => return None,
    };
    let number = number.trim_start_matches(['.', '-', '_']);
    let number = if number.is_empty() {
        0
    } else if number.bytes().all(|b| b.is_ascii_digit()) {
        number.parse().ok()?
    } else {
        return None;
    };
    Some((numbers, rank, number))
}

impl Scheme for Composer {
    const NAME: &'static str = "composer";
    type Parsed<'a> = Parsed;
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
    fn ordering() {
        check_table(
            &Composer,
            &[
                ("1.0", "1.0.0", Equal),
                ("v2.3.4", "2.3.4", Equal),
                ("1.0.0.1", "1.0.0", Greater),
                ("5.4.9", "5.4.10", Less),
                ("1.0.0-dev", "1.0.0-alpha1", Less),
                ("1.0.0-alpha2", "1.0.0-beta1", Less),
                ("1.0.0-a2", "1.0.0-alpha2", Equal),
                ("1.0.0-beta.2", "1.0.0-beta2", Equal),
                ("1.0.0-beta2", "1.0.0-beta10", Less),
                ("1.0.0-RC1", "1.0.0-rc1", Equal),
                ("1.0.0-RC3", "1.0.0", Less),
                ("1.0.0", "1.0.0-p1", Less),
                ("1.0.0-patch1", "1.0.0-pl2", Less),
                ("2.0.0-beta1", "1.9.9", Greater),
            ],
        );
        for bad in [
            "",
            "dev-main",
            "2.x-dev",
            "1.0.0-gamma",
            "1.2.3.4.5",
            "1..2",
        ] {
            assert!(Composer.validate(bad).is_err(), "{bad:?}");
        }
    }
}

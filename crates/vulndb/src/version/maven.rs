//! Maven versions, ordered as Maven's version order specification
//! describes: the version is split into numeric and qualifier items at `.`,
//! `-` and digit/letter transitions; `-` and transitions open a nested
//! list; trailing "null" items (`0`, `ga`, `final`, `release`, empty) are
//! dropped; known qualifiers order as
//! `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp`
//! and unknown qualifiers come after them, alphabetically.

use super::Scheme;
use std::cmp::Ordering;

/// Maven ordering (Java artifacts).
pub struct Maven;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Int(String),
    Str(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_RANK: &str = "5";

fn qualifier_key(q: &str) -> String {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn string_item(s: &str, followed_by_digit: bool) -> Item {
    let s = if followed_by_digit && s.len() == 1 {
        match s {
            "a" => "alpha",
            "b" => "beta",
            "m" => "milestone",
            other => other,
        }
    } else {
        s
    };
    let s = match s {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Str(s.to_string())
}

fn int_item(s: &str) -> Item {
    let t = s.trim_start_matches('0');
    Item::Int(t.to_string())
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Int(s) => s.is_empty(),
            Item::Str(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// Where this item sorts against "nothing" (the padding of a shorter
    /// version): before it (a pre-release qualifier), equal (a null item),
    /// or after it.
    fn sign(&self) -> Ordering {
        match self {
            Item::Int(a) if a.is_empty() => Ordering::Equal,
            Item::Int(_) => Ordering::Greater,
            Item::Str(a) => qualifier_key(a).as_str().cmp(RELEASE_RANK),
            Item::List(l) => tail_signs(l).first().copied().unwrap_or(Ordering::Equal),
        }
    }

    fn cmp_item(&self, other: &Item) -> Ordering {
        use Item::*;
        match (self, other) {
            (Int(a), Int(b)) => super::dpkg::cmp_digits(a.as_bytes(), b.as_bytes()),
            (Str(a), Str(b)) => qualifier_key(a).cmp(&qualifier_key(b)),
            (List(a), List(b)) => cmp_lists(a, b),
            // Unlike items: qualifier < list < number, as Maven ranks them.
            (Str(_), _) | (List(_), Int(_)) => Ordering::Less,
            (Int(_), _) | (List(_), Str(_)) => Ordering::Greater,
        }
    }
}

/// For each position, where the items from there on sort against nothing:
/// the sign of the first item that is not null.
fn tail_signs(items: &[Item]) -> Vec<Ordering> {
    let mut out = vec![Ordering::Equal; items.len()];
    let mut next = Ordering::Equal;
    for (i, item) in items.iter().enumerate().rev() {
        let s = item.sign();
        if s != Ordering::Equal {
            next = s;
        }
        out[i] = next;
    }
    out
}

/// Compare two lists position by position. Maven's own rule compares
/// unlike items by kind alone (a qualifier below a list below a number)
/// while comparing an item with the padding by its sign, and the two
/// disagree: `1.foo < 1-alpha < 1 < 1.foo` is a cycle in Maven's order.
/// So where the rests of the two lists fall on different sides of "nothing",
/// that decides first; Maven's item order applies when they fall on the
/// same side, which keeps every order Maven's specification gives that is
/// not part of such a cycle, and makes the order total.
fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    let (sa, sb) = (tail_signs(a), tail_signs(b));
    for i in 0..a.len().max(b.len()) {
        let ta = sa.get(i).copied().unwrap_or(Ordering::Equal);
        let tb = sb.get(i).copied().unwrap_or(Ordering::Equal);
        if ta != tb {
            return ta.cmp(&tb);
        }
        if ta == Ordering::Equal {
            // Only null items remain on both sides.
            return Ordering::Equal;
        }
        // Neither rest is null, so both lists have an item here.
        let o = a[i].cmp_item(&b[i]);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Drop trailing null items, walking back over non-null nested lists.
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

fn parse(v: &str) -> Option<Item> {
    let v = v.trim().to_ascii_lowercase();
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    // Build as a stack of lists; each '-' or transition opens a sublist.
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let bytes = v.as_bytes();
    let mut start = 0;
    let mut is_digit = false;
    let push_item = |stack: &mut Vec<Vec<Item>>, s: &str, is_digit: bool, next_digit: bool| {
        let item = if is_digit {
            int_item(s)
        } else {
            string_item(s, next_digit)
        };
        stack.last_mut().expect("stack never empty").push(item);
    };
    for i in 0..bytes.len() {
        let c = bytes[i];
        if c == b'.' || c == b'-' {
            if i == start {
                stack
                    .last_mut()
                    .expect("stack")
                    .push(Item::Int(String::new()));
            } else {
                push_item(&mut stack, &v[start..i], is_digit, false);
            }
            start = i + 1;
            if c == b'-' {
                stack.push(Vec::new());
            }
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                push_item(&mut stack, &v[start..i], false, true);
                start = i;
                stack.push(Vec::new());
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                push_item(&mut stack, &v[start..i], true, false);
                start = i;
                stack.push(Vec::new());
            }
            is_digit = false;
        }
    }
    if v.len() > start {
        push_item(&mut stack, &v[start..], is_digit, false);
    }
    // Close the nested lists from the innermost outwards.
    while stack.len() > 1 {
        let mut inner = stack.pop().expect("len > 1");
        normalize(&mut inner);
        stack.last_mut().expect("stack").push(Item::List(inner));
    }
    let mut root = stack.pop().expect("root");
    normalize(&mut root);
    Some(Item::List(root))
}

impl Scheme for Maven {
    const NAME: &'static str = "maven";
    type Parsed<'a> = Item;
    fn parse(v: &str) -> Option<Self::Parsed<'_>> {
        parse(v)
    }
    fn order(pa: &Self::Parsed<'_>, pb: &Self::Parsed<'_>) -> Ordering {
        pa.cmp_item(pb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionScheme, check_table};
    use Ordering::*;

    #[test]
    fn maven_spec_examples() {
        // Examples from Maven's "Version Order Specification".
        check_table(
            &Maven,
            &[
                ("1", "1.1", Less),
                ("1-snapshot", "1", Less),
                ("1", "1-sp", Less),
                ("1-foo2", "1-foo10", Less),
                ("1-1", "1.1", Less),
                ("1.ga", "1", Equal),
                ("1-ga", "1", Equal),
                ("1-0", "1", Equal),
                ("1.0", "1", Equal),
                ("1-sp", "1-ga", Greater),
                ("1-sp.1", "1-ga.1", Greater),
                ("1-a1", "1-alpha-1", Equal),
                ("1-alpha", "1-beta", Less),
                ("1-beta", "1-milestone", Less),
                ("1-milestone", "1-rc", Less),
                ("1-rc", "1-cr", Equal),
                ("1-rc", "1-snapshot", Less),
                ("1.0-RC1", "1.0", Less),
                ("1.0.0", "1.0.0.1", Less),
                ("1-foo", "1-bar", Greater),
                ("1-sp", "1-abc", Less),
            ],
        );
    }

    #[test]
    fn the_order_has_no_cycles() {
        // Maven's own rule gives 1.foo < 1-alpha < 1 < 1.foo, and with
        // `~` < 0-alpha < 0 < `~` (found by the property tests); each
        // version now sits on its side of the release.
        check_table(
            &Maven,
            &[
                ("1-alpha", "1", Less),
                ("1", "1.foo", Less),
                ("1-alpha", "1.foo", Less),
                ("0-alpha", "0", Less),
                ("0", "~", Less),
                ("0-alpha", "~", Less),
                ("1.0.alpha", "1", Less),
                ("1", "1.sp", Less),
                ("1.0.alpha", "1.sp", Less),
                // Unlike items on the same side keep Maven's order.
                ("1.sp", "1.0.1", Less),
                ("32-jre", "32.0.1-jre", Less),
                ("32.0.0-jre", "32-jre", Equal),
                ("5.3.0.RC1", "5.3.0", Less),
            ],
        );
    }

    #[test]
    fn real_artifact_versions() {
        // Versions from the GHSA records for Spring, log4j and jackson.
        check_table(
            &Maven,
            &[
                ("5.2.19.RELEASE", "5.2.20.RELEASE", Less),
                ("5.2.20.RELEASE", "5.2.20", Equal),
                ("5.2.20.RELEASE", "5.3.0", Less),
                ("5.3.17", "5.3.18", Less),
                ("2.15.0", "2.16.0", Less),
                ("2.15.0-rc1", "2.15.0", Less),
                ("2.13.2", "2.13.2.1", Less),
                ("2.13.2.1", "2.13.3", Less),
                ("2.12.6.1", "2.12.7", Less),
                ("1.0-SNAPSHOT", "1.0", Less),
                ("2.5.12", "2.6.0", Less),
            ],
        );
        assert!(Maven.validate("").is_err());
        assert!(Maven.validate("1.0 beta").is_err());
    }
}

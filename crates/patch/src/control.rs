//! Debian control data: stanzas (`Packages`, `status`, `control`),
//! dependency fields and version ordering (the vulndb's dpkg scheme).

use std::cmp::Ordering;
use vulndb::version::{Dpkg, VersionScheme};

/// One paragraph of `Field: value` lines, in their original order (dpkg
/// keeps the order it wrote; rewriting `status` keeps it too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    pub fields: Vec<(String, String)>,
}

impl Stanza {
    /// A field's value (names compare case-insensitively, as in dpkg).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn package(&self) -> &str {
        self.get("Package").unwrap_or_default()
    }

    pub fn version(&self) -> &str {
        self.get("Version").unwrap_or_default()
    }

    /// Set a field, replacing it in place or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(f) => f.1 = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }

    /// Insert a field after another one (or append).
    pub fn insert_after(&mut self, after: &str, name: &str, value: impl Into<String>) {
        self.fields.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        let at = self
            .fields
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(after))
            .map_or(self.fields.len(), |i| i + 1);
        self.fields.insert(at, (name.to_string(), value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// The stanza as dpkg writes it, with its trailing blank line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(k);
            s.push(':');
            if !v.starts_with('\n') && !v.is_empty() {
                s.push(' ');
            }
            s.push_str(v);
            s.push('\n');
        }
        s
    }
}

/// Parse paragraphs separated by blank lines. Continuation lines (starting
/// with a space or tab) belong to the field before them.
pub fn parse_stanzas(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = cur.fields.last_mut() {
                last.1.push('\n');
                last.1.push_str(line);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.fields
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    out
}

/// Compare two Debian versions; an invalid one sorts lowest (it can then
/// never satisfy a `>=` constraint, which is the safe way to be wrong).
pub fn cmp_version(a: &str, b: &str) -> Ordering {
    match Dpkg.compare(a, b) {
        Ok(o) => o,
        Err(_) => match (Dpkg.validate(a).is_ok(), Dpkg.validate(b).is_ok()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => a.cmp(b),
        },
    }
}

/// A version relation of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Relation {
    fn parse(s: &str) -> Option<Relation> {
        Some(match s {
            "<<" => Relation::Lt,
            "<=" | "<" => Relation::Le,
            "=" => Relation::Eq,
            ">=" | ">" => Relation::Ge,
            ">>" => Relation::Gt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Lt => "<<",
            Relation::Le => "<=",
            Relation::Eq => "=",
            Relation::Ge => ">=",
            Relation::Gt => ">>",
        }
    }

    pub fn holds(self, have: &str, want: &str) -> bool {
        let o = cmp_version(have, want);
        match self {
            Relation::Lt => o == Ordering::Less,
            Relation::Le => o != Ordering::Greater,
            Relation::Eq => o == Ordering::Equal,
            Relation::Ge => o != Ordering::Less,
            Relation::Gt => o == Ordering::Greater,
        }
    }
}

/// One alternative of a dependency: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub constraint: Option<(Relation, String)>,
}

impl Dep {
    pub fn satisfied_by(&self, version: &str) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(r, v)| r.holds(version, v))
    }
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((r, v)) => write!(f, "{} ({} {v})", self.name, r.as_str()),
            None => f.write_str(&self.name),
        }
    }
}

/// Parse a `Depends`-style field: comma-separated groups of `|`
/// alternatives. Architecture restrictions (`[amd64]`) and build profiles
/// (`<stage1>`) do not occur in binary packages' fields and are dropped.
pub fn parse_depends(field: &str) -> Vec<Vec<Dep>> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        let mut alts = Vec::new();
        for alt in group.split('|') {
            let alt = alt.trim();
            if alt.is_empty() {
                continue;
            }
            let (name_part, rest) = match alt.find('(') {
                Some(i) => (alt[..i].trim(), Some(&alt[i + 1..])),
                None => (alt.split_whitespace().next().unwrap_or(""), None),
            };
            let name = name_part
                .split(':')
                .next()
                .unwrap_or(name_part)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            let constraint = rest.and_then(|r| {
                let r = r.split(')').next()?.trim();
                let op_len = r
                    .find(|c: char| !matches!(c, '<' | '>' | '='))
                    .unwrap_or(r.len());
                let rel = Relation::parse(&r[..op_len])?;
                Some((rel, r[op_len..].trim().to_string()))
            });
            if !name.is_empty() {
                alts.push(Dep { name, constraint });
            }
        }
        if !alts.is_empty() {
            groups.push(alts);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_parse_alternatives_and_constraints() {
        let d = parse_depends("libc6 (>= 2.34), libgcc-s1:any | libgcc1 (>> 1:3), debconf");
        assert_eq!(d.len(), 3);
        assert_eq!(d[0][0].name, "libc6");
        assert_eq!(d[0][0].constraint, Some((Relation::Ge, "2.34".into())));
        assert_eq!(d[1][0].name, "libgcc-s1");
        assert_eq!(d[1][1].constraint, Some((Relation::Gt, "1:3".into())));
        assert!(d[0][0].satisfied_by("2.36-9+deb12u1"));
        assert!(!d[0][0].satisfied_by("2.31-13"));
    }

    #[test]
    fn stanzas_keep_continuations() {
        let s = parse_stanzas("Package: a\nDescription: x\n more\n\nPackage: b\nVersion: 1\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("description"), Some("x\n more"));
        assert_eq!(s[0].render(), "Package: a\nDescription: x\n more\n");
        assert_eq!(s[1].version(), "1");
    }
}

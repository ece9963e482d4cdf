use std::fmt;

/// A repository name, checked against the distribution-spec grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// What a manifest is addressed by: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(crate::Digest),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid repository name {0:?}: {1}")]
    Name(String, &'static str),
    #[error("invalid tag {0:?}: {1}")]
    Tag(String, &'static str),
    #[error("invalid reference {0:?}: {1}")]
    Reference(String, String),
}

/// Longest name we accept; the spec suggests clients keep host+name under 255.
const MAX_NAME_LEN: usize = 255;

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or "-"+; must be followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Why `s` is not a repository name.
fn name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("it is empty");
    }
    if s.len() > MAX_NAME_LEN {
        return Some("it is longer than 255 characters");
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("repository names are lower case");
    }
    if s.split('/').any(str::is_empty) {
        return Some("a path component is empty (leading, trailing or doubled '/')");
    }
    if s.split('/').all(valid_component) {
        return None;
    }
    if s.bytes()
        .any(|b| !(is_alnum(b) || matches!(b, b'.' | b'_' | b'-' | b'/')))
    {
        return Some("only a-z, 0-9, '.', '_', '-' and '/' may appear");
    }
    Some(
        "each path component must start and end with a letter or digit, with single '.', '_' or '__', or runs of '-' between",
    )
}

impl Name {
    pub fn parse(s: &str) -> Result<Name, NameError> {
        match name_problem(s) {
            Some(why) => Err(NameError::Name(s.to_string(), why)),
            None => Ok(Name(s.to_string())),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::Tag(
                s.to_string(),
                "a tag is 1 to 128 of A-Z, a-z, 0-9, '_', '.', '-', not starting with '.' or '-'",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Reference {
    /// A digest if it contains `:`, otherwise a tag.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            crate::Digest::parse(s)
                .map(Reference::Digest)
                .map_err(|e| NameError::Reference(s.to_string(), e.to_string()))
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// A full image reference as users type it: `HOST[:PORT]/REPO[:TAG][@DIGEST]`.
/// The host is mandatory here (drydock never guesses a default registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host` or `host:port`.
    pub host: String,
    pub name: Name,
    pub tag: Option<Tag>,
    pub digest: Option<crate::Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, NameError> {
        let bad = |why: &str| NameError::Reference(s.to_string(), why.to_string());
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(crate::Digest::parse(d).map_err(|e| bad(&e.to_string()))?),
            ),
            None => (s, None),
        };
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected HOST/REPO"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        // A ':' after the last '/' separates the tag.
        let (name, tag) = match path.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(Tag::parse(t)?)),
            _ => (path, None),
        };
        Ok(ImageRef {
            host: host.to_string(),
            name: Name::parse(name)?,
            tag,
            digest,
        })
    }

    /// The reference to fetch: the digest if given, else the tag, else `latest`.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag(Tag("latest".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in ["a", "library/ubuntu", "a.b_c__d---e/f0", "x/y/z", "0"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a_", "a/_b", "a b", "a:b",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
        assert!(Name::parse(&"a".repeat(256)).is_err());
        // Each refusal says why.
        for (bad, why) in [
            ("Team/App", "lower case"),
            ("team//app", "empty"),
            ("team/app!", "only a-z"),
            ("team/-app", "start and end"),
            ("", "empty"),
        ] {
            let e = Name::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(
            Tag::parse(".v1")
                .unwrap_err()
                .to_string()
                .contains("not starting")
        );
    }

    #[test]
    fn tags_follow_the_grammar() {
        for ok in ["latest", "_x", "1.0-rc.1", &"a".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.name.as_str(), "team/app");
        assert_eq!(r.tag.unwrap().as_str(), "v1");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = ImageRef::parse(&format!("localhost/app@{d}")).unwrap();
        assert_eq!(r.reference().to_string(), d);
        assert!(ImageRef::parse("app:v1").is_err());
    }
}

//! Package URLs (purl): `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`.
//!
//! Only building is needed here. Segments are percent-encoded except for
//! unreserved characters; qualifiers are sorted by key as the purl spec's
//! canonical form asks.

use inventory::Distro;
use std::collections::BTreeMap;

/// Percent-encode one purl segment (name, namespace part, version or
/// qualifier value).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build a purl. `namespace` may hold several `/`-separated parts, each
/// encoded separately. Empty qualifier values are dropped.
pub fn build(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut s = format!("pkg:{ty}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for part in ns.split('/').filter(|p| !p.is_empty()) {
            s.push_str(&encode(part));
            s.push('/');
        }
    }
    s.push_str(&encode(name));
    if !version.is_empty() {
        s.push('@');
        s.push_str(&encode(version));
    }
    let q: BTreeMap<&str, &str> = qualifiers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    append_qualifiers(&mut s, &q);
    s
}

fn append_qualifiers(s: &mut String, q: &BTreeMap<&str, &str>) {
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&encode(v));
    }
}

/// PyPI names are normalised (PEP 503: lower case, runs of `-_.` to `-`).
pub fn pypi_name(name: &str) -> String {
    inventory::pep503_name(name)
}

pub fn pypi(name: &str, version: &str) -> String {
    build("pypi", None, &pypi_name(name), version, &[])
}

/// `@scope/name` puts the scope in the namespace.
pub fn npm(name: &str, version: &str) -> String {
    match name.split_once('/') {
        Some((scope, n)) if scope.starts_with('@') => build("npm", Some(scope), n, version, &[]),
        _ => build("npm", None, name, version, &[]),
    }
}

pub fn cargo(name: &str, version: &str) -> String {
    build("cargo", None, name, version, &[])
}

/// Go module paths: all but the last element form the namespace.
pub fn golang(path: &str, version: &str) -> String {
    match path.rsplit_once('/') {
        Some((ns, n)) => build("golang", Some(ns), n, version, &[]),
        None => build("golang", None, path, version, &[]),
    }
}

pub fn maven(group: &str, artifact: &str, version: &str) -> String {
    build("maven", Some(group), artifact, version, &[])
}

pub fn gem(name: &str, version: &str) -> String {
    build("gem", None, name, version, &[])
}

/// `vendor/package`.
pub fn composer(name: &str, version: &str) -> String {
    match name.split_once('/') {
        Some((ns, n)) => build("composer", Some(ns), n, version, &[]),
        None => build("composer", None, name, version, &[]),
    }
}

pub fn nuget(name: &str, version: &str) -> String {
    build("nuget", None, name, version, &[])
}

/// Re-target an OS package purl (`pkg:deb/debian/…`, `pkg:apk/alpine/…`,
/// `pkg:rpm/redhat/…`) at the image's distribution: the namespace becomes
/// the distribution id and a `distro=ID-VERSION` qualifier is added.
pub fn with_distro(purl: &str, distro: &Distro) -> String {
    let Some(rest) = purl.strip_prefix("pkg:") else {
        return purl.to_string();
    };
    let Some((ty, rest)) = rest.split_once('/') else {
        return purl.to_string();
    };
    let Some((_, rest)) = rest.split_once('/') else {
        return purl.to_string();
    };
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, q),
        None => (rest, ""),
    };
    let mut q: BTreeMap<&str, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    let distro_q = if distro.version_id.is_empty() {
        distro.id.clone()
    } else {
        format!("{}-{}", distro.id, distro.version_id)
    };
    q.insert("distro", encode(&distro_q));
    let mut s = format!("pkg:{ty}/{}/{body}", encode(&distro.id));
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_purls() {
        assert_eq!(npm("@babel/core", "7.0.0"), "pkg:npm/%40babel/core@7.0.0");
        assert_eq!(pypi("PyYAML", "5.3"), "pkg:pypi/pyyaml@5.3");
        assert_eq!(pypi_name("zope.interface__x"), "zope-interface-x");
        assert_eq!(
            golang("github.com/pkg/errors", "v0.9.1"),
            "pkg:golang/github.com/pkg/errors@v0.9.1"
        );
        assert_eq!(
            build(
                "deb",
                Some("debian"),
                "libc6",
                "2.36-9+deb12u4",
                &[("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
        );
        let d = Distro {
            id: "debian".into(),
            version_id: "12".into(),
            codename: None,
            pretty_name: None,
        };
        assert_eq!(
            with_distro("pkg:deb/debian/libc6@2.36?arch=amd64", &d),
            "pkg:deb/debian/libc6@2.36?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            with_distro("pkg:deb/debian/x@1", &d),
            "pkg:deb/debian/x@1?distro=debian-12"
        );
    }
}

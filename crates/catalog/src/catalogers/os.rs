//! Distribution identification: os-release and the older release files.

use inventory::Distro;

/// Parse `KEY=value` lines with shell-style quoting.
pub(crate) fn parse_env(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = &v[1..v.len() - 1];
            let mut s = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else {
            v.to_string()
        };
        out.push((k.trim().to_string(), v));
    }
    out
}

pub(crate) fn os_release(text: &str) -> Option<Distro> {
    let kv = parse_env(text);
    let get = |k: &str| {
        kv.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let id = get("ID")?.to_ascii_lowercase();
    Some(Distro {
        version_id: get("VERSION_ID").unwrap_or_default(),
        codename: get("VERSION_CODENAME"),
        pretty_name: get("PRETTY_NAME"),
        id,
    })
}

/// `/etc/debian_version`: `12.5`, or `bookworm/sid` on testing.
pub(crate) fn debian_version(text: &str) -> Option<Distro> {
    let v = text.trim();
    if v.is_empty() {
        return None;
    }
    let major = v.split('.').next().unwrap_or(v);
    let version_id = if !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) {
        major.to_string()
    } else {
        String::new()
    };
    Some(Distro {
        id: "debian".into(),
        version_id,
        codename: None,
        pretty_name: Some(format!("Debian {v}")),
    })
}

pub(crate) fn alpine_release(text: &str) -> Option<Distro> {
    let v = text.trim();
    (!v.is_empty()).then(|| Distro {
        id: "alpine".into(),
        version_id: v.to_string(),
        codename: None,
        pretty_name: Some(format!("Alpine Linux v{v}")),
    })
}

/// `Red Hat Enterprise Linux release 9.3 (Plow)`, `CentOS Linux release
/// 7.9.2009 (Core)`, `Rocky Linux release 9.3 (Blue Onyx)`, `Fedora release 39`.
pub(crate) fn redhat_release(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let lower = line.to_ascii_lowercase();
    let id = if lower.starts_with("red hat") {
        "rhel"
    } else if lower.starts_with("centos") {
        "centos"
    } else if lower.starts_with("rocky") {
        "rocky"
    } else if lower.starts_with("almalinux") {
        "almalinux"
    } else if lower.starts_with("fedora") {
        "fedora"
    } else if lower.starts_with("oracle") {
        "ol"
    } else {
        return None;
    };
    let version = lower
        .split_once(" release ")
        .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default();
    // os-release's VERSION_ID for these is major[.minor].
    let mut parts = version.split('.');
    let version_id = match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if id != "centos" => format!("{a}.{b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    };
    Some(Distro {
        id: id.into(),
        version_id,
        codename: None,
        pretty_name: Some(line.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_release() {
        let d = os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        )
        .unwrap();
        assert_eq!(d.id, "debian");
        assert_eq!(d.version_id, "12");
        assert_eq!(d.codename.as_deref(), Some("bookworm"));
        assert_eq!(
            d.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert!(os_release("NAME=x\n").is_none());
    }

    #[test]
    fn reads_fallbacks() {
        assert_eq!(debian_version("12.5\n").unwrap().version_id, "12");
        assert_eq!(debian_version("bookworm/sid\n").unwrap().version_id, "");
        assert_eq!(alpine_release("3.20.3\n").unwrap().version_id, "3.20.3");
        let r = redhat_release("Red Hat Enterprise Linux release 9.3 (Plow)\n").unwrap();
        assert_eq!((r.id.as_str(), r.version_id.as_str()), ("rhel", "9.3"));
        let c = redhat_release("CentOS Linux release 7.9.2009 (Core)").unwrap();
        assert_eq!((c.id.as_str(), c.version_id.as_str()), ("centos", "7"));
    }
}

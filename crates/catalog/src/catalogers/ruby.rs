//! Ruby: installed gem specifications (`specifications/*.gemspec`), which
//! RubyGems writes in a fixed, generated form (`s.name = "rack".freeze`).

use super::PkgCtx;
use crate::purl;
use inventory::{Ecosystem, Package};

fn quoted(s: &str) -> Option<&str> {
    let start = s.find(['"', '\''])?;
    let q = s.as_bytes()[start] as char;
    let rest = &s[start + 1..];
    let end = rest.find(q)?;
    Some(&rest[..end])
}

pub(crate) fn gemspec(text: &str, ctx: &PkgCtx) -> Vec<Package> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        let Some((lhs, rhs)) = t.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim();
        if name.is_none() && lhs.ends_with(".name") {
            name = quoted(rhs).map(str::to_string);
        } else if version.is_none() && lhs.ends_with(".version") {
            version = quoted(rhs).map(str::to_string);
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => {
            let purl = purl::gem(&n, &v);
            vec![ctx.package(Ecosystem::RubyGems, n, v, purl)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gemspec() {
        let ctx = PkgCtx {
            layer: "l",
            location: "/x/specifications/rack-2.2.3.gemspec".into(),
        };
        let p = gemspec(
            "Gem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"2.2.3\"\n  s.required_rubygems_version = Gem::Requirement.new(\">= 0\".freeze)\nend\n",
            &ctx,
        );
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("rack", "2.2.3")
        );
    }
}

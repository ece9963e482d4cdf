//! Alpine secdb JSON (`secdb.alpinelinux.org/<branch>/<repo>.json`).
//!
//! Each package is the origin (source) package; each `secfixes` key is the
//! first apk version of the branch that contains the fixes listed under it,
//! so installed versions below the key are affected. Key `"0"` means the
//! package was never affected. A listed string may hold several
//! space-separated identifiers: the first is the advisory id, the others
//! its aliases.

use crate::Error;
use crate::build::{Builder, extend_unique};
use crate::model::FindingStatus;
use crate::store::{Entry, Event};
use crate::version::{Apk, VersionScheme};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct SecDb {
    distroversion: String,
    #[serde(default)]
    reponame: Option<String>,
    packages: Vec<PackageItem>,
}

#[derive(Deserialize)]
struct PackageItem {
    pkg: Pkg,
}

#[derive(Deserialize)]
struct Pkg {
    name: String,
    #[serde(default)]
    secfixes: Option<serde_json::Map<String, Value>>,
}

/// `v3.20` from a secdb `distroversion`.
fn branch(distroversion: &str) -> String {
    let d = distroversion.trim();
    if d.starts_with('v') || d == "edge" {
        d.to_string()
    } else {
        format!("v{d}")
    }
}

pub(crate) fn read_secdb(b: &mut Builder, label: &str, v: Value) -> Result<(), Error> {
    let db: SecDb = serde_json::from_value(v).map_err(|e| Error::malformed(label, None, e))?;
    let branch = branch(&db.distroversion);
    let repo = db.reponame.unwrap_or_else(|| "main".into());
    let source = b.source(&format!("alpine:{branch}/{repo}"));
    let space = format!("alpine:{branch}");
    for item in db.packages {
        let pkg = item.pkg;
        b.record(source, None);
        let Some(secfixes) = pkg.secfixes else {
            continue;
        };
        // id -> (fixed key, aliases); an id listed under several keys keeps
        // the lowest version (the first that contains the fix).
        let mut per_id: Vec<(String, String, Vec<String>)> = Vec::new();
        for (fixed, ids) in secfixes {
            let fixed = fixed.trim().to_string();
            let Some(ids) = ids.as_array() else {
                if ids.is_null() {
                    continue;
                }
                return Err(Error::malformed(
                    label,
                    Some(&pkg.name),
                    format!("secfixes {fixed:?} is not a list"),
                ));
            };
            for s in ids {
                let Some(s) = s.as_str() else {
                    return Err(Error::malformed(
                        label,
                        Some(&pkg.name),
                        format!("secfixes {fixed:?} holds a non-string"),
                    ));
                };
                let mut words = s.split_whitespace();
                let Some(id) = words.next() else { continue };
                let aliases: Vec<String> = words.map(str::to_string).collect();
                match per_id.iter_mut().find(|(i, _, _)| i == id) {
                    Some((_, cur, al)) => {
                        extend_unique(al, aliases);
                        let lower = cur.as_str() == "0"
                            || (fixed != "0"
                                && Apk.compare(&fixed, cur) == Ok(std::cmp::Ordering::Less));
                        if lower {
                            *cur = fixed.clone();
                        }
                    }
                    None => per_id.push((id.to_string(), fixed.clone(), aliases)),
                }
            }
        }
        for (id, fixed, aliases) in per_id {
            let adv = b.advisory(&id, |d| extend_unique(&mut d.aliases, aliases));
            let not_affected = fixed == "0";
            b.add(
                &space,
                &pkg.name,
                Entry {
                    advisory: adv,
                    ranges: if not_affected {
                        Vec::new()
                    } else {
                        vec![vec![
                            Event::Introduced("0".into()),
                            Event::Fixed(fixed.into()),
                        ]]
                    },
                    versions: Vec::new(),
                    open_status: FindingStatus::Unfixed,
                    note: None,
                    distro_severity: None,
                    informational: None,
                    source,
                },
                not_affected,
            );
        }
    }
    Ok(())
}

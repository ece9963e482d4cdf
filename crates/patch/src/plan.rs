//! Choosing upgrades: which archive version of each vulnerable package,
//! which dependencies come with it, and what is refused and why. Pure:
//! the caller supplies the installed set, the verified archive index and
//! the control data of the chosen packages.

use crate::archive::{Candidate, Index};
use crate::control::{Dep, Stanza, cmp_version, parse_depends};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// A fixable finding on an installed binary package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixable {
    pub id: String,
    pub package: String,
    pub installed_version: String,
    pub fixed_version: String,
    pub severity: String,
}

/// Which archive version a vulnerable package goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The lowest version that clears every fixable finding (fewest changes).
    #[default]
    Lowest,
    /// The newest version the configured suites hold.
    Newest,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    pub target: Target,
    /// Upgrade packages whose maintainer scripts would have to run ("patch
    /// anyway"): the scripts are not run; the plan says so.
    pub allow_maintainer_scripts: bool,
    /// Refuse the whole patch when any upgrade is refused.
    pub all_or_nothing: bool,
}

/// One package upgrade (or a new package a new version depends on).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upgrade {
    pub package: String,
    /// `None`: not installed before (a new dependency).
    pub from: Option<String>,
    pub to: String,
    /// Finding ids this upgrade clears.
    pub clears: Vec<String>,
    /// Why it is in the plan: its findings, or the package needing it.
    pub reason: String,
    pub suite: String,
    #[serde(skip)]
    #[schema(ignore)]
    pub candidate: Option<Candidate>,
}

/// An upgrade the plan leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refusal {
    pub package: String,
    pub installed: String,
    pub wanted: Option<String>,
    pub findings: Vec<String>,
    pub reason: String,
}

/// The upgrades chosen for one image (one platform) and those refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub architecture: String,
    pub upgrades: Vec<Upgrade>,
    pub refusals: Vec<Refusal>,
    /// Why this image (platform) was not planned at all, when it was not:
    /// the configured archives carry no packages for its architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Plan {
    pub fn cleared(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .upgrades
            .iter()
            .flat_map(|u| u.clears.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// One line per upgrade: `pkg old -> new`.
    pub fn summary(&self) -> String {
        self.upgrades
            .iter()
            .map(|u| {
                format!(
                    "{} {} -> {}",
                    u.package,
                    u.from.as_deref().unwrap_or("(new)"),
                    u.to
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The installed packages of an image (`Status: install ok installed`).
pub type Installed = HashMap<String, Stanza>;

/// Why a package may not be upgraded by adding files alone, if it may not.
pub type Blocked = HashMap<String, String>;

/// Choose upgrades. `blocked` names packages (at a version) that must not
/// be upgraded, with the reason (maintainer scripts, found by the caller
/// from the control data of an earlier round).
pub fn choose(
    installed: &Installed,
    index: &Index,
    fixable: &[Fixable],
    opts: &PlanOptions,
    blocked: &Blocked,
    architecture: &str,
) -> Plan {
    let mut groups: BTreeMap<&str, Vec<&Fixable>> = BTreeMap::new();
    for f in fixable {
        // A finding on a version no longer installed (stale) is not ours.
        if installed
            .get(&f.package)
            .is_some_and(|s| s.version() == f.installed_version)
        {
            groups.entry(&f.package).or_default().push(f);
        }
    }
    let mut plan = Plan {
        architecture: architecture.to_string(),
        ..Plan::default()
    };
    let mut accepted: BTreeMap<String, Upgrade> = BTreeMap::new();
    for (pkg, findings) in groups {
        let current = installed[pkg].version().to_string();
        let ids: Vec<String> = sorted_ids(&findings);
        let refuse = |reason: String, wanted: Option<String>| Refusal {
            package: pkg.to_string(),
            installed: current.clone(),
            wanted,
            findings: ids.clone(),
            reason,
        };
        let candidates: Vec<&Candidate> = index
            .versions(pkg)
            .iter()
            .filter(|c| cmp_version(c.version(), &current) == Ordering::Greater)
            .filter(|c| arch_ok(&c.stanza, architecture))
            .collect();
        let need = findings
            .iter()
            .map(|f| f.fixed_version.as_str())
            .max_by(|a, b| cmp_version(a, b))
            .unwrap_or_default();
        let pick = match opts.target {
            Target::Newest => candidates.last().copied(),
            Target::Lowest => candidates
                .iter()
                .find(|c| cmp_version(c.version(), need) != Ordering::Less)
                .or(candidates.last())
                .copied(),
        };
        let Some(pick) = pick else {
            plan.refusals.push(refuse(
                format!(
                    "the configured archive has no version of {pkg} newer than {current} (a fix needs {need})"
                ),
                Some(need.to_string()),
            ));
            continue;
        };
        let clears: Vec<String> = sorted_ids(
            &findings
                .iter()
                .filter(|f| cmp_version(pick.version(), &f.fixed_version) != Ordering::Less)
                .copied()
                .collect::<Vec<_>>(),
        );
        if clears.is_empty() {
            plan.refusals.push(refuse(
                format!(
                    "the newest {pkg} in the configured archive is {}, older than the fix {need}",
                    pick.version()
                ),
                Some(need.to_string()),
            ));
            continue;
        }
        let root = Upgrade {
            package: pkg.to_string(),
            from: Some(current.clone()),
            to: pick.version().to_string(),
            reason: format!(
                "clears {} finding{}",
                clears.len(),
                if clears.len() == 1 { "" } else { "s" }
            ),
            clears,
            suite: pick.suite.clone(),
            candidate: Some(pick.clone()),
        };
        match resolve(
            root,
            installed,
            index,
            opts,
            blocked,
            &accepted,
            architecture,
        ) {
            Ok(closure) => {
                for u in closure {
                    match accepted.get_mut(&u.package) {
                        // Needed as a dependency earlier and vulnerable itself.
                        Some(prev) => {
                            if cmp_version(&u.to, &prev.to) == Ordering::Greater {
                                let reason = u.reason.clone();
                                *prev = Upgrade { reason, ..u };
                            } else {
                                prev.clears.extend(u.clears);
                            }
                        }
                        None => {
                            accepted.insert(u.package.clone(), u);
                        }
                    }
                }
            }
            Err(reason) => plan
                .refusals
                .push(refuse(reason.to_string(), Some(pick.version().to_string()))),
        }
    }
    if opts.all_or_nothing && !plan.refusals.is_empty() {
        for u in accepted.into_values() {
            plan.refusals.push(Refusal {
                package: u.package,
                installed: u.from.unwrap_or_default(),
                wanted: Some(u.to),
                findings: u.clears,
                reason: "another upgrade was refused and the patch is all-or-nothing".into(),
            });
        }
        return plan;
    }
    plan.upgrades = accepted.into_values().collect();
    plan
}

fn sorted_ids(f: &[&Fixable]) -> Vec<String> {
    let mut v: Vec<String> = f.iter().map(|f| f.id.clone()).collect();
    v.sort();
    v.dedup();
    v
}

fn arch_ok(s: &Stanza, arch: &str) -> bool {
    matches!(s.get("Architecture"), Some(a) if a == arch || a == "all")
}

/// Why an upgrade's closure cannot be made. Its text is the refusal's
/// reason, as users read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ResolveError {
    /// A cycle the work list never left (a guard, not seen in practice).
    #[error("dependency resolution did not settle")]
    Unsettled,
    /// The upgrade a finding asked for is itself refused: the caller's
    /// reason, as it gave it.
    #[error("{0}")]
    Refused(String),
    /// An upgrade the closure needs is refused.
    #[error("needs {package} {version}, which is refused: {why}")]
    NeedsRefused {
        package: String,
        version: String,
        why: String,
    },
    /// No alternative of a dependency is present or to be had.
    #[error(
        "{package} {version} depends on {alternatives}, which neither the image nor the configured archive satisfies"
    )]
    Unsatisfiable {
        package: String,
        version: String,
        alternatives: String,
    },
    /// A dependency would have to go back a version.
    #[error(
        "{package} {version} depends on {dep}, which would need a downgrade of {name} {installed}"
    )]
    Downgrade {
        package: String,
        version: String,
        dep: String,
        name: String,
        installed: String,
    },
    /// An installed package pinned to the old version has no newer one
    /// that accepts the upgrade.
    #[error(
        "installed {other} {installed} requires {alternatives}, and the configured archive has no {other} that accepts {package} {version}"
    )]
    BreaksInstalled {
        other: String,
        installed: String,
        alternatives: String,
        package: String,
        version: String,
    },
}

/// The closure of one root upgrade: it and every upgrade or new package
/// its dependencies (and the installed packages depending on what changes)
/// need, or the reason it cannot be done.
fn resolve(
    root: Upgrade,
    installed: &Installed,
    index: &Index,
    opts: &PlanOptions,
    blocked: &Blocked,
    accepted: &BTreeMap<String, Upgrade>,
    arch: &str,
) -> Result<Vec<Upgrade>, ResolveError> {
    let mut chosen: BTreeMap<String, Upgrade> = BTreeMap::new();
    let mut work = vec![root.package.clone()];
    chosen.insert(root.package.clone(), root);
    // The version of a package after the plan so far (None: not present).
    let version_of = |name: &str, chosen: &BTreeMap<String, Upgrade>| -> Option<String> {
        chosen
            .get(name)
            .or_else(|| accepted.get(name))
            .map(|u| u.to.clone())
            .or_else(|| installed.get(name).map(|s| s.version().to_string()))
    };
    let mut guard = 0;
    while let Some(name) = work.pop() {
        guard += 1;
        if guard > 10_000 {
            return Err(ResolveError::Unsettled);
        }
        let up = chosen[&name].clone();
        if let Some(why) = blocked.get(&format!("{}={}", up.package, up.to)) {
            return Err(if up.reason.starts_with("clears") {
                ResolveError::Refused(why.clone())
            } else {
                ResolveError::NeedsRefused {
                    package: up.package.clone(),
                    version: up.to.clone(),
                    why: why.clone(),
                }
            });
        }
        let stanza = &up.candidate.as_ref().expect("chosen from the index").stanza;
        let mut fields = Vec::new();
        for f in ["Pre-Depends", "Depends"] {
            if let Some(v) = stanza.get(f) {
                fields.extend(parse_depends(v));
            }
        }
        for group in fields {
            let ok = group
                .iter()
                .any(|d| satisfied(d, &chosen, installed, accepted, index, &version_of));
            if ok {
                continue;
            }
            let Some((dep, cand)) = group
                .iter()
                .find_map(|d| pick_for(d, index, opts, arch).map(|c| (d.clone(), c.clone())))
            else {
                return Err(ResolveError::Unsatisfiable {
                    package: up.package.clone(),
                    version: up.to.clone(),
                    alternatives: alternatives(&group),
                });
            };
            let from = installed.get(&dep.name).map(|s| s.version().to_string());
            if let Some(f) = &from
                && cmp_version(cand.version(), f) == Ordering::Less
            {
                return Err(ResolveError::Downgrade {
                    package: up.package.clone(),
                    version: up.to.clone(),
                    dep: dep.to_string(),
                    name: dep.name.clone(),
                    installed: f.clone(),
                });
            }
            chosen.insert(
                dep.name.clone(),
                Upgrade {
                    package: dep.name.clone(),
                    from,
                    to: cand.version().to_string(),
                    clears: Vec::new(),
                    reason: format!("required by {} {} ({dep})", up.package, up.to),
                    suite: cand.suite.clone(),
                    candidate: Some(cand),
                },
            );
            work.push(dep.name.clone());
        }
        // Installed packages whose own dependencies the new version breaks
        // (binary packages of one source pinned to each other with `=`).
        for (other, st) in installed {
            if chosen.contains_key(other) || accepted.contains_key(other) {
                continue;
            }
            let Some(deps) = st.get("Depends") else {
                continue;
            };
            for group in parse_depends(deps) {
                if !group.iter().any(|d| d.name == up.package) {
                    continue;
                }
                if group
                    .iter()
                    .any(|d| satisfied(d, &chosen, installed, accepted, index, &version_of))
                {
                    continue;
                }
                let cand = index
                    .versions(other)
                    .iter()
                    .filter(|c| arch_ok(&c.stanza, arch))
                    .filter(|c| cmp_version(c.version(), st.version()) == Ordering::Greater)
                    .find(|c| {
                        c.stanza.get("Depends").is_none_or(|d| {
                            parse_depends(d).iter().all(|g| {
                                g.iter()
                                    .any(|x| x.name != up.package || x.satisfied_by(&up.to))
                            })
                        })
                    })
                    .cloned();
                let Some(cand) = cand else {
                    return Err(ResolveError::BreaksInstalled {
                        other: other.clone(),
                        installed: st.version().to_string(),
                        alternatives: alternatives(&group),
                        package: up.package.clone(),
                        version: up.to.clone(),
                    });
                };
                chosen.insert(
                    other.clone(),
                    Upgrade {
                        package: other.clone(),
                        from: Some(st.version().to_string()),
                        to: cand.version().to_string(),
                        clears: Vec::new(),
                        reason: format!("kept consistent with {} {}", up.package, up.to),
                        suite: cand.suite.clone(),
                        candidate: Some(cand),
                    },
                );
                work.push(other.clone());
                break;
            }
        }
    }
    Ok(chosen.into_values().collect())
}

/// A dependency's alternatives as a control file writes them.
fn alternatives(group: &[Dep]) -> String {
    group
        .iter()
        .map(Dep::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The version of a package once the plan so far is applied.
type VersionOf<'a> = dyn Fn(&str, &BTreeMap<String, Upgrade>) -> Option<String> + 'a;

fn satisfied(
    d: &Dep,
    chosen: &BTreeMap<String, Upgrade>,
    installed: &Installed,
    accepted: &BTreeMap<String, Upgrade>,
    index: &Index,
    version_of: &VersionOf<'_>,
) -> bool {
    if let Some(v) = version_of(&d.name, chosen) {
        return d.satisfied_by(&v);
    }
    // An unversioned dependency on a virtual package an installed (or
    // chosen) package provides.
    if d.constraint.is_none() {
        let provided_by_installed = installed.values().any(|s| {
            s.get("Provides")
                .is_some_and(|p| parse_depends(p).iter().flatten().any(|x| x.name == d.name))
        });
        let provided_by_plan = index.provides.get(&d.name).is_some_and(|names| {
            names
                .iter()
                .any(|n| chosen.contains_key(n) || accepted.contains_key(n))
        });
        return provided_by_installed || provided_by_plan;
    }
    false
}

fn pick_for<'a>(
    d: &Dep,
    index: &'a Index,
    opts: &PlanOptions,
    arch: &str,
) -> Option<&'a Candidate> {
    let mut ok = index
        .versions(&d.name)
        .iter()
        .filter(|c| arch_ok(&c.stanza, arch) && d.satisfied_by(c.version()));
    match opts.target {
        Target::Lowest => ok.next(),
        Target::Newest => ok.next_back(),
    }
}

/// Whether a maintainer script does anything (comments, `set -e`, `exit 0`
/// and blank lines do not).
pub fn script_is_trivial(text: &[u8]) -> bool {
    String::from_utf8_lossy(text).lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "set -e" || l == "exit 0"
    })
}

/// The reason a package cannot be upgraded by adding its files, if any:
/// a non-trivial `preinst`/`postinst` of the new version, or `prerm`/
/// `postrm` of the installed one (dpkg runs all four on an upgrade).
pub fn script_refusal(
    new: &crate::deb::Control,
    old_scripts: &BTreeMap<String, Vec<u8>>,
) -> Option<String> {
    let mut needs = Vec::new();
    for s in ["preinst", "postinst"] {
        if new.files.get(s).is_some_and(|t| !script_is_trivial(t)) {
            needs.push(format!("{s} of {}", new.stanza.version()));
        }
    }
    for s in ["prerm", "postrm"] {
        if old_scripts.get(s).is_some_and(|t| !script_is_trivial(t)) {
            needs.push(format!("the installed {s}"));
        }
    }
    (!needs.is_empty()).then(|| {
        format!(
            "needs maintainer scripts to be installed correctly ({}); drydock never runs them \
             (set patch.allow_maintainer_scripts to patch anyway)",
            needs.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::parse_stanzas;

    fn stanza(text: &str) -> Stanza {
        parse_stanzas(text).remove(0)
    }

    fn installed(stanzas: &[&str]) -> Installed {
        stanzas
            .iter()
            .map(|t| {
                let s = stanza(t);
                (s.package().to_string(), s)
            })
            .collect()
    }

    fn index(stanzas: &[&str]) -> Index {
        let mut index = Index::default();
        for t in stanzas {
            let s = stanza(t);
            index
                .by_name
                .entry(s.package().to_string())
                .or_default()
                .push(Candidate {
                    stanza: s,
                    url: String::new(),
                    sha256: String::new(),
                    size: 0,
                    suite: "bookworm-security".into(),
                });
        }
        index
    }

    fn fixable(package: &str, installed: &str, fixed: &str) -> Fixable {
        Fixable {
            id: format!("CVE-1-{package}"),
            package: package.into(),
            installed_version: installed.into(),
            fixed_version: fixed.into(),
            severity: "high".into(),
        }
    }

    /// The one refusal's reason when `libfoo` 1.0 is to go to 2.0.
    fn reason(installed_: &[&str], index_: &[&str], blocked: &[(&str, &str)]) -> String {
        let plan = choose(
            &installed(installed_),
            &index(index_),
            &[fixable("libfoo", "1.0", "2.0")],
            &PlanOptions::default(),
            &blocked
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            "amd64",
        );
        assert!(plan.upgrades.is_empty(), "{:?}", plan.upgrades);
        assert_eq!(plan.refusals.len(), 1, "{:?}", plan.refusals);
        plan.refusals[0].reason.clone()
    }

    const LIBFOO_1: &str = "Package: libfoo\nVersion: 1.0\nArchitecture: amd64\n";

    #[test]
    fn refusal_reasons_read_as_before_the_error_was_typed() {
        let blocked_root = reason(
            &[LIBFOO_1],
            &["Package: libfoo\nVersion: 2.0\nArchitecture: amd64\n"],
            &[("libfoo=2.0", "its postinst would have to run")],
        );
        assert_eq!(blocked_root, "its postinst would have to run");

        let blocked_dep = reason(
            &[LIBFOO_1],
            &[
                "Package: libfoo\nVersion: 2.0\nArchitecture: amd64\nDepends: libbar (>= 3)\n",
                "Package: libbar\nVersion: 3.0\nArchitecture: amd64\n",
            ],
            &[("libbar=3.0", "its preinst would have to run")],
        );
        assert_eq!(
            blocked_dep,
            "needs libbar 3.0, which is refused: its preinst would have to run"
        );

        let unsatisfiable = reason(
            &[LIBFOO_1],
            &[
                "Package: libfoo\nVersion: 2.0\nArchitecture: amd64\nDepends: libbar (>= 3) | libbaz\n",
            ],
            &[],
        );
        assert_eq!(
            unsatisfiable,
            "libfoo 2.0 depends on libbar (>= 3) | libbaz, which neither the image nor the configured archive satisfies"
        );

        let downgrade = reason(
            &[
                LIBFOO_1,
                "Package: libbar\nVersion: 5.0\nArchitecture: amd64\n",
            ],
            &[
                "Package: libfoo\nVersion: 2.0\nArchitecture: amd64\nDepends: libbar (<< 4)\n",
                "Package: libbar\nVersion: 3.0\nArchitecture: amd64\n",
            ],
            &[],
        );
        assert_eq!(
            downgrade,
            "libfoo 2.0 depends on libbar (<< 4), which would need a downgrade of libbar 5.0"
        );

        let breaks = reason(
            &[
                LIBFOO_1,
                "Package: libfoo-dev\nVersion: 1.0\nArchitecture: amd64\nDepends: libfoo (= 1.0)\n",
            ],
            &["Package: libfoo\nVersion: 2.0\nArchitecture: amd64\n"],
            &[],
        );
        assert_eq!(
            breaks,
            "installed libfoo-dev 1.0 requires libfoo (= 1.0), and the configured archive has no libfoo-dev that accepts libfoo 2.0"
        );

        assert_eq!(
            ResolveError::Unsettled.to_string(),
            "dependency resolution did not settle"
        );
    }
}

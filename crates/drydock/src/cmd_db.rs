//! `drydock db`: build, update, inspect and query the vulnerability
//! database in `<data>/vulndb`.
//!
//! - `import PATH...` builds a new version from files, directories and
//!   `.zip`/`.tar.gz` archives and swaps it in atomically.
//! - `update` downloads the source URLs (`--source`, repeatable; default:
//!   [`vulndb::DEFAULT_SOURCES`]) and imports them.
//! - `status` prints the version in use and each source's record count
//!   and snapshot date.
//! - `query ECOSYSTEM NAME VERSION` matches one package.

use crate::config::Config;
use crate::out::outln;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use inventory::{Distro, Ecosystem};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(clap::Subcommand)]
pub enum DbCommand {
    /// Build a new database version from advisory files, directories or
    /// archives (OSV, Alpine secdb, Debian tracker, CVE 5 / NVD JSON).
    Import {
        /// Files, directories, .zip or .tar.gz archives.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the import report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download the advisory sources and import them as a new version.
    Update {
        /// Source URL; repeat for several. Replaces the default list.
        #[arg(long = "source", env = "DRYDOCK_VULNDB_SOURCES", value_delimiter = ',')]
        sources: Vec<String>,
        /// Print the import report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the database in use: version, build time, sources.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Match one package: `query pypi jinja2 2.10`,
    /// `query debian:12 openssl 3.0.13-1~deb12u1`, `query alpine:3.20 zlib 1.2.12-r1`.
    Query {
        /// `pypi`, `npm`, `cargo`, `go`, `maven`, `gem`, or a distribution
        /// release for OS packages (`debian:12`, `debian:bookworm`,
        /// `alpine:3.20`, `ubuntu:22.04`).
        ecosystem: String,
        /// Package name (for OS packages: the source/origin package).
        name: String,
        /// Installed version, in the ecosystem's own syntax (for Debian
        /// `EPOCH:UPSTREAM-REVISION`, e.g. `1:1.2.13.dfsg-1`).
        version: String,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: DbArgs, config: Config) -> anyhow::Result<ExitCode> {
    match args.command {
        DbCommand::Import { paths, json } => {
            let data = config.data.clone();
            let bar = progress_bar();
            let pb = bar.clone();
            let report = tokio::task::spawn_blocking(move || {
                vulndb::import(&data, &paths, &mut |p| {
                    pb.set_length(p.bytes_total);
                    pb.set_position(p.bytes_done);
                    pb.set_message(short(&p.current));
                })
            })
            .await
            .context("import task")?;
            bar.finish_and_clear();
            print_report(
                report.context("import failed; the current database is unchanged")?,
                json,
            )
        }
        DbCommand::Update { sources, json } => {
            let urls: Vec<String> = if !sources.is_empty() {
                sources
            } else {
                config.vulndb.update_urls()
            };
            let bar = progress_bar();
            let pb = bar.clone();
            let report = vulndb::update(&config.data, &urls, move |p| {
                pb.set_length(p.bytes_total);
                pb.set_position(p.bytes_done);
                pb.set_message(short(&p.current));
            })
            .await;
            bar.finish_and_clear();
            print_report(
                report.context("update failed; the current database is unchanged")?,
                json,
            )
        }
        DbCommand::Status { json } => {
            let db = vulndb::Database::open(&config.data)?;
            let status = db.status();
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?)?;
            } else {
                print_status(&status)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Query {
            ecosystem,
            name,
            version,
            json,
        } => {
            let (eco, distro) = parse_ecosystem(&ecosystem)?;
            let db = vulndb::Database::open(&config.data)?;
            let report = db.query(eco, &name, &version, distro.as_ref());
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_findings(&report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {wide_msg}")
            .expect("valid template"),
    );
    bar
}

fn short(s: &str) -> String {
    let n = s.chars().count();
    if n <= 60 {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n - 59).collect();
        format!("…{tail}")
    }
}

fn head(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let h: String = s.chars().take(max - 1).collect();
        format!("{h}…")
    }
}

/// `pypi` → (PyPI, None); `debian:12` → (Deb, debian 12); `alpine:v3.20`
/// → (Apk, alpine 3.20).
fn parse_ecosystem(s: &str) -> anyhow::Result<(Ecosystem, Option<Distro>)> {
    if let Some((id, release)) = s.split_once(':') {
        let id = id.to_ascii_lowercase();
        let eco = match id.as_str() {
            "debian" | "ubuntu" => Ecosystem::Deb,
            "alpine" => Ecosystem::Apk,
            _ => Ecosystem::Rpm,
        };
        let release = release.trim_start_matches('v');
        let numeric = release.chars().next().is_some_and(|c| c.is_ascii_digit());
        let distro = Distro {
            id,
            version_id: if numeric {
                release.to_string()
            } else {
                String::new()
            },
            codename: (!numeric).then(|| release.to_string()),
            pretty_name: None,
        };
        return Ok((eco, Some(distro)));
    }
    let eco = Ecosystem::parse(s).with_context(|| {
        format!(
            "unknown ecosystem {s:?}: give one of pypi, npm, cargo, go, maven, gem, composer, \
             nuget, or a distribution release for OS packages (debian:12, alpine:3.20, ubuntu:22.04)"
        )
    })?;
    if eco.is_os() {
        anyhow::bail!(
            "give the distribution release for OS packages, e.g. `debian:12` or `alpine:3.20`"
        );
    }
    Ok((eco, None))
}

fn print_report(report: vulndb::ImportReport, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!("imported in {:.1}s", report.seconds)?;
        print_status(&report.status)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &vulndb::Status) -> anyhow::Result<()> {
    outln!("version:    {}", s.version)?;
    outln!("built at:   {}", s.built_at)?;
    outln!(
        "advisories: {}  package entries: {}  packages: {}",
        s.advisories,
        s.entries,
        s.packages
    )?;
    outln!()?;
    let rows = s.sources.iter().map(|src| {
        let snap = match (&src.snapshot, &src.file_date) {
            (Some(d), _) => d.clone(),
            (None, Some(f)) => format!("(file date {f})"),
            (None, None) => "-".into(),
        };
        vec![
            src.name.clone(),
            src.records.to_string(),
            src.entries.to_string(),
            snap,
        ]
    });
    let text = report::table::columns(&["SOURCE", "RECORDS", "ENTRIES", "SNAPSHOT"], rows, &[1, 2]);
    crate::out::write_all(text.as_bytes())?;
    Ok(())
}

fn print_findings(r: &vulndb::MatchReport) -> anyhow::Result<()> {
    if r.findings.is_empty() {
        if r.uncomparable.is_empty() {
            outln!("no known vulnerabilities")?;
        }
    } else {
        let mut findings: Vec<&vulndb::Finding> = r.findings.iter().collect();
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        let rows = findings.iter().map(|f| {
            let mut summary = f.summary.replace('\n', " ");
            if let Some(kind) = &f.informational {
                summary = format!("[{kind}] {summary}");
            }
            if let Some(note) = &f.status_note {
                summary = format!("({note}) {summary}");
            }
            vec![
                f.id.to_string(),
                f.severity.as_str().to_string(),
                f.status.as_str().to_string(),
                f.fixed_version.as_deref().unwrap_or("-").to_string(),
                head(&summary, 70),
            ]
        });
        let text = report::table::columns(
            &["ID", "SEVERITY", "STATUS", "FIXED IN", "SUMMARY"],
            rows,
            &[],
        );
        crate::out::write_all(text.as_bytes())?;
    }
    for u in &r.uncomparable {
        match &u.advisory {
            Some(a) => eprintln!("{a}: {}", u.reason),
            None => eprintln!("{}", u.reason),
        }
    }
    Ok(())
}

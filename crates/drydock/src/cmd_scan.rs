//! `drydock scan TARGET`: catalog an image from an OCI layout, a docker
//! archive or a registry, or a directory (a root filesystem or a project
//! folder, [`crate::cmd_scan_dir`]), match it against the vulnerability
//! database in the data directory, and report (table, JSON, CycloneDX,
//! SPDX, SARIF; every format is rendered by the `report` crate).
//!
//! An index is scanned platform by platform. Without a vulnerability
//! database the packages are still listed, with a notice saying how to
//! install one. `--exit-code N` makes the command fail with N when a
//! vulnerability of a `--severity` level is reported, for CI gates;
//! `--fail-on LEVEL` gates on that level and above only (with
//! `--fail-only-fixable`, on those with a fixed version), while still
//! reporting everything `--severity` selects.
//!
//! An image the catalog could not read completely (a file over its cap, a
//! malformed package database, a hostile path, a cap on packages reached;
//! see docs/catalog.md) is reported as such: the table says `INCOMPLETE`
//! with the reasons under the image's heading, the JSON report gives each
//! image `complete` and `incomplete_reasons`, and every reason is also
//! written to standard error as `INCOMPLETE: ...`. The exit code is not
//! changed by it (it still says only whether vulnerabilities were found):
//! a gate that must not pass a partial scan checks `complete`.

use crate::config::Config;
use anyhow::{Context, bail};
use catalog::{DirCache, LayerCache, MemoryCache};
use inventory::Inventory;
use report::{DatabaseInfo, ImageScan, ScanReport};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vulndb::{Finding, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Cyclonedx,
    Spdx,
    Sarif,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// The image: `oci:DIR[:TAG]`, `docker-archive:FILE[:NAME:TAG]` or
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`; or `dir:PATH`, a root
    /// filesystem or a project folder (lock files, package databases,
    /// binaries).
    pub target: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Registry credentials `USER:PASS` (for `docker://`).
    #[arg(long, env = "DRYDOCK_SCAN_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Talk plain HTTP to the registry (for `docker://`).
    #[arg(long)]
    pub insecure: bool,
    /// Only this platform of an index (`os/arch[/variant]`; `arm64` means
    /// `arm64/v8` and `arm` `arm/v7`, as container runtimes read them);
    /// default all.
    #[arg(long)]
    pub platform: Option<String>,
    /// Severities to report, comma separated
    /// (`unknown,low,medium,high,critical`).
    #[arg(
        long,
        short = 's',
        value_delimiter = ',',
        default_value = "unknown,low,medium,high,critical"
    )]
    pub severity: Vec<String>,
    /// Exit with this code when any reported vulnerability remains (with
    /// `--fail-on`: any at that level or above).
    #[arg(long, default_value_t = 0)]
    pub exit_code: u8,
    /// Fail (exit 1, or `--exit-code`) when a reported vulnerability of
    /// this level or above remains; the report still lists every level
    /// `--severity` selects.
    #[arg(long, value_name = "LEVEL")]
    pub fail_on: Option<String>,
    /// With `--fail-on`: only vulnerabilities that have a fixed version
    /// fail the command.
    #[arg(long, requires = "fail_on")]
    pub fail_only_fixable: bool,
    /// For `dir:` targets: leave out this path, relative to the directory,
    /// and everything under it (repeatable).
    #[arg(long, value_name = "PATH")]
    pub exclude: Vec<String>,
    /// Leave out vulnerabilities that have no fixed version.
    #[arg(long)]
    pub ignore_unfixed: bool,
    /// Do not read or write the per-layer catalog cache in the data dir.
    #[arg(long)]
    pub no_cache: bool,
}

fn level(flag: &str, s: &str) -> anyhow::Result<Severity> {
    Severity::parse(s.trim()).with_context(|| {
        format!("{flag}: unknown level {s:?} (use unknown,low,medium,high,critical)")
    })
}

pub async fn run(args: ScanArgs, config: Config) -> anyhow::Result<ExitCode> {
    let mut wanted = Vec::new();
    for s in &args.severity {
        wanted.push(level("--severity", s)?);
    }
    let fail_on = args
        .fail_on
        .as_deref()
        .map(|s| level("--fail-on", s))
        .transpose()?;
    if let Some(path) = args.target.strip_prefix("dir:") {
        if args.creds.is_some() || args.insecure || args.platform.is_some() {
            bail!("--creds, --insecure and --platform do not apply to dir: targets");
        }
        let db = open_db(&args, &config, fail_on)?;
        let limits = config.catalog.limits();
        let (path, exclude) = (PathBuf::from(path), args.exclude.clone());
        let dir = tokio::task::spawn_blocking(move || {
            crate::cmd_scan_dir::catalog_dir(&path, &exclude, &limits)
        })
        .await??;
        let findings = matched(db.as_ref(), &dir.inventory, &wanted, &args);
        let scanned = vec![ImageScan {
            platform: None,
            manifest: dir.root.display().to_string(),
            inventory: dir.inventory,
            incomplete: dir.incomplete,
            findings,
        }];
        return finish(&args, &config, db.as_ref(), fail_on, scanned);
    }
    if !args.exclude.is_empty() {
        bail!("--exclude applies to dir: targets only");
    }
    let mut spec = transport::SourceSpec::parse(&args.target)
        .with_context(|| format!("invalid target {:?}", args.target))?;
    if let transport::SourceSpec::Registry {
        creds, insecure, ..
    } = &mut spec
    {
        if let Some(c) = &args.creds {
            *creds = Some(transport::Credentials::parse(c).context("--creds")?);
        }
        *insecure = args.insecure;
    } else if args.creds.is_some() || args.insecure {
        bail!("--creds and --insecure only apply to docker:// targets");
    }

    let db = open_db(&args, &config, fail_on)?;

    let source: Arc<dyn transport::ImageSource> = Arc::from(
        transport::open(&spec)
            .await
            .with_context(|| format!("opening {}", args.target))?,
    );
    let root = source
        .root()
        .await
        .with_context(|| format!("reading the manifest of {}", args.target))?;
    let parsed = root.parse()?;
    // (manifest digest, platform, image manifest)
    let mut images: Vec<(String, Option<oci::Platform>, oci::ImageManifest)> = Vec::new();
    match parsed {
        oci::Manifest::Image { manifest, .. } => {
            images.push((root.digest.to_string(), None, manifest));
        }
        oci::Manifest::Index { index, .. } => {
            let filter = oci::PlatformFilter::parse(args.platform.as_slice())?;
            let mut walk = oci::IndexWalk::new(&index, &filter);
            while let Some(nested) = walk.next_index() {
                let child = source.manifest(&nested.descriptor.digest).await?;
                match child.parse()? {
                    oci::Manifest::Index { index, .. } => walk.add_index(nested, &index)?,
                    oci::Manifest::Image { .. } => {
                        bail!("{} is listed as an index but is an image", child.digest)
                    }
                }
            }
            let found = walk
                .finish()
                .with_context(|| format!("selecting from {}", args.target))?;
            for img in found {
                let d = img.descriptor;
                let child = source.manifest(&d.digest).await?;
                match child.parse()? {
                    oci::Manifest::Image { manifest, .. } => {
                        images.push((d.digest.to_string(), d.platform, manifest))
                    }
                    oci::Manifest::Index { .. } => {
                        bail!("{} is listed as an image but is an index", d.digest)
                    }
                }
            }
            if images.is_empty() {
                bail!("{} is an index with no image", args.target);
            }
        }
    }

    let cache: Arc<dyn LayerCache> = if args.no_cache || !config.data.is_dir() {
        Arc::new(MemoryCache::new())
    } else {
        Arc::new(DirCache::new(config.data.join("catalog-cache")))
    };
    let blobs = Arc::new(transport::blocking_blob_source(
        source.clone(),
        tokio::runtime::Handle::current(),
    ));
    let mut scanned = Vec::new();
    for (digest, platform, manifest) in images {
        let (blobs, cache) = (blobs.clone(), cache.clone());
        // transport's blob streams verify their digest at the end, and
        // the catalog reads every layer to its end: no need to hash twice.
        let limits = catalog::Limits {
            verify_digest: false,
            ..config.catalog.limits()
        };
        let image = tokio::task::spawn_blocking(move || {
            catalog::catalog_image(blobs.as_ref(), &manifest, cache.as_ref(), &limits)
        })
        .await??;
        let incomplete = image.reasons();
        let inventory = image.inventory;
        let findings = matched(db.as_ref(), &inventory, &wanted, &args);
        scanned.push(ImageScan {
            platform: platform.map(|p| p.display()),
            manifest: digest,
            inventory,
            incomplete,
            findings,
        });
    }

    finish(&args, &config, db.as_ref(), fail_on, scanned)
}

/// The installed database, if any; a gate without one is an error.
fn open_db(
    args: &ScanArgs,
    config: &Config,
    fail_on: Option<Severity>,
) -> anyhow::Result<Option<vulndb::Database>> {
    let db = match vulndb::Database::open(&config.data) {
        Ok(db) => Some(db),
        Err(vulndb::Error::NoDatabase(_)) => None,
        Err(e) => return Err(e).context("opening the vulnerability database"),
    };
    if db.is_none() && (args.exit_code != 0 || fail_on.is_some()) {
        bail!(
            "no vulnerability database in {}: cannot gate on vulnerabilities; run `drydock db import PATH...` or `drydock db update` first",
            config.data.display()
        );
    }
    Ok(db)
}

/// The reported findings of `inventory`: vulnerabilities (not
/// informational advisories) of the wanted levels.
fn matched(
    db: Option<&vulndb::Database>,
    inventory: &Inventory,
    wanted: &[Severity],
    args: &ScanArgs,
) -> Vec<Finding> {
    let Some(db) = db else {
        return Vec::new();
    };
    db.match_inventory(inventory)
        .into_iter()
        .filter(|f| f.is_vulnerability())
        .filter(|f| wanted.contains(&f.severity))
        .filter(|f| !args.ignore_unfixed || f.fixed_version.is_some())
        .collect()
}

/// Render the report, write it, name incomplete parts on stderr, and
/// judge the exit code.
fn finish(
    args: &ScanArgs,
    config: &Config,
    db: Option<&vulndb::Database>,
    fail_on: Option<Severity>,
    images: Vec<ImageScan>,
) -> anyhow::Result<ExitCode> {
    let report = ScanReport {
        target: args.target.clone(),
        database: db.map(|d| DatabaseInfo {
            version: d.version().to_string(),
            built_at: d.built_at().to_string(),
        }),
        images,
    };
    let text = match args.format {
        Format::Table => {
            let mut t = report.table();
            if db.is_none() {
                t.push_str(&format!(
                    "No vulnerability database is installed in {}: packages are listed, vulnerabilities are not.\nInstall one with `drydock db import PATH...` (offline) or `drydock db update`.\n",
                    config.data.display()
                ));
            }
            t
        }
        Format::Json => report::to_json(&report.json()),
        // One document per platform: a single one stands alone.
        Format::Cyclonedx => match report.cyclonedx().as_slice() {
            [one] => report::to_json(one),
            many => report::to_json(many),
        },
        Format::Spdx => match report.spdx().as_slice() {
            [one] => report::to_json(one),
            many => report::to_json(many),
        },
        Format::Sarif => report::to_json(&report.sarif()),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => crate::out::write_all(text.as_bytes())?,
    }
    for s in &report.images {
        let platform = s
            .platform
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        for r in &s.incomplete {
            eprintln!("INCOMPLETE: {}{platform}: {r}", args.target);
        }
    }
    if db.is_none() && args.format != Format::Table {
        eprintln!(
            "note: no vulnerability database is installed in {}; packages only. Run `drydock db import PATH...` or `drydock db update`.",
            config.data.display()
        );
    }
    let failing = report
        .images
        .iter()
        .flat_map(|s| &s.findings)
        .filter(|f| fail_on.is_none_or(|l| f.severity >= l))
        .filter(|f| !args.fail_only_fixable || f.fixed_version.is_some())
        .count();
    let code = match (fail_on, args.exit_code) {
        (Some(_), 0) => 1,
        (_, c) => c,
    };
    if code != 0 && failing > 0 {
        if fail_on.is_some() {
            eprintln!(
                "{failing} vulnerabilit{} at or above --fail-on {}{}",
                if failing == 1 { "y" } else { "ies" },
                args.fail_on.as_deref().unwrap_or_default().trim(),
                if args.fail_only_fixable {
                    " with a fix"
                } else {
                    ""
                }
            );
        }
        return Ok(ExitCode::from(code));
    }
    Ok(ExitCode::SUCCESS)
}

//! `drydock import`: put an image into a running server, with a progress
//! bar. A local source (`oci:`, `docker-archive:`) is read here and pushed
//! over the registry API (`import::local`), so the server may be remote
//! and never reads its own files; a `docker://` source becomes an import
//! job on the server (`POST /api/v1/imports`), which this follows.

use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, bail};
use import::{ImportRequest, JobState, JobStatus, client::Client, local::LocalPush};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// What to import: docker://HOST[:PORT]/REPO[:TAG|@DIGEST] (fetched by
    /// the server), oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG] (read
    /// here and pushed to the server).
    pub source: String,
    /// Where to put it in this registry: REPO[:TAG]. Without a tag the
    /// source's tag is kept.
    pub target: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Import only these platforms of an index (repeatable, or
    /// comma-separated): OS/ARCH[/VARIANT]. One platform imports that
    /// image's manifest itself; several import an index of just those.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Import every tag of the source repository (TARGET is then REPO).
    #[arg(long)]
    pub all_tags: bool,
    /// Credentials for the source registry, USER:PASSWORD (otherwise those
    /// stored for that host in the server's configuration, else anonymous).
    #[arg(long, env = "DRYDOCK_IMPORT_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Reach the source registry over plain HTTP instead of HTTPS.
    #[arg(long)]
    pub insecure: bool,
    /// Print the job id and return without waiting (docker:// sources: a
    /// local source is pushed by this command, which must stay).
    #[arg(long)]
    pub no_wait: bool,
    /// Print the final job status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How the client commands (`drydock import`, `drydock patch`) reach a
/// running drydock server.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The drydock server [default: http://<listen address>, i.e.
    /// http://127.0.0.1:5000].
    #[arg(long, env = "DRYDOCK_SERVER")]
    pub server: Option<String>,
    /// User name on the drydock server (registry pushes and /api/v1).
    #[arg(long, env = "DRYDOCK_USERNAME")]
    pub username: Option<String>,
    /// Password or token on the drydock server.
    #[arg(long, env = "DRYDOCK_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl ServerArgs {
    /// The server's URL: `--server`, else this configuration's listen
    /// address (loopback when it listens on every address).
    pub fn url(&self, config: &Config) -> String {
        self.server.clone().unwrap_or_else(|| {
            let mut addr = config.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        })
    }

    /// The server credentials the flags or environment give.
    pub fn credentials(&self) -> anyhow::Result<Option<transport::Credentials>> {
        match (&self.username, &self.password) {
            (Some(u), p) if !u.is_empty() => Ok(Some(transport::Credentials {
                username: u.clone(),
                password: p.clone().unwrap_or_default(),
            })),
            (_, Some(_)) => {
                bail!("--password (DRYDOCK_PASSWORD) needs --username (DRYDOCK_USERNAME)")
            }
            _ => Ok(None),
        }
    }
}

pub async fn run(args: ImportArgs, config: Config) -> anyhow::Result<ExitCode> {
    let server = args.server.url(&config);
    let creds = args.server.credentials()?;
    let req = ImportRequest {
        source: args.source.trim().to_string(),
        target: args.target.clone(),
        platforms: args.platforms.clone(),
        all_tags: args.all_tags,
        creds: args.creds.clone(),
        insecure: args.insecure,
    };
    if import::is_local_source(&req.source) {
        return push_local(&args, &req, &server, creds).await;
    }
    let client = Client::new(&server)?.with_credentials(creds);
    let job = client.submit(&req).await?;
    if args.no_wait {
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&job)?)?;
        } else {
            outln!("{}", job.id)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress_bar(args.json);
    // Ctrl-C cancels the job on the server (unless it is already writing
    // tags, in which case it finishes).
    let done = tokio::select! {
        r = client.wait(job.id, Duration::from_millis(250), |s| update(&bar, s)) => r?,
        _ = tokio::signal::ctrl_c() => {
            bar.suspend(|| eprintln!("drydock: cancelling import {}", job.id));
            if let Err(e) = client.cancel(job.id).await {
                bar.suspend(|| eprintln!("drydock: {e}"));
            }
            client.wait(job.id, Duration::from_millis(250), |s| update(&bar, s)).await?
        }
    };
    bar.finish_and_clear();
    finish(&args, &done)
}

/// Read a local source here and push it to the server's registry API.
async fn push_local(
    args: &ImportArgs,
    req: &ImportRequest,
    server: &str,
    creds: Option<transport::Credentials>,
) -> anyhow::Result<ExitCode> {
    if args.no_wait {
        bail!("--no-wait applies to docker:// sources; a local source is pushed by this command");
    }
    let mut push = LocalPush::start(req, server, creds).context("cannot import")?;
    let bar = progress_bar(args.json);
    let every = Duration::from_millis(250);
    // Ctrl-C stops before any tag is written (unless tagging has begun).
    let done = tokio::select! {
        s = push.wait(every, |s| update(&bar, s)) => s,
        _ = tokio::signal::ctrl_c() => {
            bar.suspend(|| eprintln!("drydock: cancelling the import"));
            push.cancel();
            push.wait(every, |s| update(&bar, s)).await
        }
    };
    bar.finish_and_clear();
    finish(args, &done)
}

fn finish(args: &ImportArgs, done: &JobStatus) -> anyhow::Result<ExitCode> {
    if args.json {
        outln!("{}", serde_json::to_string_pretty(done)?)?;
    } else {
        report(done)?;
    }
    Ok(match done.state {
        JobState::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn update(bar: &indicatif::ProgressBar, s: &JobStatus) {
    bar.set_length(s.bytes_total);
    bar.set_position(s.bytes_done.min(s.bytes_total));
    bar.set_message(format!("{} {}/{}", s.phase, s.blobs_done, s.blobs_total));
}

fn report(s: &JobStatus) -> anyhow::Result<()> {
    match s.state {
        JobState::Succeeded => {
            let transferred = s.blobs_total - s.blobs_skipped;
            outln!(
                "imported {} into {} ({} blobs, {} transferred, {} bytes; {} already present)",
                s.source,
                s.target,
                s.blobs_total,
                transferred,
                s.bytes_done,
                s.blobs_skipped
            )?;
            for m in &s.manifests {
                match (&m.tag, &m.platform) {
                    (Some(t), _) => outln!("  {t} -> {}", m.digest)?,
                    (None, Some(p)) => outln!("  {p}: {}", m.digest)?,
                    (None, None) => outln!("  {}", m.digest)?,
                }
            }
        }
        JobState::Cancelled => eprintln!(
            "drydock: import of {} cancelled; no tag was written",
            s.source
        ),
        _ => eprintln!(
            "drydock: import of {} failed: {}",
            s.source,
            s.error.as_deref().unwrap_or("unknown error")
        ),
    }
    Ok(())
}

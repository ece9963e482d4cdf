//! `drydock serve`: run the registry, the assessment service, the import
//! jobs, the management API and the dashboard in one process.
//!
//! The HTTP application is `registry.routes()` with the management API,
//! the dashboard and the import endpoints merged into it in [`app`].

use crate::config::Config;
use anyhow::Context;
use registry::{Options, Registry};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000; config `listen`, env
    /// DRYDOCK_LISTEN]. Beyond loopback, access control turns on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`;
    /// overrides `server.tls_cert` / DRYDOCK_TLS_CERT). Re-read when it
    /// changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Turn access control on, also on loopback (config `auth.enabled`).
    #[arg(long, conflicts_with = "no_auth")]
    pub auth: bool,
    /// Serve without access control even beyond loopback (anyone who can
    /// reach the server may push, pull and delete).
    #[arg(long)]
    pub no_auth: bool,
}

/// Registry options from the configuration.
pub fn registry_options(config: &Config) -> Options {
    let mut opts = Options::new(&config.data);
    opts.upload_expiry = Duration::from_secs(config.upload_expiry_secs);
    opts.min_free_bytes = config.min_free_bytes;
    opts.blobs = config.storage.blobs();
    opts.metadata = config.metadata.storage();
    opts
}

/// The whole HTTP application: `/v2/` and the probes from the registry,
/// `/api/v1` and `/ui/` from the web crate, `/api/v1/imports` from import.
pub fn app(
    config: &Config,
    registry: &Registry,
    assess: &assess::Service,
    importer: &import::Importer,
    patcher: &patch::Patcher,
    edge: edge::Edge,
) -> axum::Router {
    // Mirrors wrap the registry's own routes: a manifest miss under a
    // mirrored prefix is fetched from upstream before it is answered.
    let v2 = import::mirror::apply(
        registry.routes(),
        importer.clone(),
        config.import.mirrors.clone(),
        Duration::from_secs(config.import.mirror_timeout_secs),
    );
    let mut api = web::State::new(assess.clone())
        .with_docs(import::openapi())
        .with_stale_days(config.vulndb.stale_days.into());
    if let Some(ac) = &edge.access {
        api = api.with_access(ac.clone());
    }
    let routes = v2
        .merge(web::router(api))
        .merge(import::router(importer.clone()))
        .merge(web::api::patches::router(patcher.clone()));
    edge::wrap(routes, edge, registry)
}

/// Access control for a server on `listen`: opened (creating the first
/// administrator when there is none, its password printed once) when on;
/// a loud warning when off beyond loopback.
fn access_control(
    args: &ServeArgs,
    config: &Config,
    listen: SocketAddr,
) -> anyhow::Result<Option<auth::AccessControl>> {
    if !config.auth.enabled_for(listen, args.auth, args.no_auth) {
        if !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "ACCESS CONTROL IS OFF (--no-auth) on a non-loopback address: anyone who can \
                 reach this server can push, pull and delete"
            );
        }
        return Ok(None);
    }
    let ac = crate::access::open(&config.data, &config.auth, &config.metadata)?;
    if let Some(password) =
        ac.ensure_admin(config.auth.admin_password.as_ref().map(|s| s.0.as_str()))?
    {
        // Printed, never logged: stderr of the first start only.
        eprintln!(
            "\n  drydock: created the first administrator\n    username: admin\n    password: {password}\n  \
             It is shown only this once. Change it with `drydock user passwd admin`.\n"
        );
    }
    tracing::info!("access control is on");
    Ok(Some(ac))
}

/// Keep large buffers (1 MiB blob reads, request bodies) in the heap
/// instead of an mmap/munmap and page faults per buffer: this is worth
/// ~60% on blob pull throughput with glibc's allocator.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

/// `drydock --data DATA db update --json` with `urls` as its sources, in a
/// child process; the new build's version.
async fn run_db_update(data: &std::path::Path, urls: &[String]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the drydock binary")?;
    let out = tokio::process::Command::new(exe)
        .arg("--data")
        .arg(data)
        .args(["db", "update", "--json"])
        .env("DRYDOCK_VULNDB_SOURCES", urls.join(","))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run db update")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!("db update: {}", err.trim());
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("db update printed no report")?;
    Ok(report["version"].as_str().unwrap_or("?").to_string())
}

/// How often a node that does not lead a duty tries for its lead.
const LEAD_RETRY: Duration = Duration::from_secs(5);

/// Collect garbage every `every` while this node leads [`registry::Duty::Gc`]
/// (on SQLite the one node always does). The lead is held as long as the
/// node's connection to PostgreSQL lives; when the leader dies another
/// node takes it within [`LEAD_RETRY`]. GC itself runs as `drydock gc`
/// does, on stores of its own, under the cluster's GC lock, so even two
/// leaders for a moment (a dead one not yet noticed) cannot do harm.
async fn scheduled_gc(config: Config, meta: Arc<dyn registry::Meta>, every: Duration) {
    let mut lead = meta.lead(registry::Duty::Gc, LEAD_RETRY);
    loop {
        while !lead.is_leader() {
            lead.changed().await;
        }
        tracing::info!(
            duty = "gc",
            every_secs = every.as_secs(),
            "this node leads: it runs scheduled garbage collection"
        );
        while lead.is_leader() {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = lead.changed() => continue,
            }
            if !lead.is_leader() {
                break;
            }
            let opts = registry::GcOptions {
                dry_run: false,
                grace: Duration::from_secs(config.gc_grace_secs),
            };
            match registry::gc_stores(
                &config.data,
                &config.storage.blobs(),
                &config.metadata.storage(),
                opts,
            )
            .await
            {
                Ok(r) => tracing::info!(
                    duty = "gc",
                    manifests_removed = r.manifests_removed,
                    blobs_removed = r.blobs_removed,
                    bytes_freed = r.bytes_freed,
                    "scheduled garbage collection done"
                ),
                Err(e) => tracing::warn!(duty = "gc", "scheduled garbage collection failed: {e}"),
            }
        }
        tracing::info!(duty = "gc", "this node no longer leads garbage collection");
    }
}

pub async fn run(args: ServeArgs, config: Config) -> anyhow::Result<ExitCode> {
    tune_allocator();
    // Before anything opens files: the connection cap is derived from it.
    let (nofile, _) = httpd::raise_nofile_limit();
    let listen = args.listen.unwrap_or(config.listen);
    // Bind first: a taken port is reported before anything else starts
    // (a database update, the assessor).
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let registry = Registry::open(registry_options(&config))
        .with_context(|| format!("cannot open data directory {}", config.data.display()))?;
    let access = access_control(&args, &config, listen)?;
    if config.gc_interval_secs > 0 {
        tokio::spawn(scheduled_gc(
            config.clone(),
            registry.meta().clone(),
            Duration::from_secs(config.gc_interval_secs),
        ));
    }
    // The assessor registers itself as the registry's event sink before it
    // looks for unassessed manifests, so no push falls in between.
    let vulndb = vulndb::Handle::open_with_interval(
        &config.data,
        Duration::from_secs(config.vulndb.poll_secs.max(1)),
    );
    if vulndb.current().is_none() {
        tracing::warn!(
            "no vulnerability database in {} yet: images are cataloged but not matched until \
             one is built (by the scheduled update on the node that leads it, unless \
             vulndb.update_hours is 0, or by `drydock db update` / `drydock db import`) or \
             fetched from the build another node published",
            config.data.display()
        );
    }
    // The database is built once, by the node that leads its update
    // (every `update_hours`, in a child process: `db update`), and
    // published through the shared stores; every node fetches the newest
    // build every `poll_secs` (see the dbsync crate).
    let sync = dbsync::DbSync::open(
        &config.data,
        &config.storage.blobs(),
        &config.metadata.storage(),
    )
    .context("cannot open the stores that distribute the vulnerability database")?
    .with_handle(vulndb.clone());
    let lead = sync.lead(LEAD_RETRY);
    let build = (config.vulndb.update_hours > 0).then(|| {
        let (data, urls) = (config.data.clone(), config.vulndb.update_urls());
        dbsync::Build {
            every: Duration::from_secs(config.vulndb.update_hours * 3600),
            run: Box::new(move || {
                let (data, urls) = (data.clone(), urls.clone());
                Box::pin(async move { run_db_update(&data, &urls).await.map_err(Into::into) })
            }),
        }
    });
    tokio::spawn(sync.run(
        lead,
        Duration::from_secs(config.vulndb.poll_secs.max(1)),
        build,
    ));
    // Validated when the configuration was loaded.
    let outbound = config.outbound.policy()?;
    let mut assess_options = config.assess.options(&config.data);
    assess_options.outbound = outbound.clone();
    assess_options.metadata = config.metadata.storage();
    // With metadata.url every node shares the assessor's state: its
    // scheduler and webhook delivery run on the node that leads them
    // (on SQLite, this one).
    assess_options.leads = assess::Leads::of_meta(registry.meta().clone(), LEAD_RETRY);
    let assess = assess::start_with_registry(
        assess_options,
        registry.clone(),
        vulndb.clone(),
        config.catalog.limits(),
        Arc::new(assess::SystemClock),
    )
    .await
    .context("cannot start the assessment service")?;
    if !config.assess.pull_gate.is_empty() {
        let gate = assess::VerdictGate::new(assess.clone(), config.assess.pull_gate.clone())
            .map_err(anyhow::Error::msg)?;
        registry.set_pull_gate(Arc::new(gate));
    }
    let mut importer_config = config.import.importer_config();
    let patcher = crate::cmd_patch::start(&config, &registry, &assess, &vulndb, outbound.clone())?;
    importer_config.outbound = outbound;
    let importer = import::Importer::new(registry.clone(), importer_config);
    let mut edge = edge::Edge::new(access.clone());
    edge.realm = config.auth.realm.clone();
    edge.max_concurrent_uploads = config.auth.max_concurrent_uploads;
    edge.tls = args.tls_cert.is_some() || config.server.tls_cert.is_some();
    let addr = listener.local_addr()?;
    let server = config
        .server
        .httpd_config(args.tls_cert, args.tls_key, nofile)?;
    announce(addr, &server, &config);
    let app = app(&config, &registry, &assess, &importer, &patcher, edge);
    httpd::serve(listener, app, server, shutdown_signal())
        .await
        .context("server failed")?;
    assess.shutdown();
    registry.flush();
    if let Some(ac) = &access {
        // The audit log's last second is still buffered.
        ac.flush();
    }
    tracing::info!("drydock stopped");
    Ok(ExitCode::SUCCESS)
}

/// Say where the server answers, in the log and once on stderr for a
/// person starting it; warn when it is reachable beyond loopback in clear
/// text.
fn announce(addr: SocketAddr, server: &httpd::ServerConfig, config: &Config) {
    let scheme = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // 0.0.0.0 / [::] answer on loopback too; that is a URL one can open.
    let shown = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    let url = format!("{scheme}://{shown}/");
    let dashboard = format!("{url}ui/");
    tracing::info!(
        %addr,
        %url,
        %dashboard,
        data = %config.data.display(),
        max_connections = server.max_connections,
        "drydock listening"
    );
    if !addr.ip().is_loopback() && server.tls.is_none() {
        tracing::warn!(
            %addr,
            "listening beyond loopback without TLS: passwords, tokens and images cross the \
             network in clear text; give --tls-cert/--tls-key (server.tls_cert/tls_key) or put \
             a TLS-terminating proxy in front"
        );
    }
    eprintln!("drydock is serving on {url} (dashboard: {dashboard})");
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

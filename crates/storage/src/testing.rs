//! Test support (feature `testing`): a throwaway PostgreSQL cluster on
//! loopback, started with Debian's binaries (`/usr/lib/postgresql/*/bin`:
//! `initdb`, `pg_ctl`) in a temporary directory on a free port.
//!
//! PostgreSQL refuses to run as root, so as root the cluster runs as the
//! `postgres` user (`runuser`), its directory handed to that user. Where
//! the binaries are missing, [`PgCluster::start`] prints `skipped: …`
//! naming what is missing and returns `None`, except under `CI`, where it
//! panics: CI installs the `postgresql` package.
//!
//! `DRYDOCK_TEST_PG_URL` (a server's URL whose user may create databases)
//! replaces the throwaway cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running cluster; stopped (and its directory removed) on drop, or by
/// a watcher when the test process exits without dropping it.
pub struct PgCluster {
    base_url: String,
    data: Option<(tempfile::TempDir, PathBuf, Option<String>)>,
}

/// Where Debian puts a PostgreSQL version's programs (the newest).
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The uid and gid of a user, from the passwd database.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// A command run as `user` when there is one.
fn command(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn skip_or_fail(why: &str) -> Option<PgCluster> {
    if std::env::var_os("CI").is_some() {
        panic!("CI: {why} (install Debian's postgresql package)");
    }
    eprintln!("skipped: {why}");
    None
}

impl PgCluster {
    /// Start a cluster (or use `DRYDOCK_TEST_PG_URL`); `None` after
    /// printing why when PostgreSQL is not installed (outside CI).
    pub fn start() -> Option<PgCluster> {
        PgCluster::start_with(None)
    }

    /// A throwaway cluster of its own (never `DRYDOCK_TEST_PG_URL`) with
    /// `ssl = on`, serving the PEM certificate chain and key given. It
    /// still accepts plain connections, as `pg_hba` is left as initdb
    /// writes it.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<PgCluster> {
        PgCluster::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Option<PgCluster> {
        if let Ok(url) = std::env::var("DRYDOCK_TEST_PG_URL")
            && tls.is_none()
        {
            return Some(PgCluster {
                base_url: url.trim_end_matches('/').to_string(),
                data: None,
            });
        }
        let Some(bin) = bin_dir() else {
            return skip_or_fail(
                "no PostgreSQL: /usr/lib/postgresql/*/bin/initdb and pg_ctl are missing",
            );
        };
        let user = if is_root() {
            if !Path::new("/usr/sbin/runuser").exists() && !Path::new("/sbin/runuser").exists() {
                return skip_or_fail(
                    "running as root, and no runuser to run PostgreSQL as postgres",
                );
            }
            if user_ids("postgres").is_none() {
                return skip_or_fail("running as root, and there is no postgres user");
            }
            Some("postgres".to_string())
        } else {
            None
        };
        // As root, under /tmp: the postgres user must be able to reach it
        // (a TMPDIR under /root would not be).
        let mut builder = tempfile::Builder::new();
        builder.prefix("drydock-pg-");
        let dir = match &user {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .expect("temporary directory");
        if let Some(u) = &user {
            let (uid, gid) = user_ids(u).expect("postgres user");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let data = dir.path().join("data");
        let out = command(user.as_deref(), &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "drydock",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ssl = String::new();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).expect("write the TLS files");
                // The server refuses a key others may read.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
                if let Some(u) = &user {
                    let (uid, gid) = user_ids(u).expect("postgres user");
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
                }
            }
            ssl = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        }
        // Started in a loop: the free port may be taken before we bind it.
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=400{ssl}",
                dir.path().display()
            );
            let status = command(user.as_deref(), &bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                // The server's output goes to its log; no pipe of ours
                // may outlive the test process.
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run pg_ctl");
            if status.success() {
                watch_exit(&bin, &data, dir.path(), user.as_deref());
                return Some(PgCluster {
                    base_url: format!("postgres://drydock@127.0.0.1:{port}"),
                    data: Some((dir, data, user)),
                });
            }
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start: {log}");
    }

    /// The URL of the cluster's default database.
    pub fn url(&self) -> String {
        format!("{}/postgres", self.base_url)
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let url = self.url();
        let sql = format!("CREATE DATABASE {name}");
        // On a thread of its own: callers may be inside a runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test cluster");
                let task = tokio::spawn(conn);
                client.batch_execute(&sql).await.expect("CREATE DATABASE");
                drop(client);
                let _ = task.await;
            })
        })
        .join()
        .expect("create a test database");
        format!("{}/{name}", self.base_url)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some((_dir, data, user)) = &self.data
            && let Some(bin) = bin_dir()
        {
            let _ = command(user.as_deref(), &bin.join("pg_ctl"))
                .arg("-D")
                .arg(data)
                .args(["-m", "immediate", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Stop the cluster when this process exits even if it is never
/// dropped (a process-wide cluster in a static): a shell waits for our
/// pid to go, then stops the server and removes its directory.
fn watch_exit(bin: &Path, data: &Path, dir: &Path, user: Option<&str>) {
    let stop = match user {
        Some(u) => format!("runuser -u {u} -- '{}'", bin.join("pg_ctl").display()),
        None => format!("'{}'", bin.join("pg_ctl").display()),
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// One cluster for the whole test process, started on first use;
/// `None` where PostgreSQL is not installed (outside CI).
pub fn shared_cluster() -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
    CLUSTER.get_or_init(PgCluster::start).as_ref()
}

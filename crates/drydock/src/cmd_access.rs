//! `drydock user …` and `drydock robot …`: manage identities in the data
//! directory directly, as its local operator (like `drydock gc`). A
//! running server sees the change within a second.
//!
//! Secrets (a generated password, a robot's secret) are printed once, to
//! standard output, and never logged.

use crate::access::{self, parse_permission};
use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, Result, bail};
use auth::{Binding, Principal, Subject};
use std::io::BufRead;
use std::process::ExitCode;
use time::OffsetDateTime;

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add a user (a password is generated and printed unless
    /// --password-stdin).
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Groups the user belongs to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Permissions: REPOSITORY-PATTERN:ACTION[,ACTION…] (repeatable),
        /// e.g. 'team-a/*:pull,push'.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Make the user an administrator of the whole server.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a user's password (its sessions and refresh tokens end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user with its API tokens and permissions.
    Rm { name: String },
}

#[derive(clap::Args)]
pub struct RobotArgs {
    #[command(subcommand)]
    pub command: RobotCommand,
}

#[derive(clap::Subcommand)]
pub enum RobotCommand {
    /// Add a robot account; prints its secret once. It logs in as
    /// `robot$NAME`.
    Add {
        name: String,
        /// Permissions: REPOSITORY-PATTERN:ACTION[,ACTION…] (repeatable).
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
        /// Expiry: a duration (`90d`, `12h`, `30m`) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List robot accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a robot: its logins and tokens stop working at once.
    Revoke { name: String },
    /// Delete a robot and its permissions.
    Rm { name: String },
}

/// The local operator, for the audit log.
fn operator() -> Principal {
    Principal::unrestricted()
}

fn read_password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("no password on standard input");
        }
        Ok((p, false))
    } else {
        Ok((auth::secret::generate_password(), true))
    }
}

/// Parse `90d`, `12h`, `30m`, `45s` or an RFC 3339 time.
pub fn parse_expiry(s: &str) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--expires {s:?}: expected a duration like 90d, 12h, 30m or an RFC 3339 time")
    })?;
    let d = match unit {
        "d" => time::Duration::days(n),
        "h" => time::Duration::hours(n),
        "m" => time::Duration::minutes(n),
        "s" => time::Duration::seconds(n),
        _ => bail!("--expires {s:?}: expected a duration like 90d, 12h, 30m or an RFC 3339 time"),
    };
    Ok(OffsetDateTime::now_utc() + d)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

pub async fn run_user(args: UserArgs, config: Config) -> Result<ExitCode> {
    let ac = access::open(&config.data, &config.auth, &config.metadata)?;
    let by = operator();
    match args.command {
        UserCommand::Add {
            name,
            password_stdin,
            groups,
            permissions,
            admin,
        } => {
            let perms = permissions
                .iter()
                .map(|p| parse_permission(p))
                .collect::<Result<Vec<_>>>()?;
            let (password, generated) = read_password(password_stdin)?;
            ac.add_user(&by, &name, &password, &groups)?;
            let mut grants = perms;
            if admin {
                grants.push(("**".into(), vec![auth::Action::Admin]));
            }
            for (pattern, actions) in grants {
                ac.add_binding(
                    &by,
                    Binding {
                        id: String::new(),
                        subject: Subject::User(name.clone()),
                        pattern,
                        actions,
                    },
                )?;
            }
            eprintln!("added user {name}");
            if generated {
                outln!("password: {password}")?;
                eprintln!("(shown once; change it with `drydock user passwd {name}`)");
            }
        }
        UserCommand::List { json } => {
            let users = ac.users()?;
            if json {
                print_json(&users)?;
            } else {
                let rows = users.iter().map(|u| {
                    vec![
                        u.name.clone(),
                        if u.admin { "yes" } else { "no" }.to_string(),
                        u.created_at.to_string(),
                        u.groups.join(","),
                    ]
                });
                let text =
                    report::table::columns(&["NAME", "ADMIN", "CREATED", "GROUPS"], rows, &[]);
                crate::out::write_all(text.as_bytes())?;
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let (password, generated) = read_password(password_stdin)?;
            ac.set_password(&by, &name, &password)?;
            eprintln!("changed the password of {name}");
            if generated {
                outln!("password: {password}")?;
            }
        }
        UserCommand::Rm { name } => {
            ac.remove_user(&by, &name)?;
            eprintln!("removed user {name}");
        }
    }
    ac.flush();
    Ok(ExitCode::SUCCESS)
}

pub async fn run_robot(args: RobotArgs, config: Config) -> Result<ExitCode> {
    let ac = access::open(&config.data, &config.auth, &config.metadata)?;
    let by = operator();
    match args.command {
        RobotCommand::Add {
            name,
            permissions,
            expires,
            description,
        } => {
            let perms = permissions
                .iter()
                .map(|p| parse_permission(p))
                .collect::<Result<Vec<_>>>()?;
            let expires = expires.as_deref().map(parse_expiry).transpose()?;
            let secret = ac.add_robot(&by, &name, &description, expires, &perms)?;
            eprintln!("added robot {name}; log in as the user below with the secret (shown once)");
            outln!("username: {}{name}", auth::ROBOT_PREFIX)?;
            outln!("secret: {secret}")?;
        }
        RobotCommand::List { json } => {
            let robots = ac.robots()?;
            if json {
                print_json(&robots)?;
            } else {
                let mut rows = Vec::new();
                for r in robots {
                    let perms: Vec<String> = r
                        .permissions
                        .iter()
                        .map(|b| {
                            format!(
                                "{}:{}",
                                b.pattern,
                                b.actions
                                    .iter()
                                    .map(|a| a.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )
                        })
                        .collect();
                    rows.push(vec![
                        r.name.clone(),
                        r.state.to_string(),
                        r.expires_at.as_deref().unwrap_or("never").to_string(),
                        perms.join(" "),
                    ]);
                }
                let text =
                    report::table::columns(&["NAME", "STATE", "EXPIRES", "PERMISSIONS"], rows, &[]);
                crate::out::write_all(text.as_bytes())?;
            }
        }
        RobotCommand::Revoke { name } => {
            ac.revoke_robot(&by, &name)?;
            eprintln!("revoked robot {name}");
        }
        RobotCommand::Rm { name } => {
            ac.remove_robot(&by, &name)?;
            eprintln!("removed robot {name}");
        }
    }
    ac.flush();
    Ok(ExitCode::SUCCESS)
}

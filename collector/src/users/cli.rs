//! `spotcheck-collector users add|passwd|disable|enable|list` and `tokens issue|list|revoke`,
//! run on a data directory (the collector may be running: SQLite serialises the writes).
//! Every change is audited with `"by":"cli"`: whoever can run these owns the data directory.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use spotcheck_protocol::UnixMillis;

use super::store::{self, NewUser};
use super::{random_secret, secrets, Role, TokenId};
use crate::audit;
use crate::config::Synchronous;

/// `users …`.
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Create a user. Prints a generated password unless `--password-stdin` gives one.
    Add {
        /// Login name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// admin, supervisor, inspector or auditor.
        #[arg(long)]
        role: String,
        /// A supervisor's department (health, culture, …).
        #[arg(long)]
        department: Option<String>,
        /// An inspector user's inspector id in the registry.
        #[arg(long)]
        inspector: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
    /// Set a user's password (ends their console sessions). Prints a generated one unless
    /// `--password-stdin` gives one.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
    /// Disable a user: revokes every token and ends every session.
    Disable {
        /// Login name.
        name: String,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
    /// Enable a disabled user (their old tokens stay revoked).
    Enable {
        /// Login name.
        name: String,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
    /// List the users.
    List {
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
}

/// `tokens …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Issue an API token for a user; prints it once.
    Issue {
        /// Login name of the owner.
        user: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 90)]
        days: i64,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
    /// List tokens (of one user, or everyone's).
    List {
        /// Login name.
        user: Option<String>,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (`tokens list`).
        id: i64,
        /// Data directory holding the database.
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
    },
}

fn open(data: &Path) -> anyhow::Result<rusqlite::Connection> {
    let db = crate::store::db_path(data);
    anyhow::ensure!(
        db.exists(),
        "no database in {}; give the collector's data directory with --data",
        data.display()
    );
    Ok(crate::store::open_for_writing(&db, Synchronous::Full)?)
}

fn user_id(conn: &rusqlite::Connection, name: &str) -> anyhow::Result<super::UserId> {
    Ok(store::by_name(conn, name)?
        .with_context(|| format!("no user named {name}; see `users list`"))?
        .id)
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    } else {
        Ok((random_secret()[..24].to_owned(), true))
    }
}

/// Runs a `users` command.
pub fn users(cmd: UsersCommand) -> anyhow::Result<()> {
    let now = UnixMillis::now();
    audit::acting_as("cli", || match cmd {
        UsersCommand::Add {
            name,
            role,
            department,
            inspector,
            password_stdin,
            data,
        } => {
            let mut conn = open(&data)?;
            let role: Role = role.parse()?;
            let (pw, generated) = password(password_stdin)?;
            let u = store::create(
                &mut conn,
                &NewUser {
                    name: &name,
                    role: Some(role),
                    department: department.as_deref(),
                    inspector: inspector.as_deref(),
                    password: Some(&pw),
                },
                now,
            )?;
            println!("user {} created: id {}, role {}", u.name, u.id, u.role);
            if generated {
                println!("password: {pw}");
            }
            Ok(())
        }
        UsersCommand::Passwd {
            name,
            password_stdin,
            data,
        } => {
            let mut conn = open(&data)?;
            let id = user_id(&conn, &name)?;
            let (pw, generated) = password(password_stdin)?;
            store::set_password(&mut conn, id, &pw, now)?;
            println!("password of {name} set; their console sessions ended");
            if generated {
                println!("password: {pw}");
            }
            Ok(())
        }
        UsersCommand::Disable { name, data } => set_active(&data, &name, false, now),
        UsersCommand::Enable { name, data } => set_active(&data, &name, true, now),
        UsersCommand::List { data } => {
            let conn = open(&data)?;
            for u in store::list(&conn)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.id,
                    u.name,
                    u.role,
                    u.department.or(u.inspector).unwrap_or_default(),
                    if u.active { "active" } else { "disabled" }
                );
            }
            Ok(())
        }
    })
}

fn set_active(data: &Path, name: &str, active: bool, now: UnixMillis) -> anyhow::Result<()> {
    let mut conn = open(data)?;
    let id = user_id(&conn, name)?;
    store::set_active(&mut conn, id, active, now)?;
    if active {
        println!("user {name} enabled; issue new tokens, the old ones stay revoked");
    } else {
        println!("user {name} disabled: tokens revoked, sessions ended");
    }
    Ok(())
}

/// Runs a `tokens` command.
pub fn tokens(cmd: TokensCommand) -> anyhow::Result<()> {
    let now = UnixMillis::now();
    audit::acting_as("cli", || match cmd {
        TokensCommand::Issue {
            user,
            name,
            days,
            data,
        } => {
            let mut conn = open(&data)?;
            let id = user_id(&conn, &user)?;
            let tx = conn.transaction()?;
            let (info, secret) = secrets::issue(&tx, id, &name, days, now)?;
            tx.commit()?;
            println!(
                "token {} for {user}, expires {} (Unix ms)",
                info.id, info.expires_ms
            );
            println!("{secret}");
            Ok(())
        }
        TokensCommand::List { user, data } => {
            let conn = open(&data)?;
            let owner = user.as_deref().map(|u| user_id(&conn, u)).transpose()?;
            for t in secrets::tokens(&conn, owner)? {
                let state = match t.revoked_ms {
                    Some(_) => "revoked",
                    None if t.expires_ms <= now.0 => "expired",
                    None => "live",
                };
                println!(
                    "{}\tuser {}\t{}\texpires {}\t{state}\tby {}",
                    t.id, t.user, t.name, t.expires_ms, t.created_by
                );
            }
            Ok(())
        }
        TokensCommand::Revoke { id, data } => {
            let mut conn = open(&data)?;
            secrets::revoke(&mut conn, TokenId(id), now)?;
            println!("token {id} revoked");
            Ok(())
        }
    })
}

//! `spotcheck-collector users add|passwd|disable|enable|list` and `tokens issue|list|revoke`,
//! run on a data directory's SQLite file or on the store at `--store URL` (the collector may be
//! running: the store's write lock serialises the writes).
//! Every change is audited with `"by":"cli"`: whoever can run these owns the data directory.

use std::io::BufRead;

use anyhow::Context;
use spotcheck_protocol::UnixMillis;

use super::store::{self, NewUser};
use super::{random_secret, secrets, Role, TokenId};
use crate::audit;
use crate::cli::StoreArgs;
use crate::store::db::{Conn, Mode, Sql};

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
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password (ends their console sessions). Prints a generated one unless
    /// `--password-stdin` gives one.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user: revokes every token and ends every session.
    Disable {
        /// Login name.
        name: String,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled user (their old tokens stay revoked).
    Enable {
        /// Login name.
        name: String,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the users.
    List {
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
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
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (of one user, or everyone's).
    List {
        /// Login name.
        user: Option<String>,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (`tokens list`).
        id: i64,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn open(store: &StoreArgs) -> anyhow::Result<Conn> {
    store.existing(Mode::Write)
}

fn user_id(conn: &(impl Sql + ?Sized), name: &str) -> anyhow::Result<super::UserId> {
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
            store: at,
        } => {
            let conn = open(&at)?;
            let role: Role = role.parse()?;
            let (pw, generated) = password(password_stdin)?;
            let u = store::create(
                &conn,
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
            store: at,
        } => {
            let conn = open(&at)?;
            let id = user_id(&conn, &name)?;
            let (pw, generated) = password(password_stdin)?;
            store::set_password(&conn, id, &pw, now)?;
            println!("password of {name} set; their console sessions ended");
            if generated {
                println!("password: {pw}");
            }
            Ok(())
        }
        UsersCommand::Disable { name, store: at } => set_active(&at, &name, false, now),
        UsersCommand::Enable { name, store: at } => set_active(&at, &name, true, now),
        UsersCommand::List { store: at } => {
            let conn = open(&at)?;
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

fn set_active(at: &StoreArgs, name: &str, active: bool, now: UnixMillis) -> anyhow::Result<()> {
    let conn = open(at)?;
    let id = user_id(&conn, name)?;
    store::set_active(&conn, id, active, now)?;
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
            store: at,
        } => {
            let conn = open(&at)?;
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
        TokensCommand::List { user, store: at } => {
            let conn = open(&at)?;
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
        TokensCommand::Revoke { id, store: at } => {
            let conn = open(&at)?;
            secrets::revoke(&conn, TokenId(id), now)?;
            println!("token {id} revoked");
            Ok(())
        }
    })
}

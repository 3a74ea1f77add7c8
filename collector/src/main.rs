//! `spotcheck-collector`: serve, verify and export draws, import the libraries, verify and
//! export the audit log, manage users, tokens and agent credentials. The demo is a binary of
//! its own, `spotcheck-demo` (the `demo/` crate).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spotcheck_collector::cli::{self, ImportKind, StoreArgs};
use spotcheck_collector::users::cli::{self as users_cli, TokensCommand, UsersCommand};
use spotcheck_collector::{shutdown, telemetry, Collector, RawConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "spotcheck-collector",
    version,
    about = "Spotcheck's collector: MQTT ingest, store, API and console"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector with a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Double-random draws.
    Draw {
        #[command(subcommand)]
        command: DrawCommand,
    },
    /// The item list and the entity and inspector libraries.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Users of the console and the API (admin, supervisor, inspector, auditor).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Users' API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Agent credentials: the key each agent signs with and its broker password.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Issue an agent's first credential; prints the credential file (or writes it to --out).
    Add {
        /// The agent id.
        agent: String,
        /// Write the credential file here (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace an agent's credential with a new generation; the old one stops working.
    Rotate {
        /// The agent id.
        agent: String,
        /// Write the credential file here (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an agent's credential: its next login and its batches are refused.
    Revoke {
        /// The agent id.
        agent: String,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the agents' credentials (generation, issue time, revoked or live; never secrets).
    List {
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the chain: prints `ok: N entries, head HASH`, or every problem and exits 1.
    Verify {
        /// Data directory holding the database.
        #[arg(long, conflicts_with = "file")]
        data: Option<PathBuf>,
        /// The store's URL instead of --data (sqlite:///PATH or postgres://…).
        #[arg(long, value_name = "URL", conflicts_with = "file")]
        store: Option<spotcheck_collector::store::db::DbUrl>,
        /// A JSON Lines export (`audit export`).
        #[arg(required_unless_present_any = ["data", "store"])]
        file: Option<PathBuf>,
        /// A head hash published earlier: the log must still contain that entry (this is
        /// what reveals deleted entries at the end).
        #[arg(long)]
        head: Option<String>,
    },
    /// Write every entry as JSON Lines, in seq order.
    Export {
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
        /// Output file; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DrawCommand {
    /// Recompute a draw record (or a JSON array of them, as the API lists them, full or public
    /// form) and say whether it matches; exits 1 on a mismatch.
    Verify {
        /// The record file, as `GET /api/v1/public/draws` or `GET /api/v1/draws` gives it.
        record: PathBuf,
        /// The published commitments (`GET /api/v1/public/draw-commitments`), as a URL or a
        /// file: each record must also match the commitment of its draw.
        #[arg(long, value_name = "URL|FILE")]
        commitments: Option<String>,
    },
    /// Write every revealed draw's full record, as stored now (recusals included), to
    /// OUT/{draw id}.json, ready for `draw verify`.
    Export {
        /// Where the store is: --data DIR (the collector's data directory) or --store URL.
        #[command(flatten)]
        store: StoreArgs,
        /// Where to write the files (default: DATA/draws).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Import a CSV or JSON file atomically: all rows or none.
    Import {
        /// What the file holds.
        #[arg(long, value_enum)]
        kind: ImportKind,
        /// The file (`.csv` or `.json`).
        file: PathBuf,
        /// Check every row and report, but change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the store is: --data DIR or --store URL.
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing();
    let ok = match cli.command {
        Command::Draw {
            command:
                DrawCommand::Verify {
                    record,
                    commitments,
                },
        } => cli::verify_draws(&record, commitments.as_deref())?,
        Command::Draw {
            command: DrawCommand::Export { store, out },
        } => {
            let out = out.unwrap_or_else(|| store.data.join("draws"));
            for path in cli::export_draws_from(&store, &out)? {
                println!("{}", path.display());
            }
            true
        }
        Command::Registry {
            command:
                RegistryCommand::Import {
                    kind,
                    file,
                    dry_run,
                    store,
                },
        } => cli::import(kind, &file, dry_run, &store)?,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data,
                    store,
                    file,
                    head,
                },
        } => {
            let source = match (data, store, file) {
                (data, Some(url), _) => cli::AuditSource::Store(StoreArgs {
                    data: data.unwrap_or_default(),
                    store: Some(url),
                }),
                (Some(data), None, _) => cli::AuditSource::Store(StoreArgs::data_dir(&data)),
                (None, None, Some(file)) => cli::AuditSource::File(file),
                (None, None, None) => {
                    anyhow::bail!("give --data DIR, --store URL or an exported FILE.jsonl")
                }
            };
            cli::audit_verify(&source, head.as_deref())?
        }
        Command::Audit {
            command: AuditCommand::Export { store, out },
        } => {
            cli::audit_export(&store, out.as_deref())?;
            true
        }
        Command::Users { command } => {
            users_cli::users(command)?;
            true
        }
        Command::Tokens { command } => {
            users_cli::tokens(command)?;
            true
        }
        Command::Agents { command } => {
            use cli::CredentialAction as A;
            match command {
                AgentsCommand::Add { agent, out, store } => {
                    cli::agents_change(A::Add, &agent, &store, out.as_deref())?
                }
                AgentsCommand::Rotate { agent, out, store } => {
                    cli::agents_change(A::Rotate, &agent, &store, out.as_deref())?
                }
                AgentsCommand::Revoke { agent, store } => {
                    cli::agents_change(A::Revoke, &agent, &store, None)?
                }
                AgentsCommand::List { store } => cli::agents_list(&store)?,
            }
            true
        }
        service => {
            run_service(service)?;
            true
        }
    };
    // A mismatch or a rejected file is not an error of the program, but the exit status says it.
    std::process::exit(if ok { 0 } else { 1 });
}

/// `serve`: long-running, on the async runtime until a signal.
fn run_service(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            on_signal.cancel();
        });
        match command {
            Command::Serve { config } => {
                let config = RawConfig::load(&config)?.validate()?;
                let collector = Collector::start(config).await?;
                stop.cancelled().await;
                collector.shutdown().await;
            }
            Command::Draw { .. }
            | Command::Registry { .. }
            | Command::Audit { .. }
            | Command::Users { .. }
            | Command::Tokens { .. }
            | Command::Agents { .. } => {
                anyhow::bail!("not a service command")
            }
        }
        Ok(())
    })
}

//! The one-shot subcommands behind `main.rs`: `draw verify`, `draw export`, `registry import`,
//! `audit verify`, `audit export` and `agents add|rotate|revoke|list`.
//!
//! Every command that opens the store finds it the same way ([`StoreArgs`]): `--store URL`
//! (`sqlite://PATH` or `postgres://…`, docs/storage.md) if given, else the SQLite file
//! `spotcheck.db` in `--data DIR` (default `./spotcheck-data`), as `serve` keeps it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::audit;
use crate::draw::{check_against, verify, verify_public, Commitment, DrawRecord, PublicRecord};
use crate::registry::import;
use crate::registry::parse::Kind;
use crate::registry::store as registry_store;
use crate::store;
use crate::store::db::{self, Conn, DbUrl, Mode};

/// Where a command finds the store: `--store URL`, else the SQLite file in `--data DIR`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Data directory holding the SQLite database (spotcheck.db); used unless --store is given.
    #[arg(long, default_value = "./spotcheck-data")]
    pub data: PathBuf,
    /// The store's URL instead of --data: sqlite:///PATH, or postgres://USER@HOST:PORT/DATABASE
    /// for a store shared by several collectors (docs/storage.md).
    #[arg(long, value_name = "URL")]
    pub store: Option<DbUrl>,
}

impl StoreArgs {
    /// The SQLite file in `data`.
    pub fn data_dir(data: &Path) -> StoreArgs {
        StoreArgs {
            data: data.to_owned(),
            store: None,
        }
    }

    /// The store's URL.
    pub fn url(&self) -> DbUrl {
        self.store
            .clone()
            .unwrap_or_else(|| DbUrl::Sqlite(store::db_path(&self.data)))
    }

    /// Whether the store exists: a SQLite file must (so that a mistyped `--data` creates
    /// nothing); a PostgreSQL database is taken to, the connection says otherwise.
    pub fn exists(&self) -> bool {
        match self.url() {
            DbUrl::Sqlite(path) => path.exists(),
            DbUrl::Postgres(_) => true,
        }
    }

    /// Connects to a store that exists (see [`StoreArgs::exists`]); for writing, the schema
    /// is brought up to date first.
    pub fn existing(&self, mode: Mode) -> anyhow::Result<Conn> {
        let url = self.url();
        if !self.exists() {
            match &self.store {
                Some(_) => anyhow::bail!("no database at {url}"),
                None => anyhow::bail!(
                    "no database in {} (spotcheck.db); give the collector's data directory \
                     with --data, or the store's URL with --store",
                    self.data.display()
                ),
            }
        }
        db::connect(&url, mode).with_context(|| format!("cannot open the store {url}"))
    }

    /// Connects for writing, creating a SQLite store (and its directory) if there is none.
    pub fn create(&self) -> anyhow::Result<Conn> {
        let url = self.url();
        if let DbUrl::Sqlite(path) = &url {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create data directory {}", dir.display()))?;
            }
        }
        db::connect(&url, Mode::Write).with_context(|| format!("cannot open the store {url}"))
    }
}

/// What `registry import --kind` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportKind {
    /// The entity library.
    Entities,
    /// The inspector library.
    Inspectors,
    /// The item list.
    Items,
}

impl From<ImportKind> for Kind {
    fn from(k: ImportKind) -> Kind {
        match k {
            ImportKind::Entities => Kind::Entities,
            ImportKind::Inspectors => Kind::Inspectors,
            ImportKind::Items => Kind::Items,
        }
    }
}

/// Which form a record file holds, told by its top-level keys without building the records.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    candidates: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    strata: Option<serde::de::IgnoredAny>,
}

/// One record or a JSON array of them.
fn one_or_many<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<Vec<T>> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|r| vec![r])
    }
}

/// Reads the published commitments (the JSON of `GET /api/v1/public/draw-commitments`) from
/// an `http://` or `https://` URL or a file.
pub fn load_commitments(source: &str) -> anyhow::Result<Vec<Commitment>> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let mut response = ureq::get(source)
            .call()
            .with_context(|| format!("cannot fetch the commitments from {source}"))?;
        response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the commitments from {source}"))?
    } else {
        std::fs::read_to_string(source)
            .with_context(|| format!("cannot read the commitments file {source}"))?
    };
    one_or_many(&text)
        .with_context(|| format!("{source} is not the JSON of GET /api/v1/public/draw-commitments"))
}

/// Writes every revealed draw's full record, as stored now (recusals and replacements
/// included), to `out/{draw id}.json`, in the JSON that `draw verify` and `GET /api/v1/draws`
/// use. The store is the one source: a file is a rendering of it at the time of the export,
/// so export again after a recusal. Returns the files written.
pub fn export_draws(data: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    export_draws_from(&StoreArgs::data_dir(data), out)
}

/// [`export_draws`] from the store `at` names.
pub fn export_draws_from(at: &StoreArgs, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let conn = at.existing(Mode::Read)?;
    let records = crate::draw::store::records(&conn, u32::MAX)?;
    let mut written = Vec::with_capacity(records.len());
    for record in records {
        written.push(crate::draw::files::write(out, &record)?);
    }
    Ok(written)
}

/// Verifies a record file (one record or a JSON array of them, full or public form), printing
/// `match` or every mismatch per record; with `commitments`, also checks each record against
/// the commitment published for its draw. Returns whether all matched.
pub fn verify_draws(path: &Path, commitments: Option<&str>) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let not_a_record = || format!("{} is not a draw record or a list of them", path.display());
    let published = commitments.map(load_commitments).transpose()?;
    let check = |committed: crate::draw::commitment::Committed<'_>| {
        published
            .as_deref()
            .map(|p| check_against(&committed, p))
            .unwrap_or_default()
    };
    // Parse straight into records (not through serde_json::Value: a million-entity record
    // would take seconds and gigabytes that way).
    let probes: Vec<Probe> = one_or_many(&text).with_context(not_a_record)?;
    anyhow::ensure!(
        !probes.is_empty(),
        "{} holds no draw record",
        path.display()
    );
    let full = probes.iter().all(|p| p.candidates.is_some());
    let public = probes
        .iter()
        .all(|p| p.strata.is_some() && p.candidates.is_none());
    let mut all = true;
    let mut report = |id: &str, summary: String, mismatches: Vec<crate::draw::verify::Mismatch>| {
        if mismatches.is_empty() {
            println!("{id}: match ({summary})");
        } else {
            all = false;
            println!("{id}: MISMATCH");
            for m in mismatches {
                println!("  {m}");
            }
        }
    };
    if full {
        let records: Vec<DrawRecord> = one_or_many(&text).with_context(not_a_record)?;
        for r in &records {
            let mut mismatches = verify(r);
            mismatches.extend(check(r.committed()));
            let summary = format!(
                "full record: {} entities drawn from {} candidates, {} replacements{}",
                r.draws.len(),
                r.candidates.len(),
                r.replacements.len(),
                if published.is_some() {
                    "; as committed"
                } else {
                    ""
                }
            );
            report(r.parameters.draw_id.as_str(), summary, mismatches);
        }
    } else if public {
        let records: Vec<PublicRecord> = one_or_many(&text).with_context(not_a_record)?;
        for r in &records {
            let mut result = verify_public(r);
            result.mismatches.extend(check(r.committed()));
            let summary = format!(
                "public record: {} entities drawn from {} candidates in {} strata, {} replacements{}; \
                 {} inspector(s) passed over for conflicts that only the full record shows",
                r.draws.len(),
                r.strata.iter().map(|s| s.size).sum::<u64>(),
                r.strata.len(),
                r.replacements.len(),
                if published.is_some() { "; as committed" } else { "" },
                result.passed_over
            );
            report(r.parameters.draw_id.as_str(), summary, result.mismatches);
        }
    } else {
        anyhow::bail!(
            "{}: every record must be of one form, full (with \"candidates\") or public (with \"strata\"); verify the forms separately",
            path.display()
        );
    }
    Ok(all)
}

/// Imports a file into the library; with `dry_run`, only checks it. Prints every bad row.
/// Returns whether the file was valid.
pub fn import(
    kind: ImportKind,
    file: &Path,
    dry_run: bool,
    at: &StoreArgs,
) -> anyhow::Result<bool> {
    let rows = import::open_file(file)?;
    let conn = if dry_run { None } else { Some(at.create()?) };
    // A dry run creates nothing: it reads what exists, if anything (a SQLite file that is not
    // there, or cannot be read, holds no entities; a PostgreSQL store must answer).
    let existing = match (&conn, at.url()) {
        (Some(_), _) => None,
        (None, DbUrl::Sqlite(path)) if path.exists() => at.existing(Mode::Read).ok(),
        (None, DbUrl::Sqlite(_)) => None,
        (None, DbUrl::Postgres(_)) => Some(at.existing(Mode::Read)?),
    };
    match registry_store::import(conn.as_ref(), existing.as_ref(), kind.into(), rows)? {
        registry_store::Imported::Refused {
            rows,
            accepted,
            errors,
        } => {
            eprintln!(
                "{}: {} problem(s) in {} of {rows} row(s); nothing was imported:",
                file.display(),
                errors.len(),
                rows - accepted
            );
            for e in &errors {
                eprintln!("  {e}");
            }
            Ok(false)
        }
        registry_store::Imported::Rows(n) if dry_run => {
            println!(
                "{}: {n} row(s) valid; dry run, nothing written",
                file.display()
            );
            Ok(true)
        }
        registry_store::Imported::Rows(n) => {
            println!("{}: imported {n} row(s)", file.display());
            Ok(true)
        }
    }
}

/// Where `audit verify` reads the log from.
#[derive(Debug, Clone)]
pub enum AuditSource {
    /// The store (a data directory's SQLite file, or `--store URL`).
    Store(StoreArgs),
    /// A JSON Lines export.
    File(PathBuf),
}

/// Verifies the audit log, optionally against a published head hash. Prints
/// `ok: N entries, head HASH` or every problem. Returns whether it verified.
pub fn audit_verify(source: &AuditSource, head: Option<&str>) -> anyhow::Result<bool> {
    if let Some(h) = head {
        anyhow::ensure!(
            audit::hash::is_hash(&h.trim().to_ascii_lowercase()),
            "--head {h:?} is not a SHA-256 hash: give the 64 hex digits `audit verify` printed"
        );
    }
    let report = match source {
        AuditSource::Store(at) => {
            let conn = at.existing(Mode::Read)?;
            audit::verify_store(&conn, head)?
        }
        AuditSource::File(file) => {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (entries, unreadable) = audit::read_jsonl(std::io::BufReader::new(f))
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut report = audit::verify(&entries, head);
            report.add_unreadable(unreadable);
            report
        }
    };
    if report.is_ok() {
        let since = match report.published_head_seq {
            Some(seq) => format!(
                " (published head at seq {seq}, {} entries since)",
                report.head.as_ref().map_or(0, |(last, _)| last - seq)
            ),
            None => String::new(),
        };
        println!(
            "ok: {} entries, head {}{since}",
            report.entries,
            report.head_hash()
        );
    } else {
        println!("FAILED: {} problem(s)", report.problems.len());
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(report.is_ok())
}

/// Exports the audit log as JSON Lines to `out` (or standard output).
pub fn audit_export(at: &StoreArgs, out: Option<&Path>) -> anyhow::Result<()> {
    let conn = at.existing(Mode::Read)?;
    match out {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let n = audit::export_jsonl(&conn, std::io::BufWriter::new(f))
                .with_context(|| format!("cannot export to {}", path.display()))?;
            eprintln!("{}: {n} entries", path.display());
        }
        None => {
            audit::export_jsonl(&conn, std::io::stdout().lock())?;
        }
    }
    Ok(())
}

/// What `agents` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialAction {
    /// Issue an agent's first credential.
    Add,
    /// Replace it with a new generation.
    Rotate,
    /// Revoke it.
    Revoke,
}

/// Issues, rotates or revokes an agent's credential in the store (audited). A new credential
/// is written to `out` (mode 0600) or printed. A running collector picks the change up
/// within 2 s.
pub fn agents_change(
    action: CredentialAction,
    agent: &str,
    at: &StoreArgs,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    use crate::registry::credentials;
    let agent = spotcheck_protocol::AgentId::new(agent)
        .with_context(|| format!("agent id {agent:?} is not valid"))?;
    let conn = at.create()?;
    let now = spotcheck_protocol::UnixMillis::now();
    let issued = match action {
        CredentialAction::Add => credentials::add(&conn, &agent, now)?,
        CredentialAction::Rotate => credentials::rotate(&conn, &agent, now)?,
        CredentialAction::Revoke => {
            credentials::revoke(&conn, &agent, now)?;
            eprintln!(
                "agent {agent}: credential revoked; its next login and its batches are refused"
            );
            return Ok(());
        }
    };
    let text = issued.to_file_text();
    match out {
        Some(path) => {
            write_secret(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "agent {agent}: credential generation {} written to {} (install it on the agent as agent.credential_file)",
                issued.key.generation(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Lists every agent credential (never the secrets).
pub fn agents_list(at: &StoreArgs) -> anyhow::Result<()> {
    let conn = at.existing(Mode::Read)?;
    println!("agent\tgeneration\tissued_ms\tstate");
    for c in crate::registry::credentials::list(&conn)? {
        let state = match c.revoked_ms {
            Some(t) => format!("revoked at {t}"),
            None => "live".to_owned(),
        };
        println!("{}\t{}\t{}\t{state}", c.agent, c.generation, c.issued_ms);
    }
    Ok(())
}

/// Writes a secret file readable by its owner only.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

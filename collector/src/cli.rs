//! The one-shot subcommands behind `main.rs`: `draw verify` and `registry import`.

use std::path::Path;

use anyhow::Context;

use crate::config::Synchronous;
use crate::draw::{verify, DrawRecord};
use crate::registry::import::{self, parse_rows};
use crate::registry::parse::Kind;
use crate::registry::store as registry_store;
use crate::store;

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

/// Verifies a record file (one record or a JSON array of them), printing `match` or every
/// mismatch per record. Returns whether all matched.
pub fn verify_draws(path: &Path) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Parse straight into records (not through serde_json::Value: a million-entity record
    // would take seconds and gigabytes that way).
    let records: Vec<DrawRecord> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
    } else {
        serde_json::from_str(&text).map(|r| vec![r])
    }
    .with_context(|| format!("{} is not a draw record or a list of them", path.display()))?;
    anyhow::ensure!(
        !records.is_empty(),
        "{} holds no draw record",
        path.display()
    );
    let mut all = true;
    for r in &records {
        let mismatches = verify(r);
        if mismatches.is_empty() {
            println!(
                "{}: match ({} entities drawn from {} candidates, {} replacements)",
                r.parameters.draw_id,
                r.draws.len(),
                r.candidates.len(),
                r.replacements.len()
            );
        } else {
            all = false;
            println!("{}: MISMATCH", r.parameters.draw_id);
            for m in mismatches {
                println!("  {m}");
            }
        }
    }
    Ok(all)
}

/// Imports a file into the library; with `dry_run`, only checks it. Prints every bad row.
/// Returns whether the file was valid.
pub fn import(kind: ImportKind, file: &Path, dry_run: bool, data: &Path) -> anyhow::Result<bool> {
    let rows = import::read_file(file)?;
    let db = store::db_path(data);
    let mut conn = if dry_run {
        None
    } else {
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create data directory {}", data.display()))?;
        Some(store::open_for_writing(&db, Synchronous::Full)?)
    };
    let known = match &conn {
        Some(c) => registry_store::known_entities(c)?,
        // A dry run creates nothing: it reads what exists, if anything.
        None if db.exists() => store::open_for_reading(&db)
            .ok()
            .and_then(|c| registry_store::known_entities(&c).ok())
            .unwrap_or_default(),
        None => Default::default(),
    };
    match parse_rows(kind.into(), &rows, &known) {
        Err(errors) => {
            eprintln!(
                "{}: {} problem(s); nothing was imported:",
                file.display(),
                errors.len()
            );
            for e in &errors {
                eprintln!("  {e}");
            }
            Ok(false)
        }
        Ok(records) if dry_run => {
            println!(
                "{}: {} row(s) valid; dry run, nothing written",
                file.display(),
                records.len()
            );
            Ok(true)
        }
        Ok(records) => {
            let conn = conn.as_mut().expect("opened unless dry run");
            let n = registry_store::write(conn, &records)?;
            println!("{}: imported {n} row(s)", file.display());
            Ok(true)
        }
    }
}

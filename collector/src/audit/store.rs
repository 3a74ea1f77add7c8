//! The log in the store (`audit_log`, on SQLite or PostgreSQL): appending inside the caller's
//! transaction, the head, reading every entry back, and the JSON Lines export and import.
//!
//! One chain however many collectors share the store: an append reads the head and writes
//! the next entry inside the caller's write transaction, which holds the store's write lock
//! (SQLite's, or the cluster-wide advisory lock on PostgreSQL), so appends never interleave.

use std::io::{BufRead, Write};

use crate::store::db::{args, Arg, Sql};
use serde_json::Value;
use spotcheck_protocol::UnixMillis;

use super::hash::{canonical_json, entry_hash, is_hash, GENESIS};
use super::verify::{verify, Problem, Report};
use super::{AuditEntry, AuditError, EntryKind, PERSONAL_KEYS};

/// Appends an entry inside `tx`, so it commits (or rolls back) with the change it records.
/// The body must be a JSON object without personal data (see the module docs); it is stored
/// as its canonical text, with `"by"` set to the acting party ([`super::current_actor`])
/// unless the caller gave one. Returns the entry as stored.
pub fn append(
    tx: &(impl Sql + ?Sized),
    kind: EntryKind,
    subject: &str,
    body: &Value,
    ts: UnixMillis,
) -> Result<AuditEntry, AuditError> {
    if subject.is_empty() || subject.chars().any(char::is_control) {
        return Err(AuditError::BadSubject {
            subject: subject.to_owned(),
        });
    }
    check_body(subject, body)?;
    let mut body = body.clone();
    if let Value::Object(m) = &mut body {
        m.entry("by")
            .or_insert_with(|| Value::String(super::current_actor()));
        if let Some(token) = super::current_token() {
            m.entry("via_token").or_insert_with(|| Value::from(token));
        }
    }
    let (seq, prev_hash) = match head(tx)? {
        Some((seq, hash)) => {
            if !is_hash(&hash) {
                return Err(AuditError::Corrupt {
                    seq,
                    reason: format!("its hash {hash:?} is not 64 lowercase hex digits"),
                });
            }
            (seq + 1, hash)
        }
        None => (1, GENESIS.to_owned()),
    };
    let value = body;
    let body = canonical_json(&value);
    let hash = entry_hash(seq, ts.0, kind.as_str(), subject, &body, &prev_hash);
    tx.execute(
        "INSERT INTO audit_log (seq, ts_ms, kind, subject, body, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![seq, ts.0, kind.as_str(), subject, body, prev_hash, hash],
    )?;
    // Notifications ride in the same transaction as the entry that caused them.
    crate::notify::event::from_audit(tx, kind, subject, &value, ts)?;
    Ok(AuditEntry {
        seq,
        ts_ms: ts.0,
        kind,
        subject: subject.to_owned(),
        body,
        prev_hash,
        hash,
    })
}

/// One entry for [`append_all`]: what [`append`] takes, the body by value.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// What the entry records.
    pub kind: EntryKind,
    /// What it is about, as `type:id`.
    pub subject: String,
    /// The body, a JSON object without personal data.
    pub body: Value,
}

/// Rows per multi-row `INSERT` of [`append_all`] (seven parameters a row): a statement per
/// row was most of the cost of a reveal's 315,000 entries (BENCHMARKS.md, issue 17), and
/// SQLite looks a parameter up by a scan of the statement's names, so a few dozen rows, not
/// thousands.
const ENTRIES_PER_INSERT: usize = 16;

/// [`append`] for every entry of `entries`, in order, inside `tx`, all at `ts`: the same rows
/// (seq, body, prev_hash, hash), the same notifications, as appending them one by one, but
/// the chain's head read once and a few entries per statement. An entry [`append`] would
/// refuse fails the call with [`append`]'s error; the entries before it may be in `tx`
/// already, which the caller then rolls back. Returns the new head, or the old one when
/// `entries` is empty.
pub fn append_all(
    tx: &(impl Sql + ?Sized),
    entries: impl IntoIterator<Item = NewEntry>,
    ts: UnixMillis,
) -> Result<Option<(i64, String)>, AuditError> {
    let mut head = match head(tx)? {
        Some((seq, hash)) if !is_hash(&hash) => {
            return Err(AuditError::Corrupt {
                seq,
                reason: format!("its hash {hash:?} is not 64 lowercase hex digits"),
            })
        }
        other => other,
    };
    let by = super::current_actor();
    let token = super::current_token();
    let mut made: Vec<AuditEntry> = Vec::new();
    for NewEntry {
        kind,
        subject,
        mut body,
    } in entries
    {
        if subject.is_empty() || subject.chars().any(char::is_control) {
            return Err(AuditError::BadSubject { subject });
        }
        check_body(&subject, &body)?;
        if let Value::Object(m) = &mut body {
            m.entry("by").or_insert_with(|| Value::String(by.clone()));
            if let Some(token) = token {
                m.entry("via_token").or_insert_with(|| Value::from(token));
            }
        }
        let (seq, prev_hash) = match head.take() {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS.to_owned()),
        };
        let text = canonical_json(&body);
        let hash = entry_hash(seq, ts.0, kind.as_str(), &subject, &text, &prev_hash);
        head = Some((seq, hash.clone()));
        crate::notify::event::from_audit(tx, kind, &subject, &body, ts)?;
        made.push(AuditEntry {
            seq,
            ts_ms: ts.0,
            kind,
            subject,
            body: text,
            prev_hash,
            hash,
        });
        if made.len() == ENTRIES_PER_INSERT {
            insert_rows(tx, &made)?;
            made.clear();
        }
    }
    // The rest one row a statement: two statement texts serve every length.
    for e in made.chunks(1) {
        insert_rows(tx, e)?;
    }
    Ok(head)
}

/// Inserts `rows` with one statement.
fn insert_rows(tx: &(impl Sql + ?Sized), rows: &[AuditEntry]) -> Result<(), AuditError> {
    let mut sql = String::from(
        "INSERT INTO audit_log (seq, ts_ms, kind, subject, body, prev_hash, hash) VALUES ",
    );
    let kinds: Vec<&str> = rows.iter().map(|e| e.kind.as_str()).collect();
    let mut params: Vec<&dyn Arg> = Vec::with_capacity(7 * rows.len());
    for (i, (e, kind)) in rows.iter().zip(&kinds).enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let at = 7 * i;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            at + 1,
            at + 2,
            at + 3,
            at + 4,
            at + 5,
            at + 6,
            at + 7
        ));
        params.extend([
            &e.seq as &dyn Arg,
            &e.ts_ms,
            kind,
            &e.subject,
            &e.body,
            &e.prev_hash,
            &e.hash,
        ]);
    }
    tx.execute(&sql, &params)?;
    Ok(())
}

fn check_body(subject: &str, body: &Value) -> Result<(), AuditError> {
    fn personal_key(v: &Value) -> Option<&str> {
        match v {
            Value::Object(m) => m.iter().find_map(|(k, v)| {
                if PERSONAL_KEYS.contains(&k.to_lowercase().as_str()) {
                    Some(k.as_str())
                } else {
                    personal_key(v)
                }
            }),
            Value::Array(a) => a.iter().find_map(personal_key),
            _ => None,
        }
    }
    let found = match body {
        Value::Object(_) => None,
        Value::Null => Some("null"),
        Value::Bool(_) => Some("a boolean"),
        Value::Number(_) => Some("a number"),
        Value::String(_) => Some("a string"),
        Value::Array(_) => Some("an array"),
    };
    if let Some(found) = found {
        return Err(AuditError::BodyNotObject {
            subject: subject.to_owned(),
            found,
        });
    }
    match personal_key(body) {
        Some(key) => Err(AuditError::PersonalData {
            subject: subject.to_owned(),
            key: key.to_owned(),
        }),
        None => Ok(()),
    }
}

/// The latest entry's seq and hash, or `None` for an empty log. Publishing this pair lets
/// anyone detect later truncation (`audit verify --head HASH`).
pub fn head(conn: &(impl Sql + ?Sized)) -> Result<Option<(i64, String)>, AuditError> {
    Ok(conn.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Every entry in seq order. Rows that cannot be read as entries (an unknown kind, text that
/// is not UTF-8) are returned as problems instead, so a verifier sees all of them.
pub fn read_all(conn: &(impl Sql + ?Sized)) -> Result<(Vec<AuditEntry>, Vec<Problem>), AuditError> {
    // Each field read on its own, so that a damaged row (a kind that is not text, text that
    // is not UTF-8) becomes a problem naming it rather than an error that hides the rest.
    let rows = conn.query(
        "SELECT seq, ts_ms, kind, subject, body, prev_hash, hash FROM audit_log ORDER BY seq",
        args![],
        |r| {
            let seq: i64 = r.get(0)?;
            let text =
                |i: usize, name: &str| r.get::<String>(i).map_err(|e| format!("{name}: {e}"));
            let entry = (|| -> Result<AuditEntry, String> {
                Ok(AuditEntry {
                    seq,
                    ts_ms: r.get::<i64>(1).map_err(|e| format!("ts_ms: {e}"))?,
                    kind: text(2, "kind")?.parse()?,
                    subject: text(3, "subject")?,
                    body: text(4, "body")?,
                    prev_hash: text(5, "prev_hash")?,
                    hash: text(6, "hash")?,
                })
            })();
            Ok(entry.map_err(|reason| Problem::Unreadable {
                at: format!("seq {seq}"),
                reason,
            }))
        },
    )?;
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for row in rows {
        match row {
            Ok(e) => entries.push(e),
            Err(p) => problems.push(p),
        }
    }
    Ok((entries, problems))
}

/// Reads a JSON Lines export (blank lines are skipped). Lines that are not entries become
/// problems naming the line, so the rest can still be verified.
pub fn read_jsonl(input: impl BufRead) -> std::io::Result<(Vec<AuditEntry>, Vec<Problem>)> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let at = format!("line {}", i + 1);
        let line = match std::str::from_utf8(&line) {
            Ok(l) => l.trim_end_matches('\r'),
            Err(_) => {
                problems.push(Problem::Unreadable {
                    at,
                    reason: "not valid UTF-8".into(),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditEntry>(line) {
            Ok(e) => entries.push(e),
            Err(e) => problems.push(Problem::Unreadable {
                at,
                reason: e.to_string(),
            }),
        }
    }
    Ok((entries, problems))
}

/// Writes every entry as one JSON object per line, in seq order; returns how many.
pub fn export_jsonl(conn: &(impl Sql + ?Sized), mut out: impl Write) -> Result<usize, ExportError> {
    let (entries, problems) = read_all(conn)?;
    if let Some(p) = problems.first() {
        return Err(ExportError::Unreadable(p.to_string()));
    }
    for e in &entries {
        serde_json::to_writer(&mut out, e).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(entries.len())
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Writing failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// A row cannot be exported faithfully.
    #[error(
        "cannot export the audit log: {0}; run `audit verify --data DIR` to see every problem"
    )]
    Unreadable(String),
}

/// Verifies the stored log, optionally against a published head hash.
pub fn verify_store(
    conn: &(impl Sql + ?Sized),
    published_head: Option<&str>,
) -> Result<Report, AuditError> {
    let (entries, unreadable) = read_all(conn)?;
    let mut report = verify(&entries, published_head);
    report.add_unreadable(unreadable);
    Ok(report)
}

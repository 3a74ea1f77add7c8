//! Verifying a sequence of entries: every problem, not just the first (docs/audit.md,
//! "Verifying").
//!
//! A hash names the entry whose content changed but cannot say which of its fields: an
//! entry carries one hash over all of them. Where a field is wrong on its own (a body that is
//! not canonical JSON, a malformed hash) the problem names that field too.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::hash::{canonical_json, entry_hash, is_hash, GENESIS};
use super::AuditEntry;

/// One thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A row or line could not be read as an entry at all.
    Unreadable {
        /// `seq N` or `line N`.
        at: String,
        /// Why.
        reason: String,
    },
    /// The stored hash is not the hash of the entry's content: ts_ms, kind, subject, body or
    /// prev_hash was edited (or the hash itself).
    HashMismatch {
        /// The entry.
        seq: i64,
        /// The hash it carries.
        stored: String,
        /// The hash of its content.
        computed: String,
    },
    /// A field is malformed on its own.
    BadField {
        /// The entry.
        seq: i64,
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// prev_hash is not the hash of the entry before: that entry was edited, replaced or
    /// removed, or this one was forged.
    BrokenLink {
        /// The entry.
        seq: i64,
        /// Its prev_hash.
        prev_hash: String,
        /// The hash of entry seq − 1 (or the genesis hash for seq 1).
        expected: String,
    },
    /// Entries with these seqs are missing: deleted.
    Missing {
        /// First missing seq.
        from: i64,
        /// Last missing seq.
        to: i64,
    },
    /// Two entries share a seq: one was inserted.
    Duplicate {
        /// The seq.
        seq: i64,
    },
    /// An entry comes after one with a higher or equal seq: entries were reordered.
    OutOfOrder {
        /// The entry.
        seq: i64,
        /// The seq of the entry just before it.
        after: i64,
    },
    /// The published head hash is not the hash of any entry: the log was cut short or
    /// rewritten after the head was published.
    HeadNotFound {
        /// The published head.
        head: String,
    },
}

impl Problem {
    /// The first entry the problem is at, where it names one (`None` for the published head
    /// and for lines of an export).
    pub fn seq(&self) -> Option<i64> {
        match self {
            Problem::Unreadable { at, .. } => at.strip_prefix("seq ").and_then(|n| n.parse().ok()),
            Problem::HashMismatch { seq, .. }
            | Problem::BadField { seq, .. }
            | Problem::BrokenLink { seq, .. }
            | Problem::Duplicate { seq }
            | Problem::OutOfOrder { seq, .. } => Some(*seq),
            Problem::Missing { from, .. } => Some(*from),
            Problem::HeadNotFound { .. } => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable { at, reason } => write!(f, "{at}: unreadable: {reason}"),
            Problem::HashMismatch { seq, stored, computed } => write!(
                f,
                "seq {seq}: hash: stored {stored} but the content hashes to {computed}: ts_ms, kind, subject, body or prev_hash was edited"
            ),
            Problem::BadField { seq, field, reason } => write!(f, "seq {seq}: {field}: {reason}"),
            Problem::BrokenLink { seq, prev_hash, expected } => write!(
                f,
                "seq {seq}: prev_hash: {prev_hash} is not the hash of the entry before ({expected}): that entry was edited or replaced, or this one was inserted"
            ),
            Problem::Missing { from, to } if from == to => {
                write!(f, "seq {from}: missing: the entry was deleted")
            }
            Problem::Missing { from, to } => {
                write!(f, "seq {from}..={to}: missing: the entries were deleted")
            }
            Problem::Duplicate { seq } => {
                write!(f, "seq {seq}: duplicate: more than one entry has this seq")
            }
            Problem::OutOfOrder { seq, after } => write!(
                f,
                "seq {seq}: out of order: it comes after seq {after}; entries were reordered"
            ),
            Problem::HeadNotFound { head } => write!(
                f,
                "head: the published head {head} is not the hash of any entry: the log was truncated or rewritten after it was published"
            ),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Entries examined (readable ones).
    pub entries: usize,
    /// The last entry by seq and its hash, if any.
    pub head: Option<(i64, String)>,
    /// The seq of the entry whose hash is the published head (0 for the genesis hash), when
    /// a head was given and found.
    pub published_head_seq: Option<i64>,
    /// Every problem found; empty when the log verifies.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether the log verifies.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The head hash to print and publish: the last entry's, or the genesis hash.
    pub fn head_hash(&self) -> &str {
        self.head.as_ref().map_or(GENESIS, |(_, h)| h.as_str())
    }

    /// The first entry from which the chain cannot be trusted: the lowest seq any problem is
    /// at.
    pub fn first_broken_seq(&self) -> Option<i64> {
        self.problems.iter().filter_map(Problem::seq).min()
    }

    /// Puts rows that could not be read in front of the other problems.
    pub fn add_unreadable(&mut self, unreadable: Vec<Problem>) {
        if !unreadable.is_empty() {
            let rest = std::mem::replace(&mut self.problems, unreadable);
            self.problems.extend(rest);
        }
    }
}

/// Verifies `entries` in the order given (the order of the export, or of seq in the store),
/// and, with `published_head`, that the log still contains the entry with that hash.
///
/// Checks, per entry: the hash recomputes; the body is a canonical JSON object; the subject
/// is valid; hashes are well formed; prev_hash is the hash of the entry with seq − 1 (or the
/// genesis hash for seq 1). Over the whole: seqs increase in the order given, none repeats,
/// none is missing from 1 to the highest. Deleting the last entries leaves a log that is
/// valid on its own: only a published head reveals it.
pub fn verify(entries: &[AuditEntry], published_head: Option<&str>) -> Report {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut dup_reported = HashSet::new();
    for e in entries {
        if !seen.insert(e.seq) && dup_reported.insert(e.seq) {
            problems.push(Problem::Duplicate { seq: e.seq });
        }
    }
    // First occurrence wins for the links, as a reader following the file would see it.
    let mut first: HashMap<i64, &str> = HashMap::new();
    for e in entries {
        first.entry(e.seq).or_insert(e.hash.as_str());
    }
    let mut previous: Option<i64> = None;
    for e in entries {
        if let Some(after) = previous {
            if e.seq <= after && !(e.seq == after && dup_reported.contains(&e.seq)) {
                problems.push(Problem::OutOfOrder { seq: e.seq, after });
            }
        }
        previous = Some(e.seq);
        check_entry(e, &first, &mut problems);
    }
    let seqs: BTreeSet<i64> = entries.iter().map(|e| e.seq).collect();
    let mut expected = 1;
    for &s in seqs.range(1..) {
        if s > expected {
            problems.push(Problem::Missing {
                from: expected,
                to: s - 1,
            });
        }
        expected = s + 1;
    }
    let head = entries
        .iter()
        .max_by_key(|e| e.seq)
        .map(|e| (e.seq, e.hash.clone()));
    let mut published_head_seq = None;
    if let Some(h) = published_head {
        let h = h.trim().to_ascii_lowercase();
        if h == GENESIS {
            published_head_seq = Some(0);
        } else if let Some(e) = entries.iter().find(|e| e.hash == h) {
            published_head_seq = Some(e.seq);
        } else {
            problems.push(Problem::HeadNotFound { head: h });
        }
    }
    Report {
        entries: entries.len(),
        head,
        published_head_seq,
        problems,
    }
}

fn check_entry(e: &AuditEntry, first: &HashMap<i64, &str>, problems: &mut Vec<Problem>) {
    let seq = e.seq;
    if seq < 1 {
        problems.push(Problem::BadField {
            seq,
            field: "seq",
            reason: "seqs start at 1".into(),
        });
    }
    for (field, value) in [("hash", &e.hash), ("prev_hash", &e.prev_hash)] {
        if !is_hash(value) {
            problems.push(Problem::BadField {
                seq,
                field,
                reason: format!("{value:?} is not 64 lowercase hex digits"),
            });
        }
    }
    if e.subject.is_empty() || e.subject.chars().any(char::is_control) {
        problems.push(Problem::BadField {
            seq,
            field: "subject",
            reason: "empty or holds a control character".into(),
        });
    }
    match serde_json::from_str::<serde_json::Value>(&e.body) {
        Ok(v) if !v.is_object() => problems.push(Problem::BadField {
            seq,
            field: "body",
            reason: "not a JSON object".into(),
        }),
        Ok(v) if canonical_json(&v) != e.body => problems.push(Problem::BadField {
            seq,
            field: "body",
            reason: "not in canonical form (sorted keys, no whitespace)".into(),
        }),
        Ok(_) => {}
        Err(err) => problems.push(Problem::BadField {
            seq,
            field: "body",
            reason: format!("not JSON: {err}"),
        }),
    }
    let computed = entry_hash(
        seq,
        e.ts_ms,
        e.kind.as_str(),
        &e.subject,
        &e.body,
        &e.prev_hash,
    );
    if computed != e.hash {
        problems.push(Problem::HashMismatch {
            seq,
            stored: e.hash.clone(),
            computed,
        });
    }
    let expected = if seq == 1 {
        Some(GENESIS)
    } else {
        first.get(&(seq - 1)).copied()
    };
    // With the entry before missing, the gap is the problem; there is nothing to link to.
    if let Some(expected) = expected {
        if e.prev_hash != expected {
            problems.push(Problem::BrokenLink {
                seq,
                prev_hash: e.prev_hash.clone(),
                expected: expected.to_owned(),
            });
        }
    }
}

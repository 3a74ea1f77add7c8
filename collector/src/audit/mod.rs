//! The audit log: append-only and hash-chained, so that anyone holding an export can check
//! that no entry was edited, removed or reordered (and, against a published head, that none
//! was cut off the end). `docs/audit.md` specifies the encoding precisely enough to
//! re-implement [`verify`] elsewhere; `docs/audit_verify.py` is such a re-implementation.
//!
//! - [`hash`]: the canonical body text and the hash of an entry.
//! - [`store`]: [`append`] (and [`append_all`] for many) inside the caller's transaction,
//!   [`head`], reading and exporting.
//! - [`verify`](mod@verify): every problem of a sequence of entries, in one [`Report`].
//!
//! - [`actor`](mod@actor): who is acting; [`append`] writes it into every body as `"by"`.
//!
//! **No personal data in the log.** The log is meant to be handed out, so subjects and bodies
//! carry ids (task ids, draw ids, inspector staff ids, credit codes, rule keys), never names,
//! certificate numbers, contact details, comments or anything about patients or players.
//! [`append`] refuses bodies with keys that usually hold such data ([`PERSONAL_KEYS`]); that is
//! a guard rail, not a proof, and callers remain responsible for what they pass.

pub mod actor;
pub mod hash;
pub mod store;
pub mod verify;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use actor::{acting, acting_as, current_actor, current_token, Actor};
pub use hash::{canonical_json, entry_hash, GENESIS};
pub use store::{
    append, append_all, export_jsonl, head, read_all, read_jsonl, verify_store, NewEntry,
};
pub use verify::{verify, Problem, Report};

/// What an entry records. Stored and exported as its snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A draw's seed commitment was published.
    DrawCommitted,
    /// A draw's seed was revealed and the draw made.
    DrawRevealed,
    /// An inspector recused from an entity and a replacement was drawn.
    Recusal,
    /// Inspectors were assigned to a task.
    Assignment,
    /// A task was opened (anomaly or referral).
    TaskOpened,
    /// A supervisor acknowledged a task.
    TaskAcknowledged,
    /// A remote check produced a verdict.
    Verdict,
    /// An inspector overrode a verdict.
    Override,
    /// A task's result category was recorded.
    ResultRecorded,
    /// A task's result was published.
    Publication,
    /// A rule pack was activated.
    RulePackActivated,
    /// A user was created.
    UserCreated,
    /// A user's password was set, or the user was disabled or enabled.
    UserChanged,
    /// An API token was issued.
    TokenIssued,
    /// An API token was revoked.
    TokenRevoked,
    /// A user logged in to the console.
    SessionOpened,
    /// A user logged out.
    SessionClosed,
    /// The item list or an entity or inspector library was imported.
    RegistryChanged,
    /// An annual plan was saved.
    PlanSaved,
    /// An agent's first credential was issued.
    AgentCredentialIssued,
    /// An agent's credential was replaced by a new generation.
    AgentCredentialRotated,
    /// An agent's credential was revoked.
    AgentCredentialRevoked,
}

impl EntryKind {
    /// Every kind, in declaration order.
    pub const ALL: [EntryKind; 22] = [
        EntryKind::DrawCommitted,
        EntryKind::DrawRevealed,
        EntryKind::Recusal,
        EntryKind::Assignment,
        EntryKind::TaskOpened,
        EntryKind::TaskAcknowledged,
        EntryKind::Verdict,
        EntryKind::Override,
        EntryKind::ResultRecorded,
        EntryKind::Publication,
        EntryKind::RulePackActivated,
        EntryKind::UserCreated,
        EntryKind::UserChanged,
        EntryKind::TokenIssued,
        EntryKind::TokenRevoked,
        EntryKind::SessionOpened,
        EntryKind::SessionClosed,
        EntryKind::RegistryChanged,
        EntryKind::PlanSaved,
        EntryKind::AgentCredentialIssued,
        EntryKind::AgentCredentialRotated,
        EntryKind::AgentCredentialRevoked,
    ];

    /// The stable code, as stored, exported and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::DrawCommitted => "draw_committed",
            EntryKind::DrawRevealed => "draw_revealed",
            EntryKind::Recusal => "recusal",
            EntryKind::Assignment => "assignment",
            EntryKind::TaskOpened => "task_opened",
            EntryKind::TaskAcknowledged => "task_acknowledged",
            EntryKind::Verdict => "verdict",
            EntryKind::Override => "override",
            EntryKind::ResultRecorded => "result_recorded",
            EntryKind::Publication => "publication",
            EntryKind::RulePackActivated => "rule_pack_activated",
            EntryKind::UserCreated => "user_created",
            EntryKind::UserChanged => "user_changed",
            EntryKind::TokenIssued => "token_issued",
            EntryKind::TokenRevoked => "token_revoked",
            EntryKind::SessionOpened => "session_opened",
            EntryKind::SessionClosed => "session_closed",
            EntryKind::RegistryChanged => "registry_changed",
            EntryKind::PlanSaved => "plan_saved",
            EntryKind::AgentCredentialIssued => "agent_credential_issued",
            EntryKind::AgentCredentialRotated => "agent_credential_rotated",
            EntryKind::AgentCredentialRevoked => "agent_credential_revoked",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<EntryKind, String> {
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let codes: Vec<&str> = EntryKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown entry kind {s:?}; known: {}", codes.join(", "))
            })
    }
}

/// One entry of the log, with every column. This is also one line of the JSON Lines export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the log: 1, 2, 3, … without gaps.
    pub seq: i64,
    /// When, Unix milliseconds (as the caller said; not required to increase).
    pub ts_ms: i64,
    /// What the entry records.
    pub kind: EntryKind,
    /// What it is about, as `type:id` (for example `task:42`, `draw:2026-health-pool-b1`).
    pub subject: String,
    /// The body: canonical JSON text ([`canonical_json`]), exactly the bytes that were hashed.
    pub body: String,
    /// The previous entry's hash ([`GENESIS`] for seq 1), lowercase hex.
    pub prev_hash: String,
    /// SHA-256 of this entry ([`entry_hash`]), lowercase hex.
    pub hash: String,
}

/// Keys a body may not have at any depth: they usually hold personal data.
pub const PERSONAL_KEYS: &[&str] = &[
    "name",
    "inspector_name",
    "certificate",
    "contact",
    "phone",
    "address",
    "id_card",
    "comment",
    "patient",
    "player",
];

/// Why the log could not be appended to or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite failed.
    #[error("audit log: database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store failed (either engine).
    #[error("audit log: database: {0}")]
    Store(#[from] crate::store::db::DbError),
    /// The subject is empty or holds a control character.
    #[error("audit subject {subject:?} is invalid: give a non-empty `type:id` without control characters")]
    BadSubject {
        /// The subject given.
        subject: String,
    },
    /// The body has a key that usually holds personal data.
    #[error("audit body for {subject:?} has the key {key:?}, which usually holds personal data; the audit log is public, so pass ids instead (see audit::PERSONAL_KEYS)")]
    PersonalData {
        /// The subject given.
        subject: String,
        /// The offending key.
        key: String,
    },
    /// The body is not a JSON object.
    #[error("audit body for {subject:?} must be a JSON object, not {found}")]
    BodyNotObject {
        /// The subject given.
        subject: String,
        /// What it was.
        found: &'static str,
    },
    /// The latest stored entry does not look like one of ours (a hand-edited database).
    #[error("the audit log's last entry (seq {seq}) is corrupt: {reason}; run `spotcheck-collector audit verify` to see every problem")]
    Corrupt {
        /// Its seq.
        seq: i64,
        /// Why.
        reason: String,
    },
}

//! Inspection tasks and their lifecycle.
//!
//! Four kinds: drawn (`random`), merged (`joint`), opened by a rule (`anomaly`) and entered by
//! hand (`referral`). Their lifecycles:
//!
//! - anomaly: `open` → `acknowledged` → `resolved` (with a result category and a comment) →
//!   `published`. A note is added when the condition clears; a task stays live until a
//!   supervisor resolves it, so a condition that returns does not open a second one.
//! - random, joint, referral: `drawn` → `checked` (a remote verdict is recorded) → `resolved`
//!   (an assigned inspector accepted or overrode the verdict) → `published`.
//!
//! - [`store`]: reading and changing tasks in SQLite, each change with its audit entry.
//! - [`anomaly`]: the streaming rule engine's transitions turned into tasks, on ingest's commit
//!   thread and in the same transaction as the readings.

pub mod anomaly;
pub mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::rules::Severity;

/// A task's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The spelling in the database and the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(format!(
                        "{s:?} is not a {}; use one of: {}",
                        $what,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(
    /// How a task came to be.
    TaskKind, "task kind" {
        /// Drawn at random (双随机).
        Random = "random",
        /// Several departments' tasks merged into one visit.
        Joint = "joint",
        /// Opened by a rule on the readings.
        Anomaly = "anomaly",
        /// Entered by hand (a complaint, a referral).
        Referral = "referral",
    }
);

text_enum!(
    /// Where a task is in its lifecycle.
    TaskStatus, "task status" {
        /// Drawn, not yet checked.
        Drawn = "drawn",
        /// Opened by a rule, nobody has looked at it yet.
        Open = "open",
        /// A supervisor has seen it.
        Acknowledged = "acknowledged",
        /// A remote verdict is recorded and awaits an assigned inspector.
        Checked = "checked",
        /// A result is recorded; it awaits publication.
        Resolved = "resolved",
        /// The result is on the public feed.
        Published = "published",
    }
);

/// One task as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Task {
    /// Row id.
    pub id: TaskId,
    /// Kind.
    pub kind: TaskKind,
    /// Status.
    pub status: TaskStatus,
    /// The entity (unified social credit code, or the entity id agents report for).
    pub entity: String,
    /// The inspecting department.
    pub department: String,
    /// The item (for anomaly tasks: the rule pack's item, or the rule key).
    pub item: String,
    /// The draw it came from.
    pub draw: Option<String>,
    /// The joint task it belongs to.
    pub joint: Option<i64>,
    /// Inspection window, first day.
    pub window_start: String,
    /// Inspection window, last day.
    pub window_end: String,
    /// Anomaly: the rule key (`pack/rule`).
    pub rule: Option<String>,
    /// Anomaly: severity.
    pub severity: Option<Severity>,
    /// When it was opened, Unix ms.
    pub opened_ms: Option<i64>,
    /// Why it was opened.
    pub detail: Option<String>,
    /// Anomaly: when the condition cleared (it may return).
    pub cleared_ms: Option<i64>,
    /// Last change, Unix ms.
    pub updated_ms: Option<i64>,
    /// The result category code (see `results::Category`).
    pub result: Option<String>,
    /// The resolver's comment (never published: it may name people).
    pub comment: Option<String>,
    /// When the result was recorded.
    pub resolved_ms: Option<i64>,
    /// When it was published.
    pub published_ms: Option<i64>,
    /// Assigned inspectors' ids.
    pub inspectors: Vec<String>,
}

/// A line of a task's history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Note {
    /// When, Unix ms.
    pub ts_ms: i64,
    /// What kind of note (`cleared`, `returned`, `acknowledged`, `checked`, …).
    pub kind: String,
    /// The text.
    pub text: String,
}

/// What `list` selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this kind.
    pub kind: Option<TaskKind>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this entity.
    pub entity: Option<String>,
    /// Only tasks assigned to this inspector.
    pub inspector: Option<String>,
    /// Only this department's tasks.
    pub department: Option<String>,
    /// Only tasks with an id below this (paging, newest first).
    pub before: Option<TaskId>,
    /// At most this many.
    pub limit: u32,
}

/// The calendar day of `t` in China time (UTC+8), `YYYY-MM-DD`: the day a task opened by a
/// rule or entered by hand is filed under.
pub fn china_day(t: spotcheck_protocol::UnixMillis) -> String {
    crate::rules::ChinaDay::of(t).to_string()
}

/// Why a task operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such task.
    #[error("task {0} does not exist")]
    NotFound(TaskId),
    /// The transition is not allowed from the task's status.
    #[error("task {id} is {status}; {action} needs it to be {needs}")]
    WrongStatus {
        /// The task.
        id: TaskId,
        /// Its status.
        status: TaskStatus,
        /// What was asked.
        action: &'static str,
        /// Which statuses allow it.
        needs: &'static str,
    },
    /// The caller may not do this to this task.
    #[error("inspector {inspector} is not assigned to task {id}; only its assigned inspectors may decide on it")]
    NotAssigned {
        /// The task.
        id: TaskId,
        /// The inspector.
        inspector: String,
    },
    /// A field of the request is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The database holds something this build cannot read.
    #[error("task {id}: column {column} holds {value:?}, which this build does not know")]
    Corrupt {
        /// The task.
        id: i64,
        /// The column.
        column: &'static str,
        /// The value.
        value: String,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

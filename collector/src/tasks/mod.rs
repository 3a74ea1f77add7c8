//! Inspection tasks and their lifecycle. This module owns the `tasks`, `task_notes` and
//! `task_inspectors` tables: no other module runs SQL against them (a test below walks the
//! sources), and draws, plans, joint inspections, checks, results and the API call
//! [`store`].
//!
//! Four kinds, each carrying what it has ([`Kind`]): drawn (`random`: the draw and batch),
//! drawn for a joint plan (`joint`: also the plan and its departments), opened by a rule
//! (`anomaly`: rule, severity, cleared) and entered by hand (`referral`: who and why). Status
//! changes are [`Transition`]s that [`Task::next`] allows or refuses. Their lifecycles:
//!
//! - anomaly: `open` → `acknowledged` → `resolved` (with a result category and a comment) →
//!   `published`. A note is added when the condition clears; a task stays live until a
//!   supervisor resolves it, so a condition that returns does not open a second one.
//! - random, joint, referral: `drawn` → `checked` (a remote verdict is recorded) → `resolved`
//!   (an assigned inspector accepted or overrode the verdict) → `published`.
//!
//! - [`store`]: reading and changing tasks in the store (SQLite or PostgreSQL), each change
//!   with its audit entry.
//! - [`anomaly`]: the streaming rule engine's transitions turned into tasks, on ingest's commit
//!   thread and in the same transaction as the readings.

pub mod anomaly;
pub mod changes;
pub mod figures;
pub mod queue;
pub mod store;

pub use queue::Scope;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use spotcheck_protocol::EntityId;

use crate::plan::PlanDate;
use crate::registry::model::{Department, DrawId, InspectorId, ItemId};
pub use crate::rules::{RuleKey, Severity};

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

/// What a task has because of its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Drawn at random (双随机): the draw and the plan batch it belongs to.
    Random {
        /// The draw.
        draw: DrawId,
        /// The plan batch's label (None: a draw of no plan batch).
        batch: Option<String>,
    },
    /// Drawn for a joint plan (部门联合抽查): one visit, each department its own task, its own
    /// inspectors and its own result.
    Joint {
        /// The draw that staffed this department's task (the initiator's, or the partner's
        /// own inspector draw).
        draw: DrawId,
        /// The plan batch's label.
        batch: Option<String>,
        /// The joint plan.
        plan: DrawId,
        /// The departments taking part, initiator first.
        departments: Vec<Department>,
    },
    /// Opened by a rule on the readings.
    Anomaly {
        /// The rule (`pack/rule`).
        rule: RuleKey,
        /// How serious.
        severity: Severity,
        /// When the condition cleared (it may return).
        cleared_ms: Option<i64>,
    },
    /// Entered by hand (a complaint, a tip-off).
    Referral {
        /// Who entered it (`user:ID`, `cli`, `demo`).
        entered_by: String,
        /// What was reported.
        reason: String,
    },
}

impl Kind {
    /// The kind's tag.
    pub fn tag(&self) -> TaskKind {
        match self {
            Kind::Random { .. } => TaskKind::Random,
            Kind::Joint { .. } => TaskKind::Joint,
            Kind::Anomaly { .. } => TaskKind::Anomaly,
            Kind::Referral { .. } => TaskKind::Referral,
        }
    }

    /// The draw a random or joint task came from.
    pub fn draw(&self) -> Option<&DrawId> {
        match self {
            Kind::Random { draw, .. } | Kind::Joint { draw, .. } => Some(draw),
            _ => None,
        }
    }
}

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Row id.
    pub id: TaskId,
    /// What kind, with what that kind has.
    pub kind: Kind,
    /// Status.
    pub status: TaskStatus,
    /// The entity (unified social credit code, or the entity id agents report for).
    pub entity: EntityId,
    /// The inspecting department: the department of the item in the item list.
    pub department: Department,
    /// The item (`unassigned` for an anomaly whose rule pack no item names).
    pub item: ItemId,
    /// Inspection window, first day.
    pub window_start: PlanDate,
    /// Inspection window, last day.
    pub window_end: PlanDate,
    /// When it was opened, Unix ms.
    pub opened_ms: Option<i64>,
    /// Anomaly: the breach that opened it.
    pub detail: Option<String>,
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
    /// Assigned inspectors.
    pub inspectors: Vec<InspectorId>,
}

/// A step of a task's lifecycle. [`Task::next`] says where it leads or why it is refused;
/// the store applies it only from the status it was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A supervisor has seen an open anomaly task.
    Acknowledge,
    /// A remote verdict is recorded (random, joint, referral tasks).
    Check,
    /// An assigned inspector decided on the verdict: the task has its result.
    Decide,
    /// A supervisor records the result of an anomaly or referral task.
    Resolve,
    /// The result goes on the public feed.
    Publish,
}

impl Transition {
    fn action(self) -> &'static str {
        match self {
            Transition::Acknowledge => "acknowledging",
            Transition::Check => "a remote check",
            Transition::Decide => "a decision",
            Transition::Resolve => "resolving",
            Transition::Publish => "publishing",
        }
    }
}

impl Task {
    /// An anomaly task's rule.
    pub fn rule(&self) -> Option<&RuleKey> {
        match &self.kind {
            Kind::Anomaly { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// When an anomaly task's condition cleared.
    pub fn cleared_ms(&self) -> Option<i64> {
        match &self.kind {
            Kind::Anomaly { cleared_ms, .. } => *cleared_ms,
            _ => None,
        }
    }

    /// The kind's tag.
    pub fn kind(&self) -> TaskKind {
        self.kind.tag()
    }

    /// Whether a draw made it (random or joint): only those count toward the joint quota.
    pub fn drawn(&self) -> bool {
        self.kind.draw().is_some()
    }

    /// The status `t` leads to from this task's status, or why it is refused.
    pub fn next(&self, t: Transition) -> Result<TaskStatus, TaskError> {
        use TaskKind as K;
        use TaskStatus as S;
        let kind = self.kind();
        let wrong = |needs: &'static str| TaskError::WrongStatus {
            id: self.id,
            status: self.status,
            action: t.action(),
            needs,
        };
        match t {
            Transition::Acknowledge => match (kind, self.status) {
                (K::Anomaly, S::Open) => Ok(S::Acknowledged),
                (K::Anomaly, _) => Err(wrong("open")),
                _ => Err(TaskError::Invalid(format!(
                    "task {} is a {kind} task; only anomaly tasks are acknowledged",
                    self.id
                ))),
            },
            Transition::Check => match (kind, self.status) {
                (K::Anomaly, _) => Err(TaskError::Invalid(format!(
                    "task {} is an anomaly task: its evidence is the breach that opened it; remote checks are for random, joint and referral tasks",
                    self.id
                ))),
                (_, S::Drawn | S::Checked) => Ok(S::Checked),
                _ => Err(wrong("drawn or checked")),
            },
            Transition::Decide => match self.status {
                S::Checked => Ok(S::Resolved),
                _ => Err(wrong("checked")),
            },
            Transition::Resolve => match (kind, self.status) {
                (K::Random | K::Joint, _) => Err(TaskError::Invalid(format!(
                    "task {} is a {kind} task: its result comes from an assigned inspector's decision on its remote check (POST /api/v1/checks/ID/decision)",
                    self.id
                ))),
                (_, S::Open | S::Acknowledged | S::Drawn) => Ok(S::Resolved),
                _ => Err(wrong("open, acknowledged or drawn")),
            },
            Transition::Publish => match self.status {
                S::Resolved => Ok(S::Published),
                _ => Err(wrong("resolved")),
            },
        }
    }
}

/// The flat JSON shape of a task (the API's since issue 5; kind-specific fields are null for
/// the other kinds).
#[derive(Serialize)]
struct TaskJson<'a> {
    id: TaskId,
    kind: TaskKind,
    status: TaskStatus,
    entity: &'a str,
    department: &'a str,
    item: &'a str,
    draw: Option<&'a str>,
    batch: Option<&'a str>,
    joint: Option<&'a str>,
    departments: Option<&'a [Department]>,
    window_start: &'a str,
    window_end: &'a str,
    rule: Option<&'a str>,
    severity: Option<Severity>,
    opened_ms: Option<i64>,
    detail: Option<&'a str>,
    entered_by: Option<&'a str>,
    cleared_ms: Option<i64>,
    updated_ms: Option<i64>,
    result: Option<&'a str>,
    comment: Option<&'a str>,
    resolved_ms: Option<i64>,
    published_ms: Option<i64>,
    inspectors: &'a [InspectorId],
}

impl Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (mut draw, mut batch, mut joint, mut departments) = (None, None, None, None);
        let (mut rule, mut severity, mut cleared_ms, mut entered_by) = (None, None, None, None);
        let mut detail = self.detail.as_deref();
        match &self.kind {
            Kind::Random { draw: d, batch: b } => {
                draw = Some(d.as_str());
                batch = b.as_deref();
            }
            Kind::Joint {
                draw: d,
                batch: b,
                plan,
                departments: ds,
            } => {
                draw = Some(d.as_str());
                batch = b.as_deref();
                joint = Some(plan.as_str());
                departments = Some(ds.as_slice());
            }
            Kind::Anomaly {
                rule: r,
                severity: v,
                cleared_ms: c,
            } => {
                rule = Some(r.as_str());
                severity = Some(*v);
                cleared_ms = *c;
            }
            Kind::Referral {
                entered_by: by,
                reason,
            } => {
                entered_by = Some(by.as_str());
                detail = Some(reason.as_str());
            }
        }
        TaskJson {
            id: self.id,
            kind: self.kind(),
            status: self.status,
            entity: self.entity.as_str(),
            department: self.department.as_str(),
            item: self.item.as_str(),
            draw,
            batch,
            joint,
            departments,
            window_start: self.window_start.as_str(),
            window_end: self.window_end.as_str(),
            rule,
            severity,
            opened_ms: self.opened_ms,
            detail,
            entered_by,
            cleared_ms,
            updated_ms: self.updated_ms,
            result: self.result.as_deref(),
            comment: self.comment.as_deref(),
            resolved_ms: self.resolved_ms,
            published_ms: self.published_ms,
            inspectors: &self.inspectors,
        }
        .serialize(s)
    }
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
    /// Only tasks of this draw.
    pub draw: Option<String>,
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
    /// The store failed (either engine).
    #[error(transparent)]
    Db(#[from] crate::store::db::DbError),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements against the task tables found in `text`: a table name after `FROM`,
    /// `INTO`, `UPDATE` (or `UPDATE OR …`) or `JOIN`, across line breaks.
    fn task_sql(text: &str) -> Vec<String> {
        let words: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let tables = ["tasks", "task_inspectors", "task_notes"];
        let mut found = Vec::new();
        for (i, w) in words.iter().enumerate() {
            if !matches!(w.as_str(), "from" | "into" | "update" | "join") {
                continue;
            }
            let mut next = words.get(i + 1);
            if w == "update" && next.is_some_and(|n| n == "or") {
                next = words.get(i + 3);
            }
            if let Some(t) = next.filter(|t| tables.contains(&t.as_str())) {
                found.push(format!("{w} {t}"));
            }
        }
        found
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_pattern_finds_statements_against_the_task_tables() {
        assert_eq!(
            task_sql("SELECT id FROM tasks t\n JOIN task_inspectors ti ON 1"),
            vec!["from tasks", "join task_inspectors"]
        );
        assert_eq!(
            task_sql("\"UPDATE OR IGNORE task_inspectors SET\""),
            vec!["update task_inspectors"]
        );
        assert_eq!(
            task_sql("INSERT INTO\n    tasks (kind)"),
            vec!["into tasks"]
        );
        assert!(task_sql("use crate::tasks::store; // tasks from a draw").is_empty());
    }

    #[test]
    fn no_module_outside_tasks_runs_sql_against_the_task_tables() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 50, "found the sources: {}", files.len());
        let mut offenders = Vec::new();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            if rel.starts_with("tasks") || rel == std::path::Path::new("store/schema.rs") {
                continue;
            }
            let found = task_sql(&std::fs::read_to_string(&f).unwrap());
            if !found.is_empty() {
                offenders.push(format!("{}: {}", rel.display(), found.join(", ")));
            }
        }
        assert!(
            offenders.is_empty(),
            "SQL against the task tables outside collector/src/tasks/ (call tasks::store instead):\n{}",
            offenders.join("\n")
        );
    }

    fn task(kind: Kind, status: TaskStatus) -> Task {
        Task {
            id: TaskId(1),
            kind,
            status,
            entity: EntityId::new("91440300MA5FXXXX0X").unwrap(),
            department: Department::new("health").unwrap(),
            item: ItemId::new("pool-water-quality").unwrap(),
            window_start: PlanDate::new("2026-03-01").unwrap(),
            window_end: PlanDate::new("2026-03-31").unwrap(),
            opened_ms: None,
            detail: None,
            updated_ms: None,
            result: None,
            comment: None,
            resolved_ms: None,
            published_ms: None,
            inspectors: vec![],
        }
    }

    #[test]
    fn status_transitions_refuse_illegal_moves() {
        let random = Kind::Random {
            draw: DrawId::new("2026-health-pool-b1").unwrap(),
            batch: Some("b1".into()),
        };
        let anomaly = Kind::Anomaly {
            rule: RuleKey::parse("pool/free_chlorine").unwrap(),
            severity: Severity::High,
            cleared_ms: None,
        };
        use TaskStatus as S;
        use Transition as T;
        let drawn = task(random.clone(), S::Drawn);
        assert_eq!(drawn.next(T::Check).unwrap(), S::Checked);
        assert!(matches!(
            drawn.next(T::Decide),
            Err(TaskError::WrongStatus { .. })
        ));
        assert!(matches!(drawn.next(T::Resolve), Err(TaskError::Invalid(_))));
        assert!(matches!(
            drawn.next(T::Publish),
            Err(TaskError::WrongStatus { .. })
        ));
        assert!(task(random, S::Published).next(T::Check).is_err());
        let open = task(anomaly.clone(), S::Open);
        assert_eq!(open.next(T::Acknowledge).unwrap(), S::Acknowledged);
        assert_eq!(open.next(T::Resolve).unwrap(), S::Resolved);
        assert!(matches!(open.next(T::Check), Err(TaskError::Invalid(_))));
        assert!(task(anomaly.clone(), S::Acknowledged)
            .next(T::Acknowledge)
            .is_err());
        assert_eq!(
            task(anomaly, S::Resolved).next(T::Publish).unwrap(),
            S::Published
        );
    }

    #[test]
    fn a_task_keeps_the_flat_json_shape_with_its_kinds_fields() {
        let t = task(
            Kind::Referral {
                entered_by: "user:1".into(),
                reason: "complaint".into(),
            },
            TaskStatus::Drawn,
        );
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["kind"], "referral");
        assert_eq!(v["detail"], "complaint");
        assert_eq!(v["entered_by"], "user:1");
        assert!(v["rule"].is_null() && v["draw"].is_null());
        assert_eq!(v["window_start"], "2026-03-01");
        assert_eq!(v["inspectors"], serde_json::json!([]));
    }
}

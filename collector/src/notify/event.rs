//! What happened: the events worth telling someone, and how they enter the outbox.
//!
//! Events are written into `notify_outbox` inside the transaction that caused them (an
//! anomaly task opened with its readings, a draw with its audit entry), so a crash keeps both
//! or neither. Time-driven events (deadlines, silence, escalation) are written by the delivery
//! worker's scan with a dedupe key, so a second scan, or one after a restart, adds nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use spotcheck_protocol::UnixMillis;

use crate::audit::EntryKind;
use crate::store::db::{args, DbError, Sql};

/// The kinds of event, as routes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An anomaly task opened.
    AnomalyOpened,
    /// An anomaly task is still unacknowledged after `escalate_after_min`.
    AnomalyEscalated,
    /// The condition of a live anomaly task cleared.
    AnomalyCleared,
    /// The condition of a live anomaly task came back.
    AnomalyReturned,
    /// An anomaly task is unresolved after `resolve_within_h`.
    AnomalyOverdue,
    /// A draw's commitment was published.
    DrawCommitted,
    /// A draw was revealed and its tasks created.
    DrawRevealed,
    /// A result's publication deadline is near.
    PublicationDueSoon,
    /// A result's publication deadline has passed.
    PublicationOverdue,
    /// An agent has sent nothing for `agent_silent_min`.
    AgentSilent,
    /// A scheduled report.
    Report,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 11] = [
        EventKind::AnomalyOpened,
        EventKind::AnomalyEscalated,
        EventKind::AnomalyCleared,
        EventKind::AnomalyReturned,
        EventKind::AnomalyOverdue,
        EventKind::DrawCommitted,
        EventKind::DrawRevealed,
        EventKind::PublicationDueSoon,
        EventKind::PublicationOverdue,
        EventKind::AgentSilent,
        EventKind::Report,
    ];

    /// The spelling in the store, the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AnomalyOpened => "anomaly_opened",
            EventKind::AnomalyEscalated => "anomaly_escalated",
            EventKind::AnomalyCleared => "anomaly_cleared",
            EventKind::AnomalyReturned => "anomaly_returned",
            EventKind::AnomalyOverdue => "anomaly_overdue",
            EventKind::DrawCommitted => "draw_committed",
            EventKind::DrawRevealed => "draw_revealed",
            EventKind::PublicationDueSoon => "publication_due_soon",
            EventKind::PublicationOverdue => "publication_overdue",
            EventKind::AgentSilent => "agent_silent",
            EventKind::Report => "report",
        }
    }

    /// The Chinese label used in messages.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::AnomalyOpened => "异常任务已创建",
            EventKind::AnomalyEscalated => "异常任务超时未确认，已升级",
            EventKind::AnomalyCleared => "异常已恢复",
            EventKind::AnomalyReturned => "异常再次出现",
            EventKind::AnomalyOverdue => "异常任务超过处置期限",
            EventKind::DrawCommitted => "抽取承诺已公布",
            EventKind::DrawRevealed => "抽取结果已揭示",
            EventKind::PublicationDueSoon => "检查结果即将到公示期限",
            EventKind::PublicationOverdue => "检查结果逾期未公示",
            EventKind::AgentSilent => "采集终端长时间无数据",
            EventKind::Report => "定期报表",
        }
    }

    /// Events of one task's condition (opened, cleared, returned) tell the same story: a
    /// flapping sensor's come-and-go is one thing to say, not many.
    pub fn is_condition(self) -> bool {
        matches!(
            self,
            EventKind::AnomalyOpened | EventKind::AnomalyCleared | EventKind::AnomalyReturned
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<EventKind, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event kind {s:?}; known: {}", all.join(", "))
            })
    }
}

/// One event, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Outbox row id (0 before it is stored).
    pub id: i64,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub ts_ms: i64,
    /// The department concerned, if one is.
    pub department: Option<String>,
    /// The domain concerned, if one is.
    pub domain: Option<String>,
    /// The severity (anomaly tasks).
    pub severity: Option<String>,
    /// The entity concerned, if one is.
    pub entity: Option<String>,
    /// The rule key (anomaly tasks).
    pub rule: Option<String>,
    /// The task concerned, if one is.
    pub task: Option<i64>,
    /// What the event is about, for the log and grouping (`task:7`, `draw:D`, `agent:A`).
    pub subject: String,
    /// Everything else the message shows.
    pub facts: Value,
}

impl Event {
    /// An event about `subject` with no labels yet.
    pub fn new(kind: EventKind, ts: UnixMillis, subject: impl Into<String>) -> Event {
        Event {
            id: 0,
            kind,
            ts_ms: ts.0,
            department: None,
            domain: None,
            severity: None,
            entity: None,
            rule: None,
            task: None,
            subject: subject.into(),
            facts: json!({}),
        }
    }
}

/// Writes `event` into the outbox. With a `dedupe` key, an event already written under that
/// key is not written again (false).
pub fn emit(
    conn: &(impl Sql + ?Sized),
    event: &Event,
    dedupe: Option<&str>,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "INSERT INTO notify_outbox (kind, dedupe, ts_ms, department, domain, severity,
                                    entity, rule, task, subject, facts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        args![
            event.kind.as_str(),
            dedupe,
            event.ts_ms,
            event.department,
            event.domain,
            event.severity,
            event.entity,
            event.rule,
            event.task,
            event.subject,
            event.facts.to_string(),
        ],
    )?;
    Ok(n == 1)
}

/// An anomaly-task event with the task's labels read from the store.
pub fn task_event(
    conn: &(impl Sql + ?Sized),
    kind: EventKind,
    task: i64,
    detail: &str,
    ts: UnixMillis,
) -> Result<Option<Event>, DbError> {
    let Some(l) = crate::tasks::store::labels(conn, crate::tasks::TaskId(task))? else {
        return Ok(None);
    };
    let mut e = Event::new(kind, ts, format!("task:{task}"));
    e.department = Some(l.department);
    e.domain = l.domain;
    e.severity = l.severity;
    e.entity = Some(l.entity);
    e.rule = l.rule;
    e.task = Some(task);
    e.facts = json!({"detail": detail, "item": l.item, "opened_ms": l.opened_ms});
    Ok(Some(e))
}

/// Hook for the anomaly tracker: a live task's condition cleared (`returned`: false) or came
/// back (`returned`: true), inside ingest's transaction.
pub fn anomaly_changed(
    conn: &(impl Sql + ?Sized),
    task: i64,
    returned: bool,
    detail: &str,
    now: UnixMillis,
) -> Result<(), DbError> {
    let kind = if returned {
        EventKind::AnomalyReturned
    } else {
        EventKind::AnomalyCleared
    };
    if let Some(e) = task_event(conn, kind, task, detail, now)? {
        emit(conn, &e, None)?;
    }
    Ok(())
}

/// Hook for the audit log: turns the audited actions that someone should hear about into
/// outbox events, in the audit entry's transaction.
pub fn from_audit(
    conn: &(impl Sql + ?Sized),
    kind: EntryKind,
    subject: &str,
    body: &Value,
    ts: UnixMillis,
) -> Result<(), DbError> {
    match kind {
        EntryKind::TaskOpened if body.get("kind").and_then(Value::as_str) == Some("anomaly") => {
            let Some(task) = body.get("task").and_then(Value::as_i64) else {
                return Ok(());
            };
            let detail = body.get("detail").and_then(Value::as_str).unwrap_or("");
            if let Some(e) = task_event(conn, EventKind::AnomalyOpened, task, detail, ts)? {
                emit(conn, &e, None)?;
            }
        }
        EntryKind::DrawCommitted | EntryKind::DrawRevealed => {
            let Some(draw) = body.get("draw").and_then(Value::as_str) else {
                return Ok(());
            };
            let parameters: Option<String> = conn.query_opt(
                "SELECT parameters FROM draws WHERE id = $1",
                args![draw],
                |r| r.get(0),
            )?;
            let parameters: Value = parameters
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or(Value::Null);
            let (event_kind, facts) = if kind == EntryKind::DrawCommitted {
                (
                    EventKind::DrawCommitted,
                    json!({"draw": draw, "commitment": body.get("commitment"),
                           "item": parameters.get("item")}),
                )
            } else {
                let drawn = body
                    .get("drawn")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                (
                    EventKind::DrawRevealed,
                    json!({"draw": draw, "drawn": drawn, "item": parameters.get("item")}),
                )
            };
            let mut e = Event::new(event_kind, ts, subject);
            e.department = parameters
                .get("department")
                .and_then(Value::as_str)
                .map(str::to_owned);
            e.facts = facts;
            emit(conn, &e, None)?;
        }
        _ => {}
    }
    Ok(())
}

/// The columns [`from_row`] reads, in order, of the outbox aliased `o`.
pub(crate) const EVENT_COLUMNS: &str =
    "o.id, o.kind, o.ts_ms, o.department, o.domain, o.severity, \
     o.entity, o.rule, o.task, o.subject, o.facts";

/// Reads one outbox row ([`EVENT_COLUMNS`]).
pub(crate) fn from_row(r: &crate::store::db::Row<'_>) -> Result<Event, DbError> {
    let kind: String = r.get(1)?;
    let facts: String = r.get(10)?;
    Ok(Event {
        id: r.get(0)?,
        kind: kind
            .parse()
            .map_err(|reason| DbError::Column { column: 1, reason })?,
        ts_ms: r.get(2)?,
        department: r.get(3)?,
        domain: r.get(4)?,
        severity: r.get(5)?,
        entity: r.get(6)?,
        rule: r.get(7)?,
        task: r.get(8)?,
        subject: r.get(9)?,
        facts: serde_json::from_str(&facts).unwrap_or(Value::Null),
    })
}

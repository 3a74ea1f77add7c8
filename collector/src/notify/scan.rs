//! Time-driven events, found by scanning the store: anomaly tasks unacknowledged too long
//! (escalated) or unresolved too long (overdue), results near or past their publication
//! deadline, agents that stopped sending, and the scheduled report. Each carries a dedupe key,
//! so a scan repeated (or after a restart) adds nothing already there.

use serde_json::json;
use spotcheck_protocol::UnixMillis;

use super::config::NotifyConfig;
use super::event::{emit, task_event, Event, EventKind};
use crate::results::deadline::DAY_MS;
use crate::store::db::{args, Conn, DbError, Sql};

/// What the scan needs beyond `[notify]`.
#[derive(Debug, Clone, Copy)]
pub struct ScanSettings {
    /// Days within which a result must be published (`[publication]`).
    pub publish_within_days: u32,
}

/// Scans once at `now`, in one transaction; returns how many events it added.
pub fn scan(
    conn: &Conn,
    c: &NotifyConfig,
    s: ScanSettings,
    now: UnixMillis,
) -> Result<usize, super::NotifyError> {
    // The report is read before the write transaction: however long it takes, ingest never
    // waits for it.
    let reports = scheduled_reports(conn, c, s, now)?;
    let tx = conn.transaction()?;
    let mut added = 0;
    let min = 60_000i64;
    // Each time-driven event is told once: its dedupe key is in the outbox after that. (A
    // prefix compared exactly: LIKE ignores case on SQLite only, and `_` is a wildcard.)
    let told = |prefix: &str| -> Result<std::collections::HashSet<String>, DbError> {
        Ok(tx
            .query(
                "SELECT dedupe FROM notify_outbox
                 WHERE substr(dedupe, 1, length(CAST($1 AS TEXT))) = $1",
                args![prefix],
                |r| r.get(0),
            )?
            .into_iter()
            .collect())
    };
    use crate::tasks::{store as tasks, TaskStatus};
    let esc = now.0 - c.escalate_after_min as i64 * min;
    let done = told("escalated:")?;
    for id in tasks::anomalies_opened_by(&tx, &[TaskStatus::Open], esc)? {
        if !done.contains(&format!("escalated:{id}")) {
            added += task_once(&tx, EventKind::AnomalyEscalated, id.0, "escalated", now)?;
        }
    }
    let overdue = now.0 - c.resolve_within_h as i64 * 60 * min;
    let done = told("anomaly_overdue:")?;
    let live = [TaskStatus::Open, TaskStatus::Acknowledged];
    for id in tasks::anomalies_opened_by(&tx, &live, overdue)? {
        if !done.contains(&format!("anomaly_overdue:{id}")) {
            added += task_once(&tx, EventKind::AnomalyOverdue, id.0, "anomaly_overdue", now)?;
        }
    }
    // Results recorded and not published: due = resolved + N days.
    let within = i64::from(s.publish_within_days) * DAY_MS;
    let near = i64::from(c.publication_due_days) * DAY_MS;
    let done = told("publication_overdue:")?;
    for (id, resolved) in tasks::resolved_by(&tx, now.0 - within + near)? {
        let id = id.0;
        if done.contains(&format!("publication_overdue:{id}")) {
            continue;
        }
        let due = resolved + within;
        let (kind, key) = if now.0 > due {
            (EventKind::PublicationOverdue, "publication_overdue")
        } else {
            (EventKind::PublicationDueSoon, "publication_due_soon")
        };
        if let Some(mut e) = task_event(&tx, kind, id, "", now)? {
            e.facts["due_ms"] = json!(due);
            if emit(&tx, &e, Some(&format!("{key}:{id}")))? {
                added += 1;
            }
        }
    }
    // Agents: the receive time of each one's newest batch.
    let silent = c.agent_silent_min as i64 * min;
    let agents: Vec<(String, String, String, Option<i64>)> = tx.query(
        "SELECT a.name, a.entity, a.domain,
                (SELECT received_ms FROM batches b WHERE b.agent = a.id ORDER BY seq DESC LIMIT 1)
         FROM agents a ORDER BY a.name",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    for (agent, entity, domain, last) in agents {
        let Some(last) = last else { continue };
        if now.0 - last < silent {
            continue;
        }
        let department = tasks::newest_department(&tx, &entity)?;
        let mut e = Event::new(EventKind::AgentSilent, now, format!("agent:{agent}"));
        e.entity = Some(entity);
        e.domain = Some(domain);
        e.department = department;
        e.facts = json!({"agent": agent, "last_ms": last, "silent_min": (now.0 - last) / min});
        if emit(&tx, &e, Some(&format!("silent:{agent}:{last}")))? {
            added += 1;
        }
    }
    for (key, e) in &reports {
        if emit(&tx, e, Some(key))? && e.subject != "report:marker" {
            added += 1;
        }
    }
    tx.execute(
        "UPDATE notify_outbox SET routed = 1 WHERE subject = 'report:marker' AND routed = 0",
        args![],
    )?;
    tx.commit()?;
    Ok(added)
}

fn task_once(
    tx: &(impl Sql + ?Sized),
    kind: EventKind,
    id: i64,
    key: &str,
    now: UnixMillis,
) -> Result<usize, DbError> {
    match task_event(tx, kind, id, "", now)? {
        Some(e) => Ok(usize::from(emit(tx, &e, Some(&format!("{key}:{id}")))?)),
        None => Ok(0),
    }
}

/// The scheduled report's events, keyed, if one is due today and not yet written (a marker
/// event under the day's key records that it was).
fn scheduled_reports(
    conn: &Conn,
    c: &NotifyConfig,
    s: ScanSettings,
    now: UnixMillis,
) -> Result<Vec<(String, Event)>, super::NotifyError> {
    let mut out = Vec::new();
    if c.report_every_days == 0 {
        return Ok(out);
    }
    let today = crate::rules::ChinaDay::of(now);
    if today.0.rem_euclid(i64::from(c.report_every_days)) != 0 {
        return Ok(out);
    }
    let key = format!("report:{}", today.0);
    let exists = conn.query_row(
        "SELECT COUNT(*) FROM notify_outbox WHERE dedupe = $1",
        args![key],
        |r| r.get::<i64>(0),
    )? > 0;
    if exists {
        return Ok(out);
    }
    let from = crate::rules::ChinaDay(today.0 - i64::from(c.report_every_days));
    let period = crate::report::Period::days(from, today);
    let report = crate::report::build(conn, &period, s.publish_within_days, now)?;
    for r in &report.departments {
        let mut e = Event::new(EventKind::Report, now, format!("report:{}", r.department));
        e.department = Some(r.department.clone());
        e.facts = json!({"summary": crate::report::summary_zh(r, &period)});
        out.push((format!("{key}:{}", r.department), e));
    }
    out.push((key, Event::new(EventKind::Report, now, "report:marker")));
    Ok(out)
}

//! The outbox and what follows it in the store: events waiting in groups, messages persisted
//! before they are sent, and the delivery log. Every function here is one short statement or
//! one transaction; the worker decides what to call when.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::channels::Recipients;
use super::event::{from_row, Event};
use super::routing::Target;

/// Events not yet routed, oldest first.
pub fn unrouted(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<Event>> {
    conn.prepare_cached(
        "SELECT id, kind, ts_ms, department, domain, severity, entity, rule, task, subject, facts
         FROM notify_outbox WHERE routed = 0 ORDER BY id LIMIT ?1",
    )?
    .query_map([limit], from_row)?
    .collect()
}

/// Whether `target`'s identity was told in a message of its group created at or after
/// `since_ms`.
pub fn told_since(tx: &Transaction<'_>, t: &Target, since_ms: i64) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT 1 FROM notify_pending p JOIN notify_messages m ON m.id = p.message
         WHERE p.route = ?1 AND p.channel = ?2 AND p.group_key = ?3 AND p.identity = ?4
           AND m.created_ms >= ?5 LIMIT 1",
    )?
    .query_row(
        params![t.route, t.channel, t.group_key, t.identity, since_ms],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// Puts `event` into its targets' groups (`suppressed`: told recently, kept for the record)
/// and marks it routed.
pub fn place(tx: &Transaction<'_>, event: i64, targets: &[(Target, bool)]) -> rusqlite::Result<()> {
    let mut ins = tx.prepare_cached(
        "INSERT OR IGNORE INTO notify_pending (event, route, channel, group_key, identity, suppressed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (t, suppressed) in targets {
        ins.execute(params![
            event,
            t.route,
            t.channel,
            t.group_key,
            t.identity,
            suppressed
        ])?;
    }
    tx.execute("UPDATE notify_outbox SET routed = 1 WHERE id = ?1", [event])?;
    Ok(())
}

/// A group with events waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenGroup {
    /// Route.
    pub route: String,
    /// Channel.
    pub channel: String,
    /// Group key.
    pub group_key: String,
    /// The oldest waiting event's time.
    pub first_ms: i64,
    /// When the group last had a message.
    pub last_sent_ms: Option<i64>,
}

/// Every group with events waiting to be told.
pub fn open_groups(conn: &Connection) -> rusqlite::Result<Vec<OpenGroup>> {
    conn.prepare_cached(
        "SELECT p.route, p.channel, p.group_key, MIN(o.ts_ms), g.last_sent_ms
         FROM notify_pending p
         JOIN notify_outbox o ON o.id = p.event
         LEFT JOIN notify_groups g
           ON g.route = p.route AND g.channel = p.channel AND g.group_key = p.group_key
         WHERE p.message IS NULL AND p.suppressed = 0
         GROUP BY p.route, p.channel, p.group_key
         ORDER BY MIN(o.ts_ms)",
    )?
    .query_map([], |r| {
        Ok(OpenGroup {
            route: r.get(0)?,
            channel: r.get(1)?,
            group_key: r.get(2)?,
            first_ms: r.get(3)?,
            last_sent_ms: r.get(4)?,
        })
    })?
    .collect()
}

/// The events waiting in `g`, oldest first.
pub fn waiting(conn: &Connection, g: &OpenGroup) -> rusqlite::Result<Vec<Event>> {
    conn.prepare_cached(
        "SELECT o.id, o.kind, o.ts_ms, o.department, o.domain, o.severity, o.entity, o.rule,
                o.task, o.subject, o.facts
         FROM notify_pending p JOIN notify_outbox o ON o.id = p.event
         WHERE p.route = ?1 AND p.channel = ?2 AND p.group_key = ?3
           AND p.message IS NULL AND p.suppressed = 0
         ORDER BY o.id",
    )?
    .query_map(params![g.route, g.channel, g.group_key], from_row)?
    .collect()
}

/// A message to persist.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Title.
    pub title: String,
    /// Markdown text.
    pub text: String,
    /// Liaison officers added by the route.
    pub recipients: Recipients,
}

/// Persists the message for `g` and ties the waiting events to it, in one transaction.
/// Also counts the events of the group suppressed since its last message, which the text
/// mentions.
pub fn flush(
    tx: &Transaction<'_>,
    g: &OpenGroup,
    events: &[Event],
    m: &NewMessage,
    now: i64,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO notify_messages (route, channel, group_key, created_ms, title, text,
                                      recipients, events, status, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?4)",
    )?
    .execute(params![
        g.route,
        g.channel,
        g.group_key,
        now,
        m.title,
        m.text,
        serde_json::to_string(&m.recipients).expect("recipients serialise"),
        events.len() as i64,
    ])?;
    let id = tx.last_insert_rowid();
    let mut upd = tx.prepare_cached(
        "UPDATE notify_pending SET message = ?1
         WHERE event = ?2 AND route = ?3 AND channel = ?4",
    )?;
    for e in events {
        upd.execute(params![id, e.id, g.route, g.channel])?;
    }
    tx.execute(
        "INSERT INTO notify_groups (route, channel, group_key, last_sent_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (route, channel, group_key) DO UPDATE SET last_sent_ms = excluded.last_sent_ms",
        params![g.route, g.channel, g.group_key, now],
    )?;
    Ok(id)
}

/// Suppressed events of a group that arrived after `since_ms` (shown as a count).
pub fn suppressed_since(conn: &Connection, g: &OpenGroup, since_ms: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM notify_pending p JOIN notify_outbox o ON o.id = p.event
         WHERE p.route = ?1 AND p.channel = ?2 AND p.group_key = ?3 AND p.suppressed = 1
           AND o.ts_ms > ?4",
    )?
    .query_row(params![g.route, g.channel, g.group_key, since_ms], |r| {
        r.get(0)
    })
}

/// A persisted message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    /// Id.
    pub id: i64,
    /// Route.
    pub route: String,
    /// Channel.
    pub channel: String,
    /// Group key.
    pub group_key: String,
    /// Created at.
    pub created_ms: i64,
    /// Title.
    pub title: String,
    /// Markdown text.
    pub text: String,
    /// Added recipients.
    pub recipients: Recipients,
    /// Events told.
    pub events: i64,
    /// pending | sent | failed.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Next attempt at (pending).
    pub next_ms: i64,
    /// Sent at.
    pub sent_ms: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let recipients: String = r.get(7)?;
    Ok(StoredMessage {
        id: r.get(0)?,
        route: r.get(1)?,
        channel: r.get(2)?,
        group_key: r.get(3)?,
        created_ms: r.get(4)?,
        title: r.get(5)?,
        text: r.get(6)?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        events: r.get(8)?,
        status: r.get(9)?,
        attempts: r.get(10)?,
        next_ms: r.get(11)?,
        sent_ms: r.get(12)?,
        last_error: r.get(13)?,
    })
}

const MESSAGE_COLUMNS: &str = "id, route, channel, group_key, created_ms, title, text, recipients,
    events, status, attempts, next_ms, sent_ms, last_error";

/// Pending messages due by `now`, oldest first.
pub fn due(conn: &Connection, now: i64, limit: u32) -> rusqlite::Result<Vec<StoredMessage>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM notify_messages
         WHERE status = 'pending' AND next_ms <= ?1 ORDER BY next_ms, id LIMIT ?2"
    ))?
    .query_map(params![now, limit], message_row)?
    .collect()
}

/// The newest messages (for the API), optionally of one status.
pub fn messages(
    conn: &Connection,
    status: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<StoredMessage>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM notify_messages WHERE (?1 IS NULL OR status = ?1)
         ORDER BY id DESC LIMIT ?2"
    ))?
    .query_map(params![status, limit], message_row)?
    .collect()
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Failed; try again at this time.
    Retry(i64),
    /// Failed for good (attempts used up, or a misconfiguration).
    Failed,
}

/// Records an attempt on message `id` in the delivery log and its outcome on the message,
/// in one transaction.
pub fn record(
    conn: &mut Connection,
    id: i64,
    channel: &str,
    now: i64,
    outcome: &Outcome,
    detail: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let attempt: i64 = tx.query_row(
        "UPDATE notify_messages SET attempts = attempts + 1 WHERE id = ?1 RETURNING attempts",
        [id],
        |r| r.get(0),
    )?;
    log(
        &tx,
        Some(id),
        channel,
        now,
        attempt,
        matches!(outcome, Outcome::Sent),
        detail,
    )?;
    match outcome {
        Outcome::Sent => tx.execute(
            "UPDATE notify_messages SET status = 'sent', sent_ms = ?2 WHERE id = ?1",
            params![id, now],
        )?,
        Outcome::Retry(at) => tx.execute(
            "UPDATE notify_messages SET next_ms = ?2, last_error = ?3 WHERE id = ?1",
            params![id, at, detail],
        )?,
        Outcome::Failed => tx.execute(
            "UPDATE notify_messages SET status = 'failed', last_error = ?2 WHERE id = ?1",
            params![id, detail],
        )?,
    };
    tx.commit()
}

/// Appends to the delivery log (`message` None: a test send).
pub fn log(
    conn: &Connection,
    message: Option<i64>,
    channel: &str,
    now: i64,
    attempt: i64,
    ok: bool,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO notify_deliveries (message, channel, ts_ms, attempt, ok, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![message, channel, now, attempt, ok, detail])?;
    Ok(())
}

/// One line of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Id.
    pub id: i64,
    /// The message (None: a test send).
    pub message: Option<i64>,
    /// Channel.
    pub channel: String,
    /// When.
    pub ts_ms: i64,
    /// Which attempt of the message.
    pub attempt: i64,
    /// Delivered.
    pub ok: bool,
    /// The server's answer or the error.
    pub detail: String,
}

/// The newest lines of the delivery log, optionally of one message.
pub fn deliveries(
    conn: &Connection,
    message: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<Delivery>> {
    conn.prepare_cached(
        "SELECT id, message, channel, ts_ms, attempt, ok, detail FROM notify_deliveries
         WHERE (?1 IS NULL OR message = ?1) ORDER BY id DESC LIMIT ?2",
    )?
    .query_map(params![message, limit], |r| {
        Ok(Delivery {
            id: r.get(0)?,
            message: r.get(1)?,
            channel: r.get(2)?,
            ts_ms: r.get(3)?,
            attempt: r.get(4)?,
            ok: r.get(5)?,
            detail: r.get(6)?,
        })
    })?
    .collect()
}

/// The rules saved through the API, newest: (id, JSON).
pub fn saved_rules(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT id, body FROM notify_config ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

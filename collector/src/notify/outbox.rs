//! The outbox and what follows it in the store (SQLite or PostgreSQL): events waiting in
//! groups, messages persisted before they are sent, and the delivery log. Every function here
//! is one short statement or one transaction; the worker decides what to call when.
//!
//! Several workers may see the same rows (a leader that lost its lock still finishing a step
//! while the next leader starts): routing and flushing re-read what they change inside their
//! write transaction, and a message is **claimed** ([`claim`]: one conditional `UPDATE` that
//! names the worker and a lease end) before it is sent, so two workers never send one
//! message at once. A worker that dies while sending leaves its claim to expire; the message
//! is then due again (at least once).

use serde::Serialize;

use super::channels::Recipients;
use super::event::{from_row, Event, EVENT_COLUMNS};
use super::routing::Target;
use crate::store::db::{args, Conn, DbError, Row, Sql};

/// Events not yet routed, oldest first.
pub fn unrouted(conn: &(impl Sql + ?Sized), limit: u32) -> Result<Vec<Event>, DbError> {
    conn.query(
        &format!(
            "SELECT {EVENT_COLUMNS} FROM notify_outbox o WHERE o.routed = 0 ORDER BY o.id LIMIT $1"
        ),
        args![limit],
        from_row,
    )
}

/// Whether `target`'s identity was told in a message of its group created at or after
/// `since_ms`.
pub fn told_since(conn: &(impl Sql + ?Sized), t: &Target, since_ms: i64) -> Result<bool, DbError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM notify_pending p JOIN notify_messages m ON m.id = p.message
             WHERE p.route = $1 AND p.channel = $2 AND p.group_key = $3 AND p.identity = $4
               AND m.created_ms >= $5 LIMIT 1",
            args![t.route, t.channel, t.group_key, t.identity, since_ms],
            |_| Ok(()),
        )?
        .is_some())
}

/// Puts `event` into its targets' groups (`suppressed`: told recently, kept for the record)
/// and marks it routed.
pub fn place(
    tx: &(impl Sql + ?Sized),
    event: i64,
    targets: &[(Target, bool)],
) -> Result<(), DbError> {
    for (t, suppressed) in targets {
        tx.execute(
            "INSERT INTO notify_pending (event, route, channel, group_key, identity, suppressed)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event, route, channel) DO NOTHING",
            args![
                event,
                t.route,
                t.channel,
                t.group_key,
                t.identity,
                suppressed
            ],
        )?;
    }
    tx.execute(
        "UPDATE notify_outbox SET routed = 1 WHERE id = $1",
        args![event],
    )?;
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
pub fn open_groups(conn: &(impl Sql + ?Sized)) -> Result<Vec<OpenGroup>, DbError> {
    conn.query(
        "SELECT p.route, p.channel, p.group_key, MIN(o.ts_ms), g.last_sent_ms
         FROM notify_pending p
         JOIN notify_outbox o ON o.id = p.event
         LEFT JOIN notify_groups g
           ON g.route = p.route AND g.channel = p.channel AND g.group_key = p.group_key
         WHERE p.message IS NULL AND p.suppressed = 0
         GROUP BY p.route, p.channel, p.group_key, g.last_sent_ms
         ORDER BY MIN(o.ts_ms), p.route, p.channel, p.group_key",
        args![],
        |r| {
            Ok(OpenGroup {
                route: r.get(0)?,
                channel: r.get(1)?,
                group_key: r.get(2)?,
                first_ms: r.get(3)?,
                last_sent_ms: r.get(4)?,
            })
        },
    )
}

/// The events waiting in `g`, oldest first.
pub fn waiting(conn: &(impl Sql + ?Sized), g: &OpenGroup) -> Result<Vec<Event>, DbError> {
    conn.query(
        &format!(
            "SELECT {EVENT_COLUMNS}
             FROM notify_pending p JOIN notify_outbox o ON o.id = p.event
             WHERE p.route = $1 AND p.channel = $2 AND p.group_key = $3
               AND p.message IS NULL AND p.suppressed = 0
             ORDER BY o.id"
        ),
        args![g.route, g.channel, g.group_key],
        from_row,
    )
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

/// Persists the message for `g` and ties the waiting events to it, inside the caller's
/// transaction (which read `events` with [`waiting`] in the same transaction, so no other
/// worker tied them meanwhile).
pub fn flush(
    tx: &(impl Sql + ?Sized),
    g: &OpenGroup,
    events: &[Event],
    m: &NewMessage,
    now: i64,
) -> Result<i64, DbError> {
    let id: i64 = tx.query_row(
        "INSERT INTO notify_messages (route, channel, group_key, created_ms, title, text,
                                      recipients, events, status, next_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $4) RETURNING id",
        args![
            g.route,
            g.channel,
            g.group_key,
            now,
            m.title,
            m.text,
            serde_json::to_string(&m.recipients).expect("recipients serialise"),
            events.len() as i64,
        ],
        |r| r.get(0),
    )?;
    for e in events {
        tx.execute(
            "UPDATE notify_pending SET message = $1
             WHERE event = $2 AND route = $3 AND channel = $4 AND message IS NULL",
            args![id, e.id, g.route, g.channel],
        )?;
    }
    tx.execute(
        "INSERT INTO notify_groups (route, channel, group_key, last_sent_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (route, channel, group_key) DO UPDATE SET last_sent_ms = excluded.last_sent_ms",
        args![g.route, g.channel, g.group_key, now],
    )?;
    Ok(id)
}

/// Suppressed events of a group that arrived after `since_ms` (shown as a count).
pub fn suppressed_since(
    conn: &(impl Sql + ?Sized),
    g: &OpenGroup,
    since_ms: i64,
) -> Result<i64, DbError> {
    conn.query_row(
        "SELECT COUNT(*) FROM notify_pending p JOIN notify_outbox o ON o.id = p.event
         WHERE p.route = $1 AND p.channel = $2 AND p.group_key = $3 AND p.suppressed = 1
           AND o.ts_ms > $4",
        args![g.route, g.channel, g.group_key, since_ms],
        |r| r.get(0),
    )
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

fn message_row(r: &Row<'_>) -> Result<StoredMessage, DbError> {
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

/// Pending messages due by `now` that no worker holds a live claim on, oldest first.
pub fn due(
    conn: &(impl Sql + ?Sized),
    now: i64,
    limit: u32,
) -> Result<Vec<StoredMessage>, DbError> {
    conn.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM notify_messages
             WHERE status = 'pending' AND next_ms <= $1
               AND (claimed_until IS NULL OR claimed_until <= $1)
             ORDER BY next_ms, id LIMIT $2"
        ),
        args![now, limit],
        message_row,
    )
}

/// Claims message `id` for `owner` until `until_ms`, if it is still pending, due by `now`
/// and not claimed by anyone whose claim lasts past `now`. One statement: on PostgreSQL a
/// second claimer of the same row waits for the first and then finds the claim (its
/// condition is checked again on the row the first one wrote), on SQLite writes take turns;
/// so of two workers that try, exactly one gets it. Returns whether this one did.
pub fn claim(
    conn: &(impl Sql + ?Sized),
    id: i64,
    owner: &str,
    now: i64,
    until_ms: i64,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE notify_messages SET claimed_by = $2, claimed_until = $4
         WHERE id = $1 AND status = 'pending' AND next_ms <= $3
           AND (claimed_until IS NULL OR claimed_until <= $3)",
        args![id, owner, now, until_ms],
    )?;
    Ok(n == 1)
}

/// The newest messages (for the API), optionally of one status.
pub fn messages(
    conn: &(impl Sql + ?Sized),
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<StoredMessage>, DbError> {
    conn.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM notify_messages
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
             ORDER BY id DESC LIMIT $2"
        ),
        args![status, limit],
        message_row,
    )
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

/// Records `owner`'s attempt on message `id` in the delivery log and its outcome on the
/// message, releasing the claim, in one transaction. If another worker claimed the message
/// since (this one's claim ran out mid-send), the attempt is logged and counted but the
/// message is left to that worker.
pub fn record(
    conn: &Conn,
    id: i64,
    owner: &str,
    channel: &str,
    now: i64,
    outcome: &Outcome,
    detail: &str,
) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    let (attempt, holder): (i64, Option<String>) = tx.query_row(
        "UPDATE notify_messages SET attempts = attempts + 1 WHERE id = $1
         RETURNING attempts, claimed_by",
        args![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
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
    if holder.as_deref().is_none_or(|h| h == owner) {
        match outcome {
            Outcome::Sent => tx.execute(
                "UPDATE notify_messages SET status = 'sent', sent_ms = $2,
                        claimed_by = NULL, claimed_until = NULL
                 WHERE id = $1",
                args![id, now],
            )?,
            Outcome::Retry(at) => tx.execute(
                "UPDATE notify_messages SET next_ms = $2, last_error = $3,
                        claimed_by = NULL, claimed_until = NULL
                 WHERE id = $1",
                args![id, at, detail],
            )?,
            Outcome::Failed => tx.execute(
                "UPDATE notify_messages SET status = 'failed', last_error = $2,
                        claimed_by = NULL, claimed_until = NULL
                 WHERE id = $1",
                args![id, detail],
            )?,
        };
    }
    tx.commit()
}

/// Appends to the delivery log (`message` None: a test send).
pub fn log(
    conn: &(impl Sql + ?Sized),
    message: Option<i64>,
    channel: &str,
    now: i64,
    attempt: i64,
    ok: bool,
    detail: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO notify_deliveries (message, channel, ts_ms, attempt, ok, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![message, channel, now, attempt, ok, detail],
    )?;
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
    conn: &(impl Sql + ?Sized),
    message: Option<i64>,
    limit: u32,
) -> Result<Vec<Delivery>, DbError> {
    conn.query(
        "SELECT id, message, channel, ts_ms, attempt, ok, detail FROM notify_deliveries
         WHERE (CAST($1 AS BIGINT) IS NULL OR message = $1) ORDER BY id DESC LIMIT $2",
        args![message, limit],
        |r| {
            Ok(Delivery {
                id: r.get(0)?,
                message: r.get(1)?,
                channel: r.get(2)?,
                ts_ms: r.get(3)?,
                attempt: r.get(4)?,
                ok: r.get(5)?,
                detail: r.get(6)?,
            })
        },
    )
}

/// The rules saved through the API, newest: (id, JSON).
pub fn saved_rules(conn: &(impl Sql + ?Sized)) -> Result<Option<(i64, String)>, DbError> {
    conn.query_opt(
        "SELECT id, body FROM notify_config ORDER BY id DESC LIMIT 1",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Saves rules as a new version (`saved_by`: `config` for the file's, else who saved them
/// through the API); returns its id.
pub fn save_rules(
    conn: &(impl Sql + ?Sized),
    body: &str,
    now: i64,
    saved_by: &str,
) -> Result<i64, DbError> {
    conn.query_row(
        "INSERT INTO notify_config (body, saved_ms, saved_by) VALUES ($1, $2, $3) RETURNING id",
        args![body, now, saved_by],
        |r| r.get(0),
    )
}

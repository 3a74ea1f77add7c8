//! Notifications: supervisors hear about anomalies, draws and deadlines without watching a
//! screen. In the order data flows:
//!
//! - [`event`]: the events and the hooks that write them into the outbox inside the
//!   transaction that caused them (audit entries of anomaly tasks and draws; the anomaly
//!   tracker's cleared/returned conditions).
//! - [`scan`]: time-driven events (escalation, overdue tasks, publication deadlines, silent
//!   agents, the scheduled report), deduplicated by key.
//! - [`config`]: `[notify]`, the channels and routes, validated with reasons.
//! - [`routing`]: which routes and channels an event takes, its group and identity.
//! - [`grouping`]: group_wait / group_interval / repeat_interval, and retry backoff.
//! - [`outbox`]: the outbox, groups, persisted messages (claimed with a lease before they are
//!   sent) and the delivery log, in the store (SQLite or PostgreSQL).
//! - [`render`]: messages in Chinese with a link to the task in the console.
//! - [`channels`]: webhook, WeCom, DingTalk, e-mail.
//! - [`worker`]: the delivery thread and the test send.

pub mod channels;
pub mod config;
pub mod event;
pub mod grouping;
pub mod outbox;
pub mod render;
pub mod routing;
pub mod scan;
pub mod worker;

pub use config::{NotifyConfig, Rules};
pub use event::{Event, EventKind};
pub use worker::{Notifier, Worker};

/// What the notification side can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The store failed (either engine).
    #[error("notifications: database: {0}")]
    Db(#[from] crate::store::db::DbError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The scheduled report could not be made.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// No channel by that name.
    #[error("no channel named {0:?}")]
    UnknownChannel(String),
    /// The worker thread did not start.
    #[error("starting the notification thread: {0}")]
    Thread(std::io::Error),
}

/// The departments routes may name: the item list's, the inspector library's, the users'
/// and the liaison officers'.
pub fn known_departments(
    conn: &(impl crate::store::db::Sql + ?Sized),
) -> Result<std::collections::BTreeSet<String>, crate::store::db::DbError> {
    let mut out = std::collections::BTreeSet::new();
    out.insert(crate::tasks::anomaly::UNASSIGNED.to_owned());
    for sql in [
        "SELECT DISTINCT department FROM registry_items",
        "SELECT DISTINCT department FROM registry_inspectors",
        "SELECT DISTINCT department FROM users WHERE department IS NOT NULL",
        "SELECT DISTINCT department FROM contacts",
    ] {
        out.extend(conn.query(sql, crate::store::db::args![], |r| r.get::<String>(0))?);
    }
    Ok(out)
}

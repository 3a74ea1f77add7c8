//! One leader among the collectors that share a store, for the work that must happen once
//! (the rule ticker's inactivity checks, retention, the time-series sink, notifications).
//! Draws and publication need no leader: they are asked for through the API, run under the
//! store's write lock and are refused the second time (docs/storage.md).
//!
//! On PostgreSQL the leader is the collector whose dedicated connection holds a
//! session-level advisory lock. On gaining it, the collector raises its role's **term** in
//! `leader_terms` on that connection. The leader's work is fenced in one of two ways:
//!
//! - it runs *on that connection* ([`Leadership::with_leader`]): while the work's
//!   transaction runs the session is alive and no other collector can hold the lock, and if
//!   the connection is lost the work fails with it;
//! - or, on a connection of its own, it checks the term inside its transaction
//!   ([`Lead::fence`]: `SELECT term … FOR SHARE`). A new leader's raise of the term waits
//!   for every transaction that holds the row shared, so the old leader's transaction in
//!   progress finishes first, and every later one sees the new term and does nothing. Two
//!   leaders never write at once; what the old one does outside the store (a request to the
//!   time-series server, a message sent) is at most the one step it was taking.
//!
//! When a leader is killed its connection closes and PostgreSQL releases the lock at once;
//! standbys try again every `retry` (`store.leader_retry_ms`, 1 s by default), so one takes
//! over within that. A leader whose lock connection is cut notices within one `retry` (it
//! checks the connection as often) and stops its work. A leader whose host vanishes without
//! closing its socket is noticed by the server's TCP keepalives (docs/storage.md). On SQLite
//! there is one collector per store, always the leader.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::db::{self, args, Backend, Conn, DbError, DbUrl, Mode, Sql};

/// Advisory-lock keys of leadership roles are this plus the role's number.
const LEADER_LOCK_BASE: i64 = 0x73_70_6f_74_6c_64_00;

/// What a leader is chosen for. One role today; the number is the lock key's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The collector-wide work that must happen once.
    Collector = 1,
}

impl Role {
    /// The session-level advisory-lock key whose holder leads in this role (visible in
    /// `pg_locks` as `classid` = high 32 bits, `objid` = low 32 bits, `objsubid` = 1).
    pub fn lock_key(self) -> i64 {
        LEADER_LOCK_BASE + self as i64
    }

    /// The role's row in `leader_terms`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Collector => "collector",
        }
    }
}

/// What this process is in the campaign, as the leader's work and `/healthz` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It leads, in this term.
    Leading {
        /// The term it raised `leader_terms` to (0 on SQLite, which keeps no terms).
        term: i64,
    },
    /// Another collector leads (or none yet); this one tries again every retry.
    Standby,
    /// It cannot campaign: the store is unreachable or refused (the reason).
    Unreachable(String),
}

struct Shared {
    /// The lock-holding connection while this process leads.
    conn: Mutex<Option<Conn>>,
    leading: AtomicBool,
    /// The term this process leads in; 0 while it does not.
    term: AtomicI64,
    stop: AtomicBool,
    status: watch::Sender<Status>,
}

impl Shared {
    fn new(status: Status) -> Arc<Shared> {
        Arc::new(Shared {
            conn: Mutex::new(None),
            leading: AtomicBool::new(false),
            term: AtomicI64::new(0),
            stop: AtomicBool::new(false),
            status: watch::Sender::new(status),
        })
    }

    fn set(&self, status: Status) {
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

/// This process's part in choosing a leader; campaigning stops when dropped.
pub struct Leadership {
    lead: Lead,
    thread: Option<JoinHandle<()>>,
}

/// What the leader's work holds: whether this process leads, and the fence its transactions
/// check. Cheap to clone.
#[derive(Clone)]
pub struct Lead {
    shared: Arc<Shared>,
    role: Role,
    /// SQLite (or a test): always the leader, no campaign.
    sole: bool,
}

impl Leadership {
    /// Starts campaigning for `role` in the store at `url`, trying every `retry`; the
    /// holder recorded in `leader_terms` is this host and process.
    pub fn campaign(url: &DbUrl, role: Role, retry: Duration) -> Leadership {
        Leadership::campaign_as(url, role, retry, default_holder())
    }

    /// [`Leadership::campaign`], recorded in `leader_terms` as `holder`.
    pub fn campaign_as(url: &DbUrl, role: Role, retry: Duration, holder: String) -> Leadership {
        if let DbUrl::Sqlite(_) = url {
            return Leadership {
                lead: Lead::sole(),
                thread: None,
            };
        }
        let shared = Shared::new(Status::Standby);
        let url = url.clone();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("leader".into())
            .spawn(move || campaign(&url, role, retry, &holder, &s))
            .expect("spawning the leader thread");
        Leadership {
            lead: Lead {
                shared,
                role,
                sole: false,
            },
            thread: Some(thread),
        }
    }

    /// Whether this process leads now (it may stop leading any moment; act only through
    /// [`Leadership::with_leader`] or inside a transaction that checks [`Lead::fence`]).
    pub fn is_leader(&self) -> bool {
        self.lead.is_leader()
    }

    /// The handle the leader's work keeps.
    pub fn lead(&self) -> Lead {
        self.lead.clone()
    }

    /// Runs `f` on the lock-holding connection if this process leads; `None` if it does not.
    /// On SQLite `f` is not given a connection here: use the store's usual writer.
    pub fn with_leader<T>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, DbError>,
    ) -> Option<Result<T, DbError>> {
        let guard = self
            .lead
            .shared
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let conn = guard.as_ref()?;
        Some(f(conn))
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.lead.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Lead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lead")
            .field("role", &self.role)
            .field("sole", &self.sole)
            .field("term", &self.term())
            .finish()
    }
}

impl Lead {
    /// A process that is always the leader: one collector on SQLite, or a test.
    pub fn sole() -> Lead {
        Lead {
            shared: Shared::new(Status::Leading { term: 0 }),
            role: Role::Collector,
            sole: true,
        }
    }

    /// A process that never leads (tests, and tools that must not do the leader's work).
    pub fn standby() -> Lead {
        Lead {
            shared: Shared::new(Status::Standby),
            role: Role::Collector,
            sole: false,
        }
    }

    /// Whether this process leads now, as far as it knows (it learns of a lost connection
    /// within one retry; [`Lead::fence`] is what keeps two leaders from writing at once).
    pub fn is_leader(&self) -> bool {
        self.sole || self.shared.leading.load(Ordering::Acquire)
    }

    /// The term this process leads in, if it leads.
    pub fn term(&self) -> Option<i64> {
        self.is_leader()
            .then(|| self.shared.term.load(Ordering::Acquire))
    }

    /// The campaign's status, updated as it changes (for starting and stopping the leader's
    /// work, and `/healthz`).
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Inside a transaction of the leader's work, on any connection: true if this process
    /// still leads in its term, and then (on PostgreSQL) the term's row stays shared-locked
    /// until the transaction ends, so no other collector can take over before it does. False:
    /// do nothing in this transaction (another collector leads, or this one stepped down).
    pub fn fence(&self, tx: &(impl Sql + ?Sized)) -> Result<bool, DbError> {
        if self.sole {
            return Ok(true);
        }
        let Some(mine) = self.term() else {
            return Ok(false);
        };
        if tx.backend() == Backend::Sqlite {
            return Ok(true);
        }
        let current: Option<i64> = tx.query_opt(
            "SELECT term FROM leader_terms WHERE role = $1 FOR SHARE",
            args![self.role.name()],
            |r| r.get(0),
        )?;
        Ok(current == Some(mine))
    }
}

/// `host:pid`, how `leader_terms` names a holder by default.
fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Raises the role's term on the connection that now holds the lock; the new term. Waits
/// for the old leader's fenced transactions to end (they hold the row shared).
fn raise_term(conn: &Conn, role: Role, holder: &str) -> Result<i64, DbError> {
    conn.query_row(
        "INSERT INTO leader_terms (role, term, holder, since_ms) VALUES ($1, 1, $2, $3)
         ON CONFLICT (role) DO UPDATE SET term = leader_terms.term + 1,
             holder = excluded.holder, since_ms = excluded.since_ms
         RETURNING term",
        args![role.name(), holder, spotcheck_protocol::UnixMillis::now().0],
        |r| r.get(0),
    )
}

fn campaign(url: &DbUrl, role: Role, retry: Duration, holder: &str, s: &Shared) {
    let key = role.lock_key();
    let mut standby: Option<Conn> = None;
    while !s.stop.load(Ordering::Acquire) {
        let leading = s.leading.load(Ordering::Acquire);
        if leading {
            // A session-level lock is held for as long as its session lives: a live
            // connection still holds it, a lost one has lost it.
            let mut guard = s.conn.lock().unwrap_or_else(|e| e.into_inner());
            let alive = guard.as_ref().is_some_and(|c| {
                c.query_row("SELECT 1", args![], |r| r.get::<i64>(0))
                    .is_ok()
            });
            if !alive {
                *guard = None;
                s.leading.store(false, Ordering::Release);
                s.term.store(0, Ordering::Release);
                s.set(Status::Standby);
                tracing::warn!(message = "Lost the leadership: the lock's connection is gone.", role = ?role);
            }
        } else {
            if standby.as_ref().is_none_or(|c| !c.is_idle()) {
                standby = match db::connect(url, Mode::Write) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(message = "Cannot reach the store to campaign for leadership.", error = %e);
                        s.set(Status::Unreachable(e.to_string()));
                        None
                    }
                };
            }
            if let Some(c) = &standby {
                match c.query_row("SELECT pg_try_advisory_lock($1)", args![key], |r| {
                    r.get::<bool>(0)
                }) {
                    Ok(true) => match raise_term(c, role, holder) {
                        Ok(term) => {
                            *s.conn.lock().unwrap_or_else(|e| e.into_inner()) = standby.take();
                            s.term.store(term, Ordering::Release);
                            s.leading.store(true, Ordering::Release);
                            s.set(Status::Leading { term });
                            tracing::info!(message = "This collector leads.", role = ?role, term);
                            continue;
                        }
                        Err(e) => {
                            // Closing the connection releases the lock for another.
                            tracing::warn!(message = "Could not raise the leadership term; trying again.", error = %e);
                            s.set(Status::Unreachable(e.to_string()));
                            standby = None;
                        }
                    },
                    Ok(false) => s.set(Status::Standby),
                    Err(e) => {
                        tracing::warn!(message = "Campaigning for leadership failed.", error = %e);
                        s.set(Status::Unreachable(e.to_string()));
                        standby = None;
                    }
                }
            }
        }
        sleep_unless_stopped(retry, s);
    }
    // Stepping down: closing the connection releases the lock.
    *s.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    s.leading.store(false, Ordering::Release);
    s.term.store(0, Ordering::Release);
    s.set(Status::Standby);
}

fn sleep_unless_stopped(d: Duration, s: &Shared) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() && !s.stop.load(Ordering::Acquire) {
        let t = left.min(step);
        std::thread::sleep(t);
        left -= t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sole_leader_leads_and_passes_its_fence_on_sqlite() {
        let l = Leadership::campaign(
            &DbUrl::Sqlite("/nonexistent/never-opened.db".into()),
            Role::Collector,
            Duration::from_secs(1),
        );
        assert!(l.is_leader());
        assert!(
            l.with_leader(|_| Ok(())).is_none(),
            "no lock connection on SQLite"
        );
        let lead = l.lead();
        assert_eq!(*lead.watch().borrow(), Status::Leading { term: 0 });
        let conn = Conn::from_sqlite(rusqlite::Connection::open_in_memory().unwrap());
        assert!(lead.fence(&conn).unwrap());
    }
}

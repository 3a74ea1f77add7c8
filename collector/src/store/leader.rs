//! One leader among the collectors that share a store, for the work that must happen once
//! (draws and publication, the rule ticker's inactivity checks, retention, the time-series
//! sink's cursor, notifications).
//!
//! On PostgreSQL the leader is the collector whose dedicated connection holds a
//! session-level advisory lock. The leader's work runs *on that connection*
//! ([`Leadership::with_leader`]), so it is fenced by the lock itself: while the work's
//! transaction runs the session is alive and no other collector can hold the lock, and if the
//! connection is lost the work fails with it instead of running beside a new leader.
//!
//! When a leader is killed its connection closes and PostgreSQL releases the lock at once;
//! standbys try again every `retry` (1 s by default), so one takes over within that. A leader
//! whose host vanishes without closing its socket is noticed by the server's TCP keepalives
//! (docs/storage.md). On SQLite there is one collector per store, always the leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::db::{self, args, Conn, DbError, DbUrl, Mode, Sql};

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
}

struct Shared {
    /// The lock-holding connection while this process leads.
    conn: Mutex<Option<Conn>>,
    leading: AtomicBool,
    stop: AtomicBool,
}

/// This process's part in choosing a leader; campaigning stops when dropped.
pub struct Leadership {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// SQLite: always the leader, no campaign.
    sole: bool,
}

impl Leadership {
    /// Starts campaigning for `role` in the store at `url`, trying every `retry`.
    pub fn campaign(url: &DbUrl, role: Role, retry: Duration) -> Leadership {
        let shared = Arc::new(Shared {
            conn: Mutex::new(None),
            leading: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        if let DbUrl::Sqlite(_) = url {
            return Leadership {
                shared,
                thread: None,
                sole: true,
            };
        }
        let url = url.clone();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("leader".into())
            .spawn(move || campaign(&url, role, retry, &s))
            .expect("spawning the leader thread");
        Leadership {
            shared,
            thread: Some(thread),
            sole: false,
        }
    }

    /// Whether this process leads now (it may stop leading any moment; act only through
    /// [`Leadership::with_leader`]).
    pub fn is_leader(&self) -> bool {
        self.sole || self.shared.leading.load(Ordering::Acquire)
    }

    /// Runs `f` on the lock-holding connection if this process leads; `None` if it does not.
    /// On SQLite `f` is not given a connection here: use the store's usual writer.
    pub fn with_leader<T>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, DbError>,
    ) -> Option<Result<T, DbError>> {
        let guard = self.shared.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = guard.as_ref()?;
        Some(f(conn))
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn campaign(url: &DbUrl, role: Role, retry: Duration, s: &Shared) {
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
                tracing::warn!(message = "Lost the leadership: the lock's connection is gone.", role = ?role);
            }
        } else {
            if standby.as_ref().is_none_or(|c| !c.is_idle()) {
                standby = match db::connect(url, Mode::Write) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(message = "Cannot reach the store to campaign for leadership.", error = %e);
                        None
                    }
                };
            }
            if let Some(c) = &standby {
                match c.query_row("SELECT pg_try_advisory_lock($1)", args![key], |r| {
                    r.get::<bool>(0)
                }) {
                    Ok(true) => {
                        *s.conn.lock().unwrap_or_else(|e| e.into_inner()) = standby.take();
                        s.leading.store(true, Ordering::Release);
                        tracing::info!(message = "This collector leads.", role = ?role);
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(message = "Campaigning for leadership failed.", error = %e);
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

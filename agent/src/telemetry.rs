//! The agent's internal events that both log and count, in one place. The counters are
//! process-wide (one agent per process) and are what `/metrics` exposes.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

/// Process-wide counters.
#[derive(Debug)]
pub struct Counters {
    /// Records (readings or events) the intake sources (http, file, stdin) accepted.
    pub records_accepted: AtomicU64,
    /// Records or requests the intake sources refused (bad token, malformed, invalid, ...).
    pub records_rejected: AtomicU64,
    /// Modbus polls that returned every register.
    pub modbus_polls: AtomicU64,
    /// Modbus polls that failed (exception, timeout, connection).
    pub modbus_errors: AtomicU64,
    /// Times the disk filled up and the sources paused.
    pub spool_full: AtomicU64,
}

/// The counters of this process.
pub static COUNTERS: Counters = Counters {
    records_accepted: AtomicU64::new(0),
    records_rejected: AtomicU64::new(0),
    modbus_polls: AtomicU64::new(0),
    modbus_errors: AtomicU64::new(0),
    spool_full: AtomicU64::new(0),
};

impl Counters {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// An intake source accepted `n` records.
pub fn records_accepted(n: usize) {
    COUNTERS
        .records_accepted
        .fetch_add(n as u64, Ordering::Relaxed);
}

/// An intake source refused input: logged with the reason, and counted.
pub fn record_rejected(source: &str, code: &str, reason: &str) {
    COUNTERS.records_rejected.fetch_add(1, Ordering::Relaxed);
    warn!(message = "Input rejected.", source, code, reason);
}

/// A Modbus poll failed: logged, counted; the source retries at the next interval.
pub fn modbus_error(source: &str, error: &dyn std::fmt::Display) {
    COUNTERS.modbus_errors.fetch_add(1, Ordering::Relaxed);
    warn!(message = "Modbus poll failed; retrying at the next interval.", source, %error);
}

/// A Modbus poll succeeded.
pub fn modbus_polled() {
    COUNTERS.modbus_polls.fetch_add(1, Ordering::Relaxed);
}

/// The disk under the spool filled up: the sources pause until acks free space.
pub fn spool_full() {
    COUNTERS.spool_full.fetch_add(1, Ordering::Relaxed);
}

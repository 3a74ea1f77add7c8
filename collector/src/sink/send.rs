//! The sink's second thread: posts the batches the reader encoded, one at a time and in order,
//! until the server takes or definitively refuses each (then it is dead-lettered), and hands
//! each back so the reader moves the cursor. While one batch is in flight the reader already
//! reads and encodes the next: the CPU the sink needs per batch overlaps the server's.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::{error, warn};

use super::backoff::Backoff;
use super::client::{Client, Outcome};
use super::source::Batch;
use crate::store::db::{self, args, DbError, DbUrl, Sql};
use crate::telemetry::SinkStats;

/// A batch on its way: the lines (kept for a dead letter) and the request body if it differs
/// (gzip). A batch of no points only carries the cursor through the pipeline, in order.
pub struct Outgoing {
    /// What was read.
    pub batch: Batch,
    /// The gzipped body, when the sink gzips.
    pub gzipped: Option<Vec<u8>>,
}

/// When the sink must stop trying: unset until shutdown, then the end of the drain.
pub type Deadline = Arc<Mutex<Option<Instant>>>;

/// The thread that posts.
pub struct Poster {
    pub(super) client: Client,
    pub(super) backoff: Backoff,
    pub(super) stats: SinkStats,
    /// The store, for the dead letters of refused batches.
    pub(super) db: DbUrl,
    pub(super) target: String,
    pub(super) deadline: Deadline,
}

impl Poster {
    /// Delivers what arrives on `rx` until it closes or the drain deadline passes; each batch
    /// delivered (or dead-lettered) goes back on `done`.
    pub fn run(mut self, rx: Receiver<Outgoing>, done: Sender<Batch>) {
        for out in rx {
            if !self.deliver(&out) {
                return;
            }
            if done.send(out.batch).is_err() {
                return;
            }
        }
    }

    /// Sleeps `d`, in slices so that a shutdown is noticed; true when the drain is over.
    fn wait(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if deadline.is_some_and(|until| now >= until) {
                return true;
            }
            if now >= end {
                return false;
            }
            let mut nap = (end - now).min(Duration::from_millis(100));
            if let Some(until) = deadline {
                nap = nap.min(until - now);
            }
            std::thread::sleep(nap);
        }
    }

    /// Sends a batch until the server takes or refuses it; false if the sink must stop first.
    fn deliver(&mut self, out: &Outgoing) -> bool {
        let batch = &out.batch;
        if batch.points == 0 {
            return true;
        }
        loop {
            match self.client.post(&batch.body, out.gzipped.as_deref()) {
                Outcome::Written => {
                    self.backoff.reset();
                    self.stats.points_written.inc_by(batch.points);
                    return true;
                }
                Outcome::Rejected { status, reason } => {
                    warn!(message = "Time-series store refused a batch; its lines are dead-lettered.", status, reason = %reason, points = batch.points);
                    match self.dead_letter(status, &reason, &batch.body) {
                        Ok(()) => {
                            self.stats.points_dead_lettered.inc_by(batch.points);
                            return true;
                        }
                        Err(e) => {
                            error!(message = "Cannot store the sink's dead letter; retrying.", error = %e);
                            let d = self.backoff.next_with_jitter(rand::rng().random());
                            if self.wait(d) {
                                return false;
                            }
                        }
                    }
                }
                Outcome::Retry {
                    status,
                    retry_after,
                    error,
                } => {
                    self.stats.write_errors.inc();
                    let d = self.backoff.after(
                        retry_after.as_deref(),
                        time::OffsetDateTime::now_utc(),
                        rand::rng().random(),
                    );
                    warn!(message = "Write to the time-series store failed; retrying.", status = ?status, error = %error, retry_in_ms = d.as_millis() as u64);
                    if self.wait(d) {
                        return false;
                    }
                }
            }
        }
    }

    /// Keeps a refused batch's lines as a dead letter, through a short-lived connection (on
    /// SQLite the one moment the sink takes the store's write lock).
    fn dead_letter(&self, status: u16, reason: &str, lines: &str) -> Result<(), DbError> {
        let conn = db::connect(&self.db, db::Mode::Write)?;
        conn.execute(
            "INSERT INTO dead_letters (received_ms, topic, agent, seq, code, reason, payload)
             VALUES ($1, $2, NULL, NULL, $3, $4, $5)",
            args![
                spotcheck_protocol::UnixMillis::now().0,
                format!("sink {}", self.target),
                format!("sink_http_{status}"),
                reason,
                lines.as_bytes(),
            ],
        )?;
        Ok(())
    }
}

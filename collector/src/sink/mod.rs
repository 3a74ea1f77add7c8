//! The time-series sink: every committed reading, and event counts per kind, written to a
//! time-series store through the InfluxDB line-protocol write API (v2 `/api/v2/write`, or v1
//! `/write?db=`). Design and guarantees: docs/tsdb.md.
//!
//! - [`config`]: the `sink` section of the configuration.
//! - [`cursor`]: where the sink stands, in `DATA/sink.db`.
//! - [`source`]: reads what ingest committed after the cursor (its own read-only connection)
//!   and writes line protocol ([`line`]; event records: [`events`]).
//! - [`client`]: one HTTP write and what its answer means; [`backoff`]: how long to wait.
//!
//! It runs on a thread of its own and never touches ingest's queues: ingest does not know it
//! exists. Delivery is at least once: the cursor moves only after the server accepted (or
//! definitively refused) a batch, and a point sent twice overwrites itself (same series and
//! timestamp).

pub mod backoff;
pub mod client;
pub mod config;
pub mod cursor;
pub mod events;
pub mod line;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use rusqlite::params;
use tracing::{error, info, warn};

use crate::telemetry::SinkStats;
use backoff::Backoff;
use client::{Client, Outcome};
use config::SinkConfig;
use cursor::{Cursor, CursorStore};
use source::{Batch, Source};

/// On shutdown, how long the sink keeps delivering what is already committed (retrying, if
/// the server fails, within this time).
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// Why the sink did not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The cursor file could not be opened.
    #[error("sink cursor file {path}: {source}")]
    Cursor {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The store could not be opened for reading.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The thread could not be started.
    #[error("cannot start the sink thread: {0}")]
    Thread(std::io::Error),
}

/// A running sink. Dropping it without [`Sink::stop`] detaches the thread.
pub struct Sink {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Opens the cursor and the store and starts the sink's thread.
    pub fn start(config: SinkConfig, data_dir: &Path, stats: SinkStats) -> Result<Sink, SinkError> {
        let path = data_dir.join("sink.db");
        let (cursors, cursor) =
            CursorStore::open(&path, &config.target).map_err(|source| SinkError::Cursor {
                path: path.clone(),
                source,
            })?;
        let db = crate::store::db_path(data_dir);
        let source = Source::open(&db)?;
        let (stop_tx, stop_rx) = mpsc::channel();
        info!(message = "Time-series sink started.", target = %config.target, chunk = cursor.chunk, event = cursor.event);
        let runner = Runner {
            client: Client::new(&config),
            backoff: Backoff::new(config.max_backoff),
            config,
            source,
            cursors,
            cursor,
            db,
            stats,
            stop: stop_rx,
            draining: None,
        };
        let thread = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || runner.run())
            .map_err(SinkError::Thread)?;
        Ok(Sink {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Delivers what is committed (for up to 10 s), then stops. Blocks: call it from a
    /// blocking context.
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Runner {
    config: SinkConfig,
    client: Client,
    backoff: Backoff,
    source: Source,
    cursors: CursorStore,
    cursor: Cursor,
    db: PathBuf,
    stats: SinkStats,
    stop: mpsc::Receiver<()>,
    /// Set once stop was asked: deliver until caught up or this instant.
    draining: Option<Instant>,
}

/// Readings and events committed but not delivered, as far as the sink has looked.
#[derive(Debug, Clone, Copy, Default)]
struct Backlog {
    seen: Cursor,
    readings: u64,
    events: u64,
}

impl Backlog {
    fn total(&self) -> u64 {
        self.readings + self.events
    }
}

impl Runner {
    /// Waits up to `d`; true when the sink should stop now (draining and out of time).
    fn wait(&mut self, d: Duration) -> bool {
        if let Some(until) = self.draining {
            let now = Instant::now();
            std::thread::sleep(d.min(until.saturating_duration_since(now)));
            return Instant::now() >= until;
        }
        match self.stop.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => false,
            _ => {
                self.draining = Some(Instant::now() + DRAIN_FOR);
                false
            }
        }
    }

    fn run(mut self) {
        let mut backlog = Backlog {
            seen: self.cursor,
            ..Backlog::default()
        };
        let mut last_flush = Instant::now();
        loop {
            if let Err(e) = self.look(&mut backlog) {
                error!(message = "Sink cannot read the store; retrying.", error = %e);
                if self.wait(Duration::from_secs(1)) {
                    break;
                }
                continue;
            }
            if let Some(until) = self.draining {
                if backlog.total() == 0 || Instant::now() >= until {
                    break;
                }
            }
            let due = backlog.total() >= self.config.batch_points as u64
                || (backlog.total() > 0
                    && (self.draining.is_some()
                        || last_flush.elapsed() >= self.config.flush_interval));
            if !due {
                let left = self
                    .config
                    .flush_interval
                    .saturating_sub(last_flush.elapsed());
                let nap = if backlog.total() == 0 {
                    self.config.flush_interval
                } else {
                    left
                };
                if self.wait(nap.max(Duration::from_millis(1))) && backlog.total() == 0 {
                    break;
                }
                continue;
            }
            let batch = match self.source.read(
                self.cursor,
                backlog.seen,
                self.config.batch_points,
                self.config.precision,
            ) {
                Ok(b) => b,
                Err(e) => {
                    error!(message = "Sink cannot read the store; retrying.", error = %e);
                    if self.wait(Duration::from_secs(1)) {
                        break;
                    }
                    continue;
                }
            };
            if !self.deliver(&batch) {
                break;
            }
            self.advance(&batch, &mut backlog);
            last_flush = Instant::now();
        }
        info!(
            message = "Time-series sink stopped.",
            backlog = backlog.total()
        );
    }

    /// Updates the backlog from what was committed since the last look, applies its bound
    /// and sets the gauges.
    fn look(&mut self, backlog: &mut Backlog) -> Result<(), source::SourceError> {
        let g = self.source.growth(backlog.seen)?;
        backlog.seen = Cursor {
            chunk: g.max_chunk,
            event: g.max_event,
        };
        backlog.readings += g.readings;
        backlog.events += g.events;
        let bound = self.config.backlog_max_points;
        if backlog.readings > bound || backlog.events > bound {
            let (to, readings, events) =
                self.source
                    .skip_to_bound(self.cursor, backlog.readings, backlog.events, bound)?;
            warn!(
                message = "Sink backlog over its bound; the oldest readings are skipped (they stay in the store).",
                readings, events, bound
            );
            self.stats.points_skipped.inc_by(readings + events);
            backlog.readings -= readings.min(backlog.readings);
            backlog.events -= events.min(backlog.events);
            self.cursor = to;
            self.save();
        }
        self.stats.backlog.set(backlog.total() as i64);
        let lag = match self.source.oldest_waiting_ms(self.cursor)? {
            Some(received) => (spotcheck_protocol::UnixMillis::now().0 - received).max(0) / 1000,
            None => 0,
        };
        self.stats.lag_seconds.set(lag);
        Ok(())
    }

    /// Sends a batch until the server takes or refuses it; false if the sink must stop first.
    fn deliver(&mut self, batch: &Batch) -> bool {
        if batch.points == 0 {
            return true;
        }
        loop {
            match self.client.write(&batch.body) {
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

    fn dead_letter(&self, status: u16, reason: &str, lines: &str) -> Result<(), rusqlite::Error> {
        let conn = rusqlite::Connection::open(&self.db)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute(
            "INSERT INTO dead_letters (received_ms, topic, agent, seq, code, reason, payload)
             VALUES (?1, ?2, NULL, NULL, ?3, ?4, ?5)",
            params![
                spotcheck_protocol::UnixMillis::now().0,
                format!("sink {}", self.config.target),
                format!("sink_http_{status}"),
                reason,
                lines.as_bytes(),
            ],
        )?;
        Ok(())
    }

    fn advance(&mut self, batch: &Batch, backlog: &mut Backlog) {
        if batch.refused > 0 {
            warn!(
                message = "Readings or event records that line protocol cannot carry were skipped.",
                count = batch.refused
            );
            self.stats.points_skipped.inc_by(batch.refused);
        }
        self.cursor = batch.next;
        backlog.readings -= batch.readings.min(backlog.readings);
        backlog.events -= batch.events.min(backlog.events);
        self.stats.backlog.set(backlog.total() as i64);
        self.save();
    }

    fn save(&mut self) {
        if let Err(e) = self
            .cursors
            .save(self.cursor, spotcheck_protocol::UnixMillis::now().0)
        {
            // Not fatal: the points after the last saved cursor are sent again after a restart.
            error!(message = "Cannot save the sink's cursor.", error = %e);
        }
    }
}

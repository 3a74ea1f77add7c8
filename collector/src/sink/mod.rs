//! The time-series sink: every committed reading, and event counts per kind, written to a
//! time-series store through the InfluxDB line-protocol write API (v2 `/api/v2/write`, or v1
//! `/write?db=`). Design and guarantees: docs/tsdb.md.
//!
//! - [`config`]: the `sink` section of the configuration.
//! - [`cursor`]: where the sink stands, in the store (`sink_cursors`).
//! - [`source`]: reads what ingest committed after the cursor (its own read-only connection)
//!   and writes line protocol ([`line`]; event records: [`events`]).
//! - [`send`]: the second thread, which posts the encoded batches in order while the first
//!   reads and encodes the next (one batch in flight, one ready: bounded).
//! - [`client`]: one HTTP write and what its answer means; [`backoff`]: how long to wait.
//!
//! It runs on threads of its own and never touches ingest's queues: ingest does not know it
//! exists. Delivery is at least once: the cursor moves only after the server accepted (or
//! definitively refused) a batch, and a point sent twice overwrites itself (same series and
//! timestamp). With several collectors on one store it runs on the leader only
//! (store/leader.rs): started when this collector gains the leadership, stopped at once
//! ([`Sink::abandon`]) when it loses it, and its cursor's saves are fenced.

pub mod backoff;
pub mod client;
pub mod config;
pub mod cursor;
pub mod events;
pub mod line;
pub mod send;
pub mod source;

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::store::leader::Lead;
use crate::telemetry::SinkStats;
use backoff::Backoff;
use client::Client;
use config::SinkConfig;
use cursor::{Cursor, CursorStore};
use send::{Deadline, Outgoing, Poster};
use source::{Batch, Source};

/// On shutdown, how long the sink keeps delivering what is already committed (retrying, if
/// the server fails, within this time).
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// The default niceness of the sink's threads (`sink.nice`; Linux: 0 is normal, 19 the
/// lowest priority).
pub const SINK_NICE: i32 = 10;

/// The cursor is saved at most this often (and when the sink stops): on SQLite each save
/// takes the store's write lock for a moment, which ingest's commits then wait for. A crash
/// sends at most this much again (points are idempotent).
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// [`yield_to_ingest_at`] the default niceness, [`SINK_NICE`].
pub fn yield_to_ingest() {
    yield_to_ingest_at(SINK_NICE);
}

/// Lowers the calling thread's CPU priority to `nice` (`sink.nice`), so the sink yields the
/// CPU to ingest. When ingest, the sink and perhaps the time-series server share the cores, a
/// burst of readings is then committed at full speed and the sink catches up after it (its lag
/// is in `/metrics`); on an idle core a nice thread runs as fast as any. Linux sets niceness
/// per thread; elsewhere this does nothing, as it would renice the whole process.
pub fn yield_to_ingest_at(nice: i32) {
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id.
        let r = unsafe {
            let me = libc::gettid() as libc::id_t;
            // Never raise it: a collector started nicer than this stays so (and raising
            // would need privileges).
            let now = libc::getpriority(libc::PRIO_PROCESS, me);
            libc::setpriority(libc::PRIO_PROCESS, me, nice.max(now))
        };
        if r != 0 {
            warn!(message = "Could not lower the sink thread's priority; it competes with ingest for the CPU.", error = %std::io::Error::last_os_error());
        }
    }
}

/// Why the sink did not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The cursor could not be read from the store (or moved there from its old file).
    #[error(transparent)]
    Cursor(#[from] cursor::CursorError),
    /// The store could not be opened for reading.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The thread could not be started.
    #[error("cannot start the sink thread: {0}")]
    Thread(std::io::Error),
}

/// How the sink is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Deliver what is committed (for up to [`DRAIN_FOR`]), save the cursor, stop.
    Drain,
    /// Stop now: this collector no longer leads, and the new leader continues from the
    /// cursor in the store.
    Now,
}

/// A running sink. Dropping it without [`Sink::stop`] detaches the thread.
pub struct Sink {
    stop: Option<mpsc::Sender<Stop>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Opens the cursor and the store and starts the sink's thread, for the SQLite store in
    /// `data_dir` ([`Sink::start_url`] for any store).
    pub fn start(config: SinkConfig, data_dir: &Path, stats: SinkStats) -> Result<Sink, SinkError> {
        let url = crate::store::db::DbUrl::Sqlite(crate::store::db_path(data_dir));
        Sink::start_url(config, data_dir, &url, stats)
    }

    /// Opens the cursor and the store at `url` and starts the sink's thread, as the only
    /// collector of its store (SQLite; [`Sink::start_led`] with several).
    pub fn start_url(
        config: SinkConfig,
        data_dir: &Path,
        url: &crate::store::db::DbUrl,
        stats: SinkStats,
    ) -> Result<Sink, SinkError> {
        Sink::start_led(config, data_dir, url, stats, Lead::sole())
    }

    /// Opens the cursor in the store at `url` (moving an earlier build's `sink.db` from
    /// `data_dir` into it) and starts the sink's threads, as the leader `lead`: the cursor is
    /// saved only while it leads.
    pub fn start_led(
        config: SinkConfig,
        data_dir: &Path,
        url: &crate::store::db::DbUrl,
        stats: SinkStats,
        lead: Lead,
    ) -> Result<Sink, SinkError> {
        let (cursors, cursor) = CursorStore::open(url, data_dir, &config.target, lead)?;
        let source = Source::open_url(url)?;
        let (stop_tx, stop_rx) = mpsc::channel();
        info!(message = "Time-series sink started.", target = %config.target, chunk = cursor.chunk, event = cursor.event);
        let deadline = Deadline::default();
        // One batch waits while one is in flight: the reader encodes ahead by one.
        let (out_tx, out_rx) = mpsc::sync_channel::<Outgoing>(1);
        let (done_tx, done_rx) = mpsc::channel::<Batch>();
        let poster = Poster {
            client: Client::new(&config),
            backoff: Backoff::new(config.max_backoff),
            stats: stats.clone(),
            db: url.clone(),
            target: config.target.to_string(),
            deadline: deadline.clone(),
        };
        let nice = config.nice;
        let poster = std::thread::Builder::new()
            .name("sink-post".into())
            .spawn(move || {
                yield_to_ingest_at(nice);
                poster.run(out_rx, done_tx)
            })
            .map_err(SinkError::Thread)?;
        let runner = Runner {
            encoder: Client::new(&config),
            config,
            source,
            cursors,
            read_from: cursor,
            cursor,
            saved: (cursor, Instant::now()),
            deposed: false,
            stats,
            stop: stop_rx,
            draining: None,
            deadline,
            out: Some(out_tx),
            done: done_rx,
            in_flight: Backlog::default(),
            poster: Some(poster),
        };
        let thread = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                yield_to_ingest_at(nice);
                runner.run()
            })
            .map_err(SinkError::Thread)?;
        Ok(Sink {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Delivers what is committed (for up to 10 s), saves the cursor, then stops. Blocks:
    /// call it from a blocking context.
    pub fn stop(self) {
        self.end(Stop::Drain);
    }

    /// Stops without delivering more: this collector lost the leadership. The batch being
    /// posted ends with its current attempt; the cursor is left to the new leader (a save
    /// would be refused by the fence anyway). Blocks: call it from a blocking context.
    pub fn abandon(self) {
        self.end(Stop::Now);
    }

    fn end(mut self, how: Stop) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(how);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reading side: watches the store, reads and encodes batches after `read_from`, hands
/// them to the poster, and moves the saved cursor as the poster reports them delivered.
struct Runner {
    config: SinkConfig,
    /// Encodes (gzips) bodies; the poster has its own client for the requests.
    encoder: Client,
    source: Source,
    cursors: CursorStore,
    /// Where the next read starts: after everything handed to the poster.
    read_from: Cursor,
    /// Where the server has everything before (saved at most every [`SAVE_EVERY`]).
    cursor: Cursor,
    /// The cursor last saved, and when.
    saved: (Cursor, Instant),
    /// Set when this collector no longer leads: stop at once, save nothing.
    deposed: bool,
    stats: SinkStats,
    stop: mpsc::Receiver<Stop>,
    /// Set once stop was asked: deliver until caught up or this instant.
    draining: Option<Instant>,
    /// The same instant, for the poster's retries.
    deadline: Deadline,
    out: Option<mpsc::SyncSender<Outgoing>>,
    done: mpsc::Receiver<Batch>,
    /// Readings and events handed to the poster and not yet reported delivered.
    in_flight: Backlog,
    poster: Option<JoinHandle<()>>,
}

/// Readings and events committed but not yet read, as far as the sink has looked.
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
    /// Waits up to `d`; true when the sink should stop now (draining and out of time, or
    /// deposed).
    fn wait(&mut self, d: Duration) -> bool {
        if self.deposed {
            return true;
        }
        if let Some(until) = self.draining {
            let now = Instant::now();
            std::thread::sleep(d.min(until.saturating_duration_since(now)));
            return Instant::now() >= until;
        }
        match self.stop.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(Stop::Now) => {
                self.depose();
                true
            }
            _ => {
                let until = Instant::now() + DRAIN_FOR;
                self.draining = Some(until);
                *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
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
            if !self.collect() || self.deposed {
                break;
            }
            // A sink that caught up saves its last cursor too, a second later at most.
            if self.saved.1.elapsed() >= SAVE_EVERY {
                self.save();
            }
            if let Err(e) = self.look(&mut backlog) {
                error!(message = "Sink cannot read the store; retrying.", error = %e);
                if self.wait(Duration::from_secs(1)) {
                    break;
                }
                continue;
            }
            if let Some(until) = self.draining {
                let idle = backlog.total() == 0 && self.in_flight.total() == 0;
                if idle || Instant::now() >= until {
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
                let mut nap = if backlog.total() == 0 {
                    self.config.flush_interval
                } else {
                    left
                };
                if self.in_flight.total() > 0 {
                    // Come back soon to move the cursor once the poster reports.
                    nap = nap.min(Duration::from_millis(20));
                }
                if self.wait(nap.max(Duration::from_millis(1)))
                    && backlog.total() == 0
                    && self.in_flight.total() == 0
                {
                    break;
                }
                continue;
            }
            let batch = match self.source.read(
                self.read_from,
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
            self.read_from = batch.next;
            backlog.readings -= batch.readings.min(backlog.readings);
            backlog.events -= batch.events.min(backlog.events);
            if !self.hand_over(batch) {
                break;
            }
            last_flush = Instant::now();
        }
        // Let the poster finish what it holds (within the drain), then record it.
        drop(self.out.take());
        if let Some(poster) = self.poster.take() {
            let _ = poster.join();
        }
        self.collect();
        if !self.deposed {
            self.save();
        }
        info!(
            message = "Time-series sink stopped.",
            backlog = backlog.total() + self.in_flight.total()
        );
    }

    /// Encodes a batch and gives it to the poster, waiting while it holds one in flight and
    /// one ready; false if the sink must stop first.
    fn hand_over(&mut self, batch: Batch) -> bool {
        self.in_flight.readings += batch.readings;
        self.in_flight.events += batch.events;
        let gzipped = if batch.points > 0 {
            self.encoder.encode(&batch.body)
        } else {
            None
        };
        let mut out = Outgoing { batch, gzipped };
        loop {
            let Some(tx) = &self.out else { return false };
            match tx.try_send(out) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(o)) => {
                    out = o;
                    if !self.collect() || self.wait(Duration::from_millis(5)) {
                        return false;
                    }
                }
            }
        }
    }

    /// Moves the cursor past every batch the poster reported; false once the poster is gone
    /// (it stops only when the drain ran out).
    fn collect(&mut self) -> bool {
        loop {
            match self.done.try_recv() {
                Ok(batch) => self.advance(&batch),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return self.out.is_none(),
            }
        }
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
            let (to, readings, events) = self.source.skip_to_bound(
                self.read_from,
                backlog.readings,
                backlog.events,
                bound,
            )?;
            warn!(
                message = "Sink backlog over its bound; the oldest readings are skipped (they stay in the store).",
                readings, events, bound
            );
            self.stats.points_skipped.inc_by(readings + events);
            backlog.readings -= readings.min(backlog.readings);
            backlog.events -= events.min(backlog.events);
            self.read_from = to;
            // The skip goes through the poster like a batch, so the cursor passes it in order.
            let skip = Batch {
                next: to,
                ..Batch::default()
            };
            if !self.hand_over(skip) {
                return Ok(());
            }
        }
        self.stats
            .backlog
            .set((backlog.total() + self.in_flight.total()) as i64);
        let lag = match self.source.oldest_waiting_ms(self.cursor)? {
            Some(received) => (spotcheck_protocol::UnixMillis::now().0 - received).max(0) / 1000,
            None => 0,
        };
        self.stats.lag_seconds.set(lag);
        Ok(())
    }

    fn advance(&mut self, batch: &Batch) {
        if batch.refused > 0 {
            warn!(
                message = "Readings or event records that line protocol cannot carry were skipped.",
                count = batch.refused
            );
            self.stats.points_skipped.inc_by(batch.refused);
        }
        self.cursor = batch.next;
        self.in_flight.readings -= batch.readings.min(self.in_flight.readings);
        self.in_flight.events -= batch.events.min(self.in_flight.events);
        if self.saved.1.elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    /// Saves the cursor if it moved since the last save.
    fn save(&mut self) {
        if self.deposed || self.saved.0 == self.cursor {
            return;
        }
        match self
            .cursors
            .save(self.cursor, spotcheck_protocol::UnixMillis::now().0)
        {
            Ok(true) => self.saved = (self.cursor, Instant::now()),
            Ok(false) => {
                warn!(message = "The sink's cursor was not saved: this collector no longer leads. The sink stops; the new leader continues from the saved cursor.");
                self.depose();
            }
            // Not fatal: the points after the last saved cursor are sent again after a restart
            // (or by the next leader).
            Err(e) => error!(message = "Cannot save the sink's cursor.", error = %e),
        }
    }

    /// Stops at once: no more reads, the poster ends its current attempt, nothing is saved.
    fn depose(&mut self) {
        self.deposed = true;
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sink_thread_runs_at_the_sinks_niceness_and_others_do_not() {
        // SAFETY: plain system calls on the calling thread's own id.
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = nice();
        let sink = std::thread::spawn(move || {
            super::yield_to_ingest();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(sink, super::SINK_NICE.max(before));
        assert_eq!(nice(), before, "only the sink's own thread is reniced");
        // `sink.nice` sets it; it is never raised above what the thread had.
        let lower = std::thread::spawn(move || {
            super::yield_to_ingest_at(15);
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lower, 15.max(before));
        let normal = std::thread::spawn(move || {
            super::yield_to_ingest_at(0);
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(normal, before);
    }
}

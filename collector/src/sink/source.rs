//! Reads what ingest has committed, after the sink's cursor, through a read-only connection of
//! its own, and turns it into line protocol (series design: docs/tsdb.md).
//!
//! The cursor is a pair of row ids, and "everything after it" must be everything not yet
//! delivered. On SQLite that holds by itself: one writer, and a row's id is larger than every
//! id committed before it. On PostgreSQL it does not: identity values are handed out when
//! rows are inserted, not when they commit, so with several collectors (or one commit slower
//! than the next) row 10 can commit after row 11 has been read, and a cursor past 11 would
//! never see it. So on PostgreSQL the sink reads only up to a *watermark* ([`Watermark`]):
//! an id below which every transaction that could hold one has ended. docs/tsdb.md and
//! docs/storage.md describe it.

use std::collections::HashMap;
use std::path::Path;

use super::cursor::Cursor;
use super::events;
use super::line::{self, Field, Precision};
use crate::rules::Calendar;
use crate::store::chunk;
use crate::store::db::{self, args, Backend, Conn, DbError, DbUrl, Sql};

/// What could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store failed.
    #[error("reading the store: {0}")]
    Db(#[from] DbError),
    /// A stored chunk is damaged or from a newer build.
    #[error(transparent)]
    Chunk(#[from] chunk::ChunkError),
}

/// One request's worth of points.
#[derive(Debug, Default)]
pub struct Batch {
    /// Line protocol, one point a line.
    pub body: String,
    /// Lines in `body`.
    pub points: u64,
    /// Readings consumed from the store (lines plus any refused by the encoder).
    pub readings: u64,
    /// Event rows consumed.
    pub events: u64,
    /// Readings or event records the encoder refused.
    pub refused: u64,
    /// The cursor once this batch is delivered.
    pub next: Cursor,
}

/// How much arrived after a point in the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Growth {
    /// The newest chunk rowid.
    pub max_chunk: i64,
    /// Readings in the chunks after the old maximum.
    pub readings: u64,
    /// The newest event rowid.
    pub max_event: i64,
    /// Event rows after the old maximum.
    pub events: u64,
}

/// Names of the store's integer ids, and the series keys already escaped.
#[derive(Default)]
struct Names {
    /// entity id → (credit code, domain)
    entities: HashMap<i64, (String, String)>,
    /// metric id → (name, unit)
    metrics: HashMap<i64, (String, String)>,
    /// agent id → name
    agents: HashMap<i64, String>,
    /// domain → (department, item) from the item list (the item whose rule pack is the
    /// domain's); `unassigned` when the list has none, as for anomaly tasks.
    domains: HashMap<String, (String, String)>,
    /// (entity, metric, agent) → series key; `None` if it cannot be encoded.
    series: HashMap<(i64, i64, i64), Option<String>>,
}

/// On PostgreSQL, the row ids up to which the sink may read: every transaction that could
/// hold an id up to them has ended (committed or rolled back), so no row at or below them can
/// appear later.
///
/// How it is known without locking ingest: a transaction that writes readings takes its
/// transaction id when it begins (`Conn::transaction_concurrent`), before any row id. The
/// sink reads the identity sequences' last values `L` and then a snapshot (`xmin`, `xmax`):
/// every transaction that took an id up to `L` had its transaction id before the snapshot,
/// so it is below `xmax`. Once a later snapshot's `xmin` (the oldest transaction still
/// running) is at least that `xmax`, all of them have ended and `L` is final. When nothing
/// is running at all (`xmin = xmax`), `L` is final at once. A transaction that stays open
/// anywhere in the cluster (one holding a transaction id) holds the watermark back until it
/// ends: the sink then waits, it never skips.
#[derive(Debug, Default, Clone, Copy)]
pub struct Watermark {
    /// Row ids up to these are final.
    pub safe: Cursor,
    /// Row ids that become final once the oldest running transaction is at least `.1`.
    pending: Option<(Cursor, i64)>,
}

impl Watermark {
    /// Looks again; returns the row ids up to which reading is safe now.
    pub fn advance(&mut self, conn: &(impl Sql + ?Sized)) -> Result<Cursor, DbError> {
        // The sequences first, the snapshot after: see the type's docs.
        let last = conn.query_row(
            "SELECT coalesce(pg_sequence_last_value(CAST(pg_get_serial_sequence('reading_chunks', 'rowid') AS regclass)), 0),
                    coalesce(pg_sequence_last_value(CAST(pg_get_serial_sequence('events', 'rowid') AS regclass)), 0)",
            args![],
            |r| {
                Ok(Cursor {
                    chunk: r.get(0)?,
                    event: r.get(1)?,
                })
            },
        )?;
        let (xmin, xmax): (i64, i64) = conn.query_row(
            "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT),
                    CAST(CAST(pg_snapshot_xmax(pg_current_snapshot()) AS TEXT) AS BIGINT)",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some((candidate, needs)) = self.pending {
            if xmin >= needs {
                self.safe = max(self.safe, candidate);
                self.pending = None;
            }
        }
        if xmin >= xmax {
            self.safe = max(self.safe, last);
            self.pending = None;
        } else if self.pending.is_none() {
            self.pending = Some((last, xmax));
        }
        Ok(self.safe)
    }
}

fn max(a: Cursor, b: Cursor) -> Cursor {
    Cursor {
        chunk: a.chunk.max(b.chunk),
        event: a.event.max(b.event),
    }
}

/// The store, read after a cursor.
pub struct Source {
    conn: Conn,
    /// On PostgreSQL: how far reading is safe.
    watermark: Option<Watermark>,
    names: Names,
    calendar: Calendar,
    value_key: String,
    quality_key: String,
}

impl Source {
    /// A read-only connection to the SQLite database at `db`.
    pub fn open(db: &Path) -> Result<Source, crate::store::StoreError> {
        let conn = Conn::from_sqlite(crate::store::open_for_reading(db)?);
        Ok(Source::with(conn))
    }

    /// A read-only connection to the database at `url`, either engine.
    pub fn open_url(url: &DbUrl) -> Result<Source, crate::store::StoreError> {
        let conn = db::connect(url, db::Mode::Read)?;
        Ok(Source::with(conn))
    }

    fn with(conn: Conn) -> Source {
        let watermark = (conn.backend() == Backend::Postgres).then(Watermark::default);
        Source {
            conn,
            watermark,
            names: Names::default(),
            calendar: Calendar::china_default(),
            value_key: line::field_key("value").expect("a plain key"),
            quality_key: line::field_key("quality").expect("a plain key"),
        }
    }

    /// What was committed after `after` (rowids), up to what is safe to read (on PostgreSQL,
    /// the [`Watermark`]): the new maxima and how many readings and events they add. Cheap: a
    /// range scan from the previous maximum.
    pub fn growth(&mut self, after: Cursor) -> Result<Growth, SourceError> {
        let upto = match &mut self.watermark {
            None => Cursor {
                chunk: i64::MAX,
                event: i64::MAX,
            },
            Some(w) => w.advance(&self.conn)?,
        };
        let (max_chunk, readings) = self.conn.query_row(
            "SELECT coalesce(max(rowid), $1), CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks
             WHERE rowid > $1 AND rowid <= $2",
            args![after.chunk, upto.chunk],
            |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
        )?;
        let (max_event, events) = self.conn.query_row(
            "SELECT coalesce(max(rowid), $1), count(*) FROM events WHERE rowid > $1 AND rowid <= $2",
            args![after.event, upto.event],
            |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
        )?;
        Ok(Growth {
            max_chunk,
            readings: readings as u64,
            max_event,
            events: events as u64,
        })
    }

    /// How long ago (ms) the oldest batch not yet delivered was received; `None` when nothing
    /// waits.
    pub fn oldest_waiting_ms(&self, after: Cursor) -> Result<Option<i64>, SourceError> {
        let chunk: Option<i64> = self.conn.query_opt(
            "SELECT b.received_ms FROM reading_chunks c JOIN batches b ON b.agent = c.agent AND b.seq = c.seq
             WHERE c.rowid > $1 ORDER BY c.rowid LIMIT 1",
            args![after.chunk],
            |r| r.get(0),
        )?;
        let event: Option<i64> = self.conn.query_opt(
            "SELECT b.received_ms FROM events e JOIN batches b ON b.agent = e.agent AND b.seq = e.seq
             WHERE e.rowid > $1 ORDER BY e.rowid LIMIT 1",
            args![after.event],
            |r| r.get(0),
        )?;
        Ok(match (chunk, event) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Moves `from` past the oldest rows until at most `keep` readings (and `keep` events)
    /// remain after it; returns the new cursor and the readings and events passed over.
    pub fn skip_to_bound(
        &self,
        from: Cursor,
        waiting_readings: u64,
        waiting_events: u64,
        keep: u64,
    ) -> Result<(Cursor, u64, u64), SourceError> {
        let mut to = from;
        let mut skipped = (0, 0);
        if waiting_readings > keep {
            let excess = waiting_readings - keep;
            // Read in pages: the waiting rows can be many.
            let mut after = from.chunk;
            'pages: while skipped.0 < excess {
                let page: Vec<(i64, i64)> = self.conn.query(
                    "SELECT rowid, n FROM reading_chunks WHERE rowid > $1 ORDER BY rowid LIMIT 1000",
                    args![after],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if page.is_empty() {
                    break;
                }
                for (rowid, n) in page {
                    if skipped.0 >= excess {
                        break 'pages;
                    }
                    to.chunk = rowid;
                    after = rowid;
                    skipped.0 += n as u64;
                }
            }
        }
        if waiting_events > keep {
            let excess = (waiting_events - keep) as i64;
            if let Some(rowid) = self.conn.query_opt(
                "SELECT rowid FROM events WHERE rowid > $1 ORDER BY rowid LIMIT 1 OFFSET $2",
                args![from.event, excess - 1],
                |r| r.get::<i64>(0),
            )? {
                to.event = rowid;
                skipped.1 = excess as u64;
            }
        }
        Ok((to, skipped.0, skipped.1))
    }

    fn refresh_names(&mut self) -> Result<(), SourceError> {
        let n = &mut self.names;
        n.entities = self
            .conn
            .query("SELECT id, name, domain FROM entities", args![], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })?
            .into_iter()
            .collect();
        n.metrics = self
            .conn
            .query("SELECT id, name, unit FROM metrics", args![], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })?
            .into_iter()
            .collect();
        n.agents = self
            .conn
            .query("SELECT id, name FROM agents", args![], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .into_iter()
            .collect();
        let listed: Vec<(String, String, String)> = self.conn.query(
            "SELECT rule_pack, department, id FROM registry_items WHERE rule_pack IS NOT NULL ORDER BY id",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        n.domains.clear();
        for domain in spotcheck_protocol::Domain::ALL {
            let dept = crate::tasks::anomaly::UNASSIGNED.to_owned();
            n.domains.insert(domain.to_string(), (dept, String::new()));
        }
        for (pack, dept, item) in listed {
            let slot = n.domains.entry(pack).or_default();
            if slot.1.is_empty() {
                *slot = (dept, item);
            }
        }
        n.series.clear();
        Ok(())
    }

    /// The escaped series key of a chunk's readings, refreshing the names once on a miss.
    fn series(
        &mut self,
        entity: i64,
        metric: i64,
        agent: i64,
    ) -> Result<Option<&str>, SourceError> {
        let key = (entity, metric, agent);
        if !self.names.series.contains_key(&key) {
            if !(self.names.entities.contains_key(&entity)
                && self.names.metrics.contains_key(&metric)
                && self.names.agents.contains_key(&agent))
            {
                self.refresh_names()?;
            }
            let n = &self.names;
            let encoded = match (
                n.entities.get(&entity),
                n.metrics.get(&metric),
                n.agents.get(&agent),
            ) {
                (Some((code, domain)), Some((name, unit)), Some(agent_name)) => {
                    let (dept, item) = n.domains.get(domain).cloned().unwrap_or_default();
                    line::series_key(
                        domain,
                        &[
                            ("agent", agent_name),
                            ("department", &dept),
                            ("entity", code),
                            ("item", &item),
                            ("metric", name),
                            ("unit", unit),
                        ],
                    )
                    .map_err(|e| tracing::warn!(message = "Series cannot be written as line protocol; its readings are skipped.", error = %e))
                    .ok()
                }
                _ => None,
            };
            self.names.series.insert(key, encoded);
        }
        Ok(self.names.series[&key].as_deref())
    }

    /// Reads chunks after `from.chunk` (up to `upto.chunk`) until about `max_points` readings
    /// (never splitting a chunk), then, if room is left, events after `from.event` (up to
    /// `upto.event`). The upper bounds keep the backlog's accounting exact: the sink counts
    /// what it has seen and delivers only that.
    pub fn read(
        &mut self,
        from: Cursor,
        upto: Cursor,
        max_points: usize,
        precision: Precision,
    ) -> Result<Batch, SourceError> {
        let mut batch = Batch {
            next: from,
            ..Batch::default()
        };
        let rows: Vec<(i64, i64, i64, i64, Vec<u8>)> = {
            // At most `max_points` chunks (each holds one reading or more), read in pages so
            // that a page of big chunks stops the read early.
            let mut out = Vec::new();
            let mut readings = 0usize;
            let mut after = from.chunk;
            let page = max_points.clamp(1, 1024) as i64;
            'pages: while readings < max_points {
                let got: Vec<(i64, i64, i64, i64, Vec<u8>)> = self.conn.query(
                    "SELECT rowid, entity, metric, agent, data FROM reading_chunks
                     WHERE rowid > $1 AND rowid <= $3 ORDER BY rowid LIMIT $2",
                    args![after, page, upto.chunk],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
                if got.is_empty() {
                    break;
                }
                for row in got {
                    if readings >= max_points {
                        break 'pages;
                    }
                    readings += chunk::runs(&row.4, 0)?
                        .iter()
                        .map(|r| r.n as usize)
                        .sum::<usize>();
                    after = row.0;
                    out.push(row);
                }
            }
            out
        };
        for (rowid, entity, metric, agent, data) in rows {
            let samples = chunk::decode(&data)?;
            batch.readings += samples.len() as u64;
            batch.next.chunk = rowid;
            let (value_key, quality_key) = (self.value_key.clone(), self.quality_key.clone());
            let Some(series) = self.series(entity, metric, agent)? else {
                batch.refused += samples.len() as u64;
                continue;
            };
            for s in samples {
                let quality = match s.quality {
                    spotcheck_protocol::Quality::Good => 0,
                    spotcheck_protocol::Quality::Uncertain => 1,
                    spotcheck_protocol::Quality::Bad => 2,
                };
                let fields = [
                    (value_key.as_str(), Field::Float(s.value)),
                    (quality_key.as_str(), Field::Int(quality)),
                ];
                match line::push_line(&mut batch.body, series, &fields, s.ts.0, precision) {
                    Ok(()) => batch.points += 1,
                    Err(_) => batch.refused += 1,
                }
            }
        }
        let room = max_points.saturating_sub(batch.readings as usize);
        if room > 0 {
            self.read_events(&mut batch, from, upto, room, precision)?;
        }
        Ok(batch)
    }

    /// Event rows after the cursor, one point each (see [`events`]).
    fn read_events(
        &mut self,
        batch: &mut Batch,
        from: Cursor,
        upto: Cursor,
        room: usize,
        precision: Precision,
    ) -> Result<(), SourceError> {
        type Row = (i64, i64, i64, String, i64, String);
        let rows: Vec<Row> = self.conn.query(
            "SELECT rowid, entity, agent, kind, ts_ms, body FROM events WHERE rowid > $1 AND rowid <= $3 ORDER BY rowid LIMIT $2",
            args![from.event, room as i64, upto.event],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
        if rows.iter().any(|(_, e, a, ..)| {
            !self.names.entities.contains_key(e) || !self.names.agents.contains_key(a)
        }) {
            self.refresh_names()?;
        }
        for (rowid, entity, agent, kind, ts_ms, body) in rows {
            batch.next.event = rowid;
            batch.events += 1;
            // Records of one kind from one agent in the same millisecond: the later ones (by
            // rowid, which never changes) move 1 ms on each, so every record stays a point.
            let same_ms: i64 = self.conn.query_row(
                "SELECT count(*) FROM events WHERE entity = $1 AND kind = $2 AND ts_ms = $3 AND agent = $4 AND rowid < $5",
                args![entity, kind, ts_ms, agent, rowid],
                |r| r.get(0),
            )?;
            let names = events::field_names(&kind);
            let mut fields = vec![0i64; names.len()];
            match serde_json::from_str(&body) {
                Ok(ev) => events::accumulate(&mut fields, &ev, &self.calendar),
                Err(_) => fields[0] = 1,
            }
            let n = &self.names;
            let (Some((code, domain)), Some(agent_name)) =
                (n.entities.get(&entity), n.agents.get(&agent))
            else {
                batch.refused += 1;
                continue;
            };
            let (dept, item) = n.domains.get(domain).cloned().unwrap_or_default();
            let Ok(series) = line::series_key(
                &format!("{domain}_events"),
                &[
                    ("agent", agent_name),
                    ("department", &dept),
                    ("entity", code),
                    ("item", &item),
                    ("kind", &kind),
                ],
            ) else {
                batch.refused += 1;
                continue;
            };
            let pairs: Vec<(&str, Field)> = names
                .iter()
                .zip(&fields)
                .map(|(k, v)| (*k, Field::Int(*v)))
                .collect();
            match line::push_line(&mut batch.body, &series, &pairs, ts_ms + same_ms, precision) {
                Ok(()) => batch.points += 1,
                Err(_) => batch.refused += 1,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use rusqlite::params;
    use spotcheck_protocol::UnixMillis;

    const MAX: Cursor = Cursor {
        chunk: i64::MAX,
        event: i64::MAX,
    };

    fn store(chunks: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::db_path(dir.path());
        let conn = crate::store::open_for_writing(&db, Synchronous::Normal).unwrap();
        conn.execute_batch(
            "INSERT INTO entities (id, name, domain) VALUES (1, 'E1', 'pool'), (2, 'G1', 'game');
             INSERT INTO agents (id, name, entity, domain) VALUES (1, 'a1', 'E1', 'pool'), (2, 'g1', 'G1', 'game');
             INSERT INTO metrics (id, name, unit) VALUES (1, 'ph', 'pH');",
        )
        .unwrap();
        for seq in 0..chunks as i64 {
            let samples = (0..3_i32).map(|i| chunk::Sample {
                ts: UnixMillis(seq * 10 + i64::from(i)),
                value: 7.2,
                quality: spotcheck_protocol::Quality::Good,
            });
            let data = chunk::encode(&[chunk::Run { seq, n: 3 }], samples);
            conn.execute(
                "INSERT INTO batches (agent, seq, stream, items, received_ms) VALUES (1, ?1, 'readings', 3, 1000)",
                [seq],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data) VALUES (1, 1, 0, 0, 1, ?1, 3, ?2)",
                params![seq, data],
            )
            .unwrap();
        }
        (dir, db)
    }

    #[test]
    fn batches_follow_the_cursor_and_stop_at_what_was_counted() {
        let (_dir, db) = store(5);
        let mut source = Source::open(&db).unwrap();
        let first = source
            .read(Cursor::default(), MAX, 4, Precision::Ms)
            .unwrap();
        assert_eq!(
            (first.readings, first.points, first.next.chunk),
            (6, 6, 2),
            "whole chunks, until 4 or more"
        );
        assert!(first.body.starts_with(
            "pool,agent=a1,department=unassigned,entity=E1,metric=ph,unit=pH value=7.2,quality=0i 0\n"
        ));
        let upto = Cursor { chunk: 4, event: 0 };
        let second = source.read(first.next, upto, 100, Precision::Ms).unwrap();
        assert_eq!(
            (second.readings, second.next.chunk),
            (6, 4),
            "nothing past the upper bound"
        );
        let g = source.growth(second.next).unwrap();
        assert_eq!((g.max_chunk, g.readings), (5, 3));
        let last = source.read(second.next, MAX, 100, Precision::Ms).unwrap();
        assert_eq!(last.readings, 3);
        let all = [first.body, second.body, last.body].concat();
        assert_eq!(all.lines().count(), 15, "each reading once");
        assert_eq!(
            source
                .read(last.next, MAX, 100, Precision::Ms)
                .unwrap()
                .readings,
            0
        );
        assert_eq!(source.oldest_waiting_ms(last.next).unwrap(), None);
        assert_eq!(
            source.oldest_waiting_ms(Cursor::default()).unwrap(),
            Some(1000)
        );
    }

    #[test]
    fn the_backlog_bound_passes_over_the_oldest_chunks() {
        let (_dir, db) = store(5);
        let source = Source::open(&db).unwrap();
        let (to, readings, events) = source.skip_to_bound(Cursor::default(), 15, 0, 7).unwrap();
        assert_eq!(
            (to.chunk, readings, events),
            (3, 9, 0),
            "15 waiting, 7 kept: three chunks of 3 go"
        );
    }

    #[test]
    fn every_event_record_is_a_point_even_two_in_one_millisecond() {
        let (_dir, db) = store(0);
        let conn = crate::store::open_for_writing(&db, Synchronous::Normal).unwrap();
        for id in ["s1", "s2"] {
            let body = format!(
                r#"{{"kind":"game_session","id":"{id}","player":"p","age_band":"8_to_16","real_name_verified":true,"guest":true,"start_ms":5000}}"#
            );
            conn.execute(
                "INSERT INTO events (entity, kind, record_id, ts_ms, agent, seq, body) VALUES (2, 'game_session', ?1, 5000, 2, 1, ?2)",
                params![id, body],
            )
            .unwrap();
        }
        let mut source = Source::open(&db).unwrap();
        let b = source
            .read(Cursor::default(), MAX, 100, Precision::Ms)
            .unwrap();
        assert_eq!((b.events, b.points, b.next.event), (2, 2, 2));
        let lines: Vec<&str> = b.body.lines().collect();
        assert!(lines[0].starts_with("game_events,agent=g1,department=unassigned,entity=G1,kind=game_session count=1i,minor=1i,guest=1i,unverified=0i,minor_outside_window=1i 5000"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(" 5001"),
            "the second record of the millisecond moves 1 ms: {}",
            lines[1]
        );
    }
}

//! Reads what ingest has committed, after the sink's cursor, through a read-only connection of
//! its own, and turns it into line protocol (series design: docs/tsdb.md).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection};

use super::cursor::Cursor;
use super::events;
use super::line::{self, Field, Precision};
use crate::rules::Calendar;
use crate::store::chunk;

/// What could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// SQLite failed.
    #[error("reading the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

/// The store, read after a cursor.
pub struct Source {
    conn: Connection,
    names: Names,
    calendar: Calendar,
    value_key: String,
    quality_key: String,
}

impl Source {
    /// A read-only connection to the database at `db`.
    pub fn open(db: &Path) -> Result<Source, crate::store::StoreError> {
        let conn = crate::store::open_for_reading(db)?;
        Ok(Source {
            conn,
            names: Names::default(),
            calendar: Calendar::china_default(),
            value_key: line::field_key("value").expect("a plain key"),
            quality_key: line::field_key("quality").expect("a plain key"),
        })
    }

    /// What was committed after `after` (rowids): the new maxima and how many readings and
    /// events they add. Cheap: a range scan from the previous maximum.
    pub fn growth(&self, after: Cursor) -> Result<Growth, SourceError> {
        let (max_chunk, readings) = self.conn.prepare_cached(
            "SELECT coalesce(max(rowid), ?1), coalesce(sum(n), 0) FROM reading_chunks WHERE rowid > ?1",
        )?.query_row([after.chunk], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        let (max_event, events) = self
            .conn
            .prepare_cached(
                "SELECT coalesce(max(rowid), ?1), count(*) FROM events WHERE rowid > ?1",
            )?
            .query_row([after.event], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
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
        let chunk: Option<i64> = self.conn.prepare_cached(
            "SELECT b.received_ms FROM reading_chunks c JOIN batches b ON b.agent = c.agent AND b.seq = c.seq
             WHERE c.rowid > ?1 ORDER BY c.rowid LIMIT 1",
        )?.query_row([after.chunk], |r| r.get(0)).ok();
        let event: Option<i64> = self.conn.prepare_cached(
            "SELECT b.received_ms FROM events e JOIN batches b ON b.agent = e.agent AND b.seq = e.seq
             WHERE e.rowid > ?1 ORDER BY e.rowid LIMIT 1",
        )?.query_row([after.event], |r| r.get(0)).ok();
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
            let mut stmt = self.conn.prepare_cached(
                "SELECT rowid, n FROM reading_chunks WHERE rowid > ?1 ORDER BY rowid",
            )?;
            let mut rows = stmt.query([from.chunk])?;
            while skipped.0 < excess {
                let Some(r) = rows.next()? else { break };
                to.chunk = r.get(0)?;
                skipped.0 += r.get::<_, i64>(1)? as u64;
            }
        }
        if waiting_events > keep {
            let excess = (waiting_events - keep) as i64;
            let mut stmt = self.conn.prepare_cached(
                "SELECT rowid FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT 1 OFFSET ?2",
            )?;
            if let Ok(rowid) = stmt.query_row(params![from.event, excess - 1], |r| r.get(0)) {
                to.event = rowid;
                skipped.1 = excess as u64;
            }
        }
        Ok((to, skipped.0, skipped.1))
    }

    fn refresh_names(&mut self) -> Result<(), SourceError> {
        let n = &mut self.names;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, domain FROM entities")?;
        n.entities = stmt
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .collect::<Result<_, _>>()?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, unit FROM metrics")?;
        n.metrics = stmt
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached("SELECT id, name FROM agents")?;
        n.agents = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT rule_pack, department, id FROM registry_items WHERE rule_pack IS NOT NULL ORDER BY id",
        )?;
        let listed: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
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
            let mut stmt = self.conn.prepare_cached(
                "SELECT rowid, entity, metric, agent, data FROM reading_chunks WHERE rowid > ?1 AND rowid <= ?3 ORDER BY rowid LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![from.chunk, max_points as i64, upto.chunk])?;
            let mut out = Vec::new();
            let mut readings = 0usize;
            while readings < max_points {
                let Some(r) = rows.next()? else { break };
                let data: Vec<u8> = r.get(4)?;
                readings += chunk::runs(&data, 0)?
                    .iter()
                    .map(|r| r.n as usize)
                    .sum::<usize>();
                out.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, data));
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
        let rows: Vec<Row> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT rowid, entity, agent, kind, ts_ms, body FROM events WHERE rowid > ?1 AND rowid <= ?3 ORDER BY rowid LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![from.event, room as i64, upto.event], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        };
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
            let same_ms: i64 = self
                .conn
                .prepare_cached(
                    "SELECT count(*) FROM events WHERE entity = ?1 AND kind = ?2 AND ts_ms = ?3 AND agent = ?4 AND rowid < ?5",
                )?
                .query_row(params![entity, kind, ts_ms, agent, rowid], |r| r.get(0))?;
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

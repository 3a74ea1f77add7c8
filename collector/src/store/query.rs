//! Read-only queries behind the HTTP API and the console.

use super::chunk;
use super::db::{args, DbError, Sql};
use serde::Serialize;

/// An entity with the newest value of each of its metrics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EntitySummary {
    /// Entity id.
    pub id: String,
    /// Domain.
    pub domain: String,
    /// Agents bound to it.
    pub agents: Vec<String>,
    /// Newest value per metric.
    pub latest: Vec<Latest>,
}

/// The newest reading of one metric.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latest {
    /// Metric name.
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Time, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
}

/// One point of a series.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    /// Time, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
}

/// A dead letter as shown by the API (payload as lossy UTF-8, cut at 4 KiB).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetterRow {
    /// Row id.
    pub id: i64,
    /// When it arrived, Unix ms.
    pub received_ms: i64,
    /// Topic.
    pub topic: String,
    /// Agent, if known.
    pub agent: Option<String>,
    /// Sequence number, if known.
    pub seq: Option<i64>,
    /// Reason code.
    pub code: String,
    /// Reason.
    pub reason: String,
    /// Payload preview.
    pub payload: String,
}

/// Every entity that has an agent or data, with its newest readings.
pub fn entities(conn: &(impl Sql + ?Sized)) -> Result<Vec<EntitySummary>, DbError> {
    let mut out = Vec::new();
    let rows: Vec<(i64, String, String)> = conn.query(
        "SELECT id, name, domain FROM entities ORDER BY domain, name",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let metrics: Vec<(i64, String, String)> = conn.query(
        "SELECT id, name, unit FROM metrics ORDER BY name",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    for (eid, name, domain) in rows {
        let agents: Vec<String> = conn.query(
            "SELECT name FROM agents WHERE entity = $1 ORDER BY name",
            args![name],
            |r| r.get(0),
        )?;
        let mut latest = Vec::new();
        for (mid, metric, unit) in &metrics {
            if let Some(p) = newest(conn, eid, *mid)? {
                latest.push(Latest {
                    metric: metric.clone(),
                    unit: unit.clone(),
                    ts_ms: p.ts_ms,
                    value: p.value,
                });
            }
        }
        out.push(EntitySummary {
            id: name,
            domain,
            agents,
            latest,
        });
    }
    Ok(out)
}

/// Chunks looked at to find a series' newest reading: chunks are indexed by their earliest
/// time, and a late-arriving batch can overlap the ones before it.
const NEWEST_SCAN: u32 = 8;

/// The newest reading of a series.
fn newest(conn: &(impl Sql + ?Sized), entity: i64, metric: i64) -> Result<Option<Point>, DbError> {
    let mut best: Option<Point> = None;
    let blobs: Vec<Vec<u8>> = conn.query(
        "SELECT data FROM reading_chunks WHERE entity = $1 AND metric = $2 ORDER BY t0 DESC LIMIT $3",
        args![entity, metric, NEWEST_SCAN],
        |r| r.get(0),
    )?;
    for blob in blobs {
        for s in samples(&blob)? {
            if best.is_none_or(|b| s.ts.0 > b.ts_ms) {
                best = Some(Point {
                    ts_ms: s.ts.0,
                    value: s.value,
                });
            }
        }
    }
    Ok(best)
}

fn samples(blob: &[u8]) -> Result<Vec<chunk::Sample>, DbError> {
    chunk::decode(blob).map_err(|e| DbError::Column {
        column: 0,
        reason: format!("a damaged reading chunk: {e}"),
    })
}

/// Readings of one entity's metric since `since_ms`, oldest first, at most `limit`.
pub fn series(
    conn: &(impl Sql + ?Sized),
    entity: &str,
    metric: &str,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<Point>, DbError> {
    let limit = limit as usize;
    let mut out: Vec<Point> = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // Once `limit` readings are held, the latest of them: a chunk starting after it cannot
    // hold any of the first `limit`, so its blob is not even read. Memory stays near `limit`
    // points whatever `since_ms` reaches back to.
    let mut cutoff: Option<i64> = None;
    let keep_first = |out: &mut Vec<Point>, cutoff: &mut Option<i64>| {
        // Chunks are ordered by their first reading; readings inside may interleave across
        // chunks.
        out.sort_by_key(|p| p.ts_ms);
        out.truncate(limit);
        if out.len() == limit {
            *cutoff = out.last().map(|p| p.ts_ms);
        }
    };
    conn.query(
        "SELECT c.t0, c.data FROM reading_chunks c
         JOIN entities e ON e.id = c.entity JOIN metrics m ON m.id = c.metric
         WHERE e.name = $1 AND m.name = $2 AND c.t1 >= $3
         ORDER BY c.t0",
        args![entity, metric, since_ms],
        |r| {
            let t0: i64 = r.get(0)?;
            if cutoff.is_some_and(|c| t0 > c) {
                return Ok(());
            }
            let blob: Vec<u8> = r.get(1)?;
            out.extend(
                samples(&blob)?
                    .into_iter()
                    .filter(|s| s.ts.0 >= since_ms && cutoff.is_none_or(|c| s.ts.0 <= c))
                    .map(|s| Point {
                        ts_ms: s.ts.0,
                        value: s.value,
                    }),
            );
            if out.len() >= limit.saturating_mul(2) {
                keep_first(&mut out, &mut cutoff);
            }
            Ok(())
        },
    )?;
    keep_first(&mut out, &mut cutoff);
    Ok(out)
}

/// A series in `[since_ms, until_ms)` thinned to at most `max` points while it is read, for a
/// chart: the range is cut into `max / 2` equal spans and each keeps its lowest and highest
/// reading, in time order (all readings when there are no more than `max`). Memory holds one
/// chunk and the kept points however many readings the range has (an hour of a busy pool is
/// millions). Returns the number of readings in the range and the kept points, oldest first.
pub fn series_thinned(
    conn: &(impl Sql + ?Sized),
    entity: &str,
    metric: &str,
    (since_ms, until_ms): (i64, i64),
    max: usize,
) -> Result<(usize, Vec<Point>), DbError> {
    let spans = (max / 2).max(1);
    let width = (until_ms.saturating_sub(since_ms).max(1) as u64).div_ceil(spans as u64) as i64;
    let mut kept: Vec<Option<(Point, Point)>> = vec![None; spans];
    // Every reading too, while there are no more than `max`.
    let mut all: Vec<Point> = Vec::new();
    let mut count = 0usize;
    conn.query(
        "SELECT c.data FROM reading_chunks c
         JOIN entities e ON e.id = c.entity JOIN metrics m ON m.id = c.metric
         WHERE e.name = $1 AND m.name = $2 AND c.t1 >= $3 AND c.t0 < $4",
        args![entity, metric, since_ms, until_ms],
        |r| {
            let blob: Vec<u8> = r.get(0)?;
            for s in samples(&blob)? {
                let t = s.ts.0;
                if t < since_ms || t >= until_ms {
                    continue;
                }
                let p = Point {
                    ts_ms: t,
                    value: s.value,
                };
                count += 1;
                if count <= max {
                    all.push(p);
                } else if !all.is_empty() {
                    all = Vec::new();
                }
                let span = (((t - since_ms) / width) as usize).min(spans - 1);
                match &mut kept[span] {
                    None => kept[span] = Some((p, p)),
                    Some((lo, hi)) => {
                        if p.value < lo.value {
                            *lo = p;
                        }
                        if p.value > hi.value {
                            *hi = p;
                        }
                    }
                }
            }
            Ok(())
        },
    )?;
    if count <= max {
        all.sort_by_key(|p| p.ts_ms);
        return Ok((count, all));
    }
    let mut out = Vec::with_capacity(max);
    for (lo, hi) in kept.into_iter().flatten() {
        let (a, b) = if lo.ts_ms <= hi.ts_ms {
            (lo, hi)
        } else {
            (hi, lo)
        };
        out.push(a);
        if a != b {
            out.push(b);
        }
    }
    Ok((count, out))
}

/// The newest dead letters, newest first.
pub fn dead_letters(conn: &(impl Sql + ?Sized), limit: u32) -> Result<Vec<DeadLetterRow>, DbError> {
    conn.query(
        "SELECT id, received_ms, topic, agent, seq, code, reason, substr(payload, 1, 4096)
         FROM dead_letters ORDER BY id DESC LIMIT $1",
        args![limit],
        |r| {
            // SQLite's substr of an empty BLOB is NULL (PostgreSQL's is empty): an empty MQTT
            // message is a dead letter too.
            let payload: Option<Vec<u8>> = r.get(7)?;
            Ok(DeadLetterRow {
                id: r.get(0)?,
                received_ms: r.get(1)?,
                topic: r.get(2)?,
                agent: r.get(3)?,
                seq: r.get(4)?,
                code: r.get(5)?,
                reason: r.get(6)?,
                payload: String::from_utf8_lossy(payload.as_deref().unwrap_or_default())
                    .into_owned(),
            })
        },
    )
}

/// An entity's data in `[start, end)`: every metric's readings, oldest first, and its event
/// records (as their JSON bodies, oldest first). The input of a remote check.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WindowData {
    /// Per metric, its readings sorted by time.
    pub series: Vec<(String, Vec<(spotcheck_protocol::UnixMillis, f64)>)>,
    /// Event records, sorted by time.
    pub events: Vec<spotcheck_protocol::Event>,
}

/// Loads [`WindowData`] for the entities named `entities` (all their data merged: an entity
/// served by several agents, or known under several names).
pub fn window_data(
    conn: &(impl Sql + ?Sized),
    entities: &[String],
    start_ms: i64,
    end_ms: i64,
) -> Result<WindowData, DbError> {
    use std::collections::BTreeMap;
    let mut series: BTreeMap<String, Vec<(spotcheck_protocol::UnixMillis, f64)>> = BTreeMap::new();
    let mut events = Vec::new();
    for entity in entities {
        let chunks: Vec<(String, Vec<u8>)> = conn.query(
            "SELECT m.name, c.data FROM reading_chunks c
             JOIN entities e ON e.id = c.entity JOIN metrics m ON m.id = c.metric
             WHERE e.name = $1 AND c.t1 >= $2 AND c.t0 < $3",
            args![entity, start_ms, end_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (metric, blob) in chunks {
            let points = series.entry(metric).or_default();
            points.extend(
                samples(&blob)?
                    .into_iter()
                    .filter(|s| s.ts.0 >= start_ms && s.ts.0 < end_ms)
                    .map(|s| (s.ts, s.value)),
            );
        }
        let bodies: Vec<String> = conn.query(
            "SELECT ev.body FROM events ev JOIN entities e ON e.id = ev.entity
             WHERE e.name = $1 AND ev.ts_ms >= $2 AND ev.ts_ms < $3 ORDER BY ev.ts_ms",
            args![entity, start_ms, end_ms],
            |r| r.get(0),
        )?;
        for body in bodies {
            let event = serde_json::from_str(&body).map_err(|e| DbError::Column {
                column: 0,
                reason: format!("an event record that does not parse: {e}"),
            })?;
            events.push(event);
        }
    }
    let series = series
        .into_iter()
        .map(|(m, mut p)| {
            p.sort_by_key(|x| x.0);
            p.dedup_by_key(|x| x.0);
            (m, p)
        })
        .collect();
    events.sort_by_key(spotcheck_protocol::Event::ts);
    Ok(WindowData { series, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    #[test]
    fn an_empty_payload_lists_as_an_empty_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::db_path(dir.path());
        let conn = crate::store::open_for_writing(&db, Synchronous::Normal).unwrap();
        conn.execute(
            "INSERT INTO dead_letters (received_ms, topic, code, reason, payload)
             VALUES (1, 'spotcheck/v1/pool/E/A/readings', 'bad_json', 'empty', x'')",
            [],
        )
        .unwrap();
        let rows = dead_letters(&conn, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].payload, "");
    }
}

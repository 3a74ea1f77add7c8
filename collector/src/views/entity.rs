//! One entity as the console shows it: its registry entry, its feeds with their last-seen
//! time, its metrics, and its event records with the rules each broke.

use serde::Serialize;
use spotcheck_protocol::{Event, UnixMillis};

use super::evidence::{breaches, record_view, RecordView};
use crate::rules::{Calendar, RulePack, RuleSet};
use crate::store::db::{args, DbError, Sql};
use crate::store::query::{self, Latest};

/// A feed: one agent reporting for the entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feed {
    /// The agent.
    pub agent: String,
    /// When its newest batch was received, Unix ms.
    pub last_seen_ms: Option<i64>,
    /// What that batch held (`readings` or `events`).
    pub last_stream: Option<String>,
}

/// Records of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventFeed {
    /// Record kind.
    pub kind: String,
    /// The newest record's time, Unix ms.
    pub last_ms: Option<i64>,
}

/// The entity's registry entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registered {
    /// Name.
    pub name: String,
    /// District.
    pub district: String,
    /// Address.
    pub address: String,
    /// Credit-risk class.
    pub risk: String,
}

/// An entity's overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// The entity id agents report under (a credit code in the registry).
    pub id: String,
    /// Its domain.
    pub domain: Option<String>,
    /// Its registry entry.
    pub registry: Option<Registered>,
    /// Its agents.
    pub feeds: Vec<Feed>,
    /// The newest reading of each metric.
    pub metrics: Vec<Latest>,
    /// Its kinds of event records.
    pub events: Vec<EventFeed>,
}

/// The overview of `entity`; `None` if neither the registry nor the data know it.
pub fn overview(conn: &(impl Sql + ?Sized), entity: &str) -> Result<Option<Overview>, DbError> {
    let registry: Option<(Registered, String)> = conn.query_opt(
        "SELECT name, district, address, risk, domain FROM registry_entities WHERE code = $1",
        args![entity],
        |r| {
            Ok((
                Registered {
                    name: r.get(0)?,
                    district: r.get(1)?,
                    address: r.get(2)?,
                    risk: r.get(3)?,
                },
                r.get(4)?,
            ))
        },
    )?;
    let data: Option<(i64, String)> = conn.query_opt(
        "SELECT id, domain FROM entities WHERE name = $1",
        args![entity],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if registry.is_none() && data.is_none() {
        return Ok(None);
    }
    let domain = data
        .as_ref()
        .map(|d| d.1.clone())
        .or_else(|| registry.as_ref().map(|r| r.1.clone()));
    let mut feeds = Vec::new();
    // Lists sorted in Rust: by code point on both engines, whatever PostgreSQL's collation.
    let mut agents: Vec<(i64, String)> = conn.query(
        "SELECT id, name FROM agents WHERE entity = $1",
        args![entity],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    agents.sort_by(|a, b| a.1.cmp(&b.1));
    for (id, agent) in agents {
        let last: Option<(i64, String)> = conn.query_opt(
            "SELECT received_ms, stream FROM batches WHERE agent = $1 ORDER BY seq DESC LIMIT 1",
            args![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        feeds.push(Feed {
            agent,
            last_seen_ms: last.as_ref().map(|l| l.0),
            last_stream: last.map(|l| l.1),
        });
    }
    let metrics = query::entities(conn)?
        .into_iter()
        .find(|e| e.id == entity)
        .map(|e| e.latest)
        .unwrap_or_default();
    let mut events = Vec::new();
    if let Some((eid, _)) = &data {
        let mut kinds: Vec<String> = conn.query(
            "SELECT DISTINCT kind FROM events WHERE entity = $1",
            args![eid],
            |r| r.get(0),
        )?;
        kinds.sort();
        for kind in kinds {
            let last_ms = conn.query_row(
                "SELECT max(ts_ms) FROM events WHERE entity = $1 AND kind = $2",
                args![eid, kind],
                |r| r.get(0),
            )?;
            events.push(EventFeed { kind, last_ms });
        }
    }
    Ok(Some(Overview {
        id: entity.to_owned(),
        domain,
        registry: registry.map(|r| r.0),
        feeds,
        metrics,
        events,
    }))
}

/// What [`events`] lists.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// Only this record kind.
    pub kind: Option<String>,
    /// From, Unix ms (inclusive).
    pub since_ms: i64,
    /// Until, Unix ms (exclusive).
    pub until_ms: i64,
    /// Only records that broke a rule.
    pub breaches_only: bool,
    /// At most this many.
    pub limit: usize,
}

/// Records looked at, at most, to fill a page of breaching records.
pub const SCAN_LIMIT: usize = 50_000;

/// Records read at once while filling a page.
const SCAN_PAGE: usize = 1_000;

/// The entity's records in the range, newest first, each with the rules of its domain's pack
/// it broke.
pub fn events(
    conn: &(impl Sql + ?Sized),
    rules: &RuleSet,
    calendar: &Calendar,
    entity: &str,
    q: &EventQuery,
    now: UnixMillis,
) -> Result<Vec<RecordView>, DbError> {
    let domain: Option<String> = conn.query_opt(
        "SELECT domain FROM entities WHERE name = $1",
        args![entity],
        |r| r.get(0),
    )?;
    let pack: Option<&RulePack> = domain
        .as_deref()
        .and_then(|d| rules.packs().find(|p| p.domain.as_str() == d));
    let scan = if q.breaches_only { SCAN_LIMIT } else { q.limit };
    // Newest first (the newest stored first within a time), a page at a time after a cursor,
    // so that a page of breaches stops reading once it is full.
    let page = q.limit.max(SCAN_PAGE);
    let (mut scanned, mut cursor) = (0usize, None::<(i64, i64)>);
    let mut out = Vec::new();
    while scanned < scan && out.len() < q.limit {
        // One statement per combination (kind or not, first page or after a cursor), each
        // with plain conditions, so that both engines walk an index backwards and stop at
        // the page's end instead of sorting every record of the entity (2.5 M records made
        // `OR $n IS NULL` forms take seconds).
        let n = page.min(scan - scanned) as i64;
        // After a cursor, the range ends just after its time (one upper bound, so that the
        // index range stops there), and within its time the row decides.
        let until = cursor.map_or(q.until_ms, |(ts, _)| q.until_ms.min(ts + 1));
        let mut sql = String::from(
            "SELECT ev.ts_ms, ev.rowid, ev.body FROM events ev JOIN entities e ON e.id = ev.entity
             WHERE e.name = $1 AND ev.ts_ms >= $2 AND ev.ts_ms < $3",
        );
        // $4 is the limit; the optional conditions number on from $5.
        let mut params: Vec<&dyn crate::store::db::Arg> = vec![&entity, &q.since_ms, &until, &n];
        if let Some(kind) = &q.kind {
            params.push(kind);
            sql += &format!(" AND ev.kind = ${}", params.len());
        }
        let (c_ts, c_row) = cursor.unzip();
        if let (Some(ts), Some(row)) = (&c_ts, &c_row) {
            params.push(ts);
            let t = params.len();
            params.push(row);
            sql += &format!(" AND (ev.ts_ms < ${t} OR ev.rowid < ${})", params.len());
        }
        sql += " ORDER BY ev.ts_ms DESC, ev.rowid DESC LIMIT $4";
        let rows: Vec<(i64, i64, String)> =
            conn.query(&sql, &params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let Some(last) = rows.last() else { break };
        cursor = Some((last.0, last.1));
        scanned += rows.len();
        for (_, _, body) in rows {
            let e: Event = serde_json::from_str(&body).map_err(|e| DbError::Column {
                column: 0,
                reason: format!("an event record is not JSON: {e}"),
            })?;
            let broke = pack
                .map(|p| breaches(p, calendar, &e, now))
                .unwrap_or_default();
            if q.breaches_only && broke.is_empty() {
                continue;
            }
            out.push(record_view(&e, broke));
            if out.len() >= q.limit {
                break;
            }
        }
    }
    Ok(out)
}

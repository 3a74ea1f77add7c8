//! Ingest's writer on both engines (issue 14, docs/storage.md): the same batches (duplicates,
//! a redelivery, a reused number, dead letters, a gap, a breach that opens an anomaly task)
//! give the same rows, reports and tasks on SQLite and PostgreSQL; on PostgreSQL two writers
//! committing overlapping redeliveries at once store every batch exactly once and open one
//! task per (entity, rule); the time-series sink does not skip a row committed out of
//! identity order. Needs PostgreSQL (skipped without it unless `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::collections::BTreeMap;

use spotcheck_collector::config::{AgentBinding, Synchronous};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::sink::cursor::Cursor;
use spotcheck_collector::sink::line::Precision;
use spotcheck_collector::sink::source::Source;
use spotcheck_collector::store::db::{self, args, Backend, Conn, DbError, DbUrl, Mode, Sql};
use spotcheck_collector::store::query;
use spotcheck_collector::store::writer::{DeadLetter, Item, Outcome};
use spotcheck_collector::store::Writer;
use spotcheck_collector::tasks::anomaly::Tracker;
use spotcheck_e2e::postgres::both;
use spotcheck_e2e::wait_for;
use spotcheck_protocol::{
    check, AgentId, Batch, Checked, Domain, EntityId, EventBatch, Limits, Metric, Quality, Reading,
    ReadingBatch, Seq, Unit, UnixMillis, Version,
};

const MINUTE: i64 = 60_000;

/// Ten free-chlorine readings a minute apart from `start`, all `value` (0.1 breaches the
/// built-in pool pack, 0.6 is in band).
fn chlorine(agent: &str, seq: u64, start: i64, value: f64) -> Checked<Batch> {
    let readings = (0..10)
        .map(|m| Reading {
            metric: Metric::new(Metric::FREE_CHLORINE).unwrap(),
            value,
            unit: Unit::MilligramPerLitre,
            ts_ms: UnixMillis(start + m * MINUTE),
            quality: Quality::Good,
        })
        .collect();
    let b = Batch::Readings(ReadingBatch {
        v: Version,
        agent: AgentId::new(agent).unwrap(),
        seq: Seq(seq),
        after: None,
        readings,
    });
    check(b, &Limits::default(), UnixMillis::now()).unwrap()
}

/// Two game sessions (one a minor's, played as a guest) from `agent`.
fn sessions(agent: &str, seq: u64, start: i64) -> Checked<Batch> {
    let events = ["s1", "s2"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::from_value(serde_json::json!({
                "kind": "game_session", "id": id, "player": format!("p{i}"),
                "age_band": if i == 0 { "8_to_16" } else { "adult" },
                "real_name_verified": true, "guest": i == 0,
                "start_ms": start + i as i64 * MINUTE, "end_ms": start + (i as i64 + 30) * MINUTE,
            }))
            .unwrap()
        })
        .collect();
    let b = Batch::Events(EventBatch {
        v: Version,
        agent: AgentId::new(agent).unwrap(),
        seq: Seq(seq),
        after: None,
        events,
    });
    check(b, &Limits::default(), UnixMillis::now()).unwrap()
}

fn start() -> i64 {
    UnixMillis::now().0 - 3 * 60 * MINUTE
}

fn tracker(w: &Writer) -> Tracker {
    let book = Rulebook::load(None).unwrap();
    Tracker::load(
        w.conn(),
        (*book.rules()).clone(),
        (*book.calendar()).clone(),
        &[],
        UnixMillis::now(),
    )
    .unwrap()
}

fn bind(w: &mut Writer, pairs: &[(&str, &str)]) {
    let bindings: Vec<AgentBinding> = pairs
        .iter()
        .map(|(a, e)| AgentBinding {
            id: AgentId::new(*a).unwrap(),
            entity: EntityId::new(*e).unwrap(),
            domain: Domain::Pool,
        })
        .collect();
    w.register_agents(&bindings).unwrap();
}

fn item<'a>(entity: &'a EntityId, batch: &'a Checked<Batch>) -> Item<'a> {
    Item::Batch {
        entity,
        domain: Domain::Pool,
        batch,
    }
}

/// Every row ingest wrote, by names and values (never by ids an engine assigned).
fn stored(c: &Conn) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    let q = |sql: &str, cols: usize| -> Vec<String> {
        c.query(sql, args![], |r| {
            let mut s = Vec::new();
            for i in 0..cols {
                let v = match r.get::<Option<i64>>(i) {
                    Ok(v) => format!("{v:?}"),
                    Err(_) => match r.get::<Option<String>>(i) {
                        Ok(v) => format!("{v:?}"),
                        Err(_) => format!("{:?}", r.get::<Option<Vec<u8>>>(i)?),
                    },
                };
                s.push(v);
            }
            Ok(s.join(" "))
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    out.insert(
        "batches",
        q(
            "SELECT a.name, b.seq, b.stream, b.items, b.digest FROM batches b
             JOIN agents a ON a.id = b.agent ORDER BY a.name, b.seq",
            5,
        ),
    );
    out.insert(
        "chunks",
        q(
            "SELECT e.name, m.name, a.name, c.seq, c.n, c.t0, c.t1, c.data FROM reading_chunks c
             JOIN entities e ON e.id = c.entity JOIN metrics m ON m.id = c.metric
             JOIN agents a ON a.id = c.agent ORDER BY e.name, m.name, a.name, c.seq",
            8,
        ),
    );
    out.insert(
        "events",
        q(
            "SELECT e.name, v.kind, v.record_id, v.ts_ms, v.end_ms, a.name, v.seq, v.body
             FROM events v JOIN entities e ON e.id = v.entity JOIN agents a ON a.id = v.agent
             ORDER BY v.rowid",
            8,
        ),
    );
    out.insert(
        "dead_letters",
        q(
            "SELECT topic, agent, seq, code, reason, payload FROM dead_letters ORDER BY id",
            6,
        ),
    );
    out.insert(
        "gaps",
        q(
            "SELECT agent, first, last FROM seq_gaps ORDER BY agent, first",
            3,
        ),
    );
    out.insert(
        "tasks",
        q(
            "SELECT kind, entity, rule, status, department, item, severity, cleared_ms FROM tasks
             ORDER BY entity, rule",
            8,
        ),
    );
    out.insert(
        "notes",
        q(
            "SELECT t.entity, n.kind FROM task_notes n JOIN tasks t ON t.id = n.task
             ORDER BY t.entity, n.rowid",
            2,
        ),
    );
    out.insert(
        "rule_state",
        q(
            "SELECT entity, rule FROM rule_state ORDER BY entity, rule",
            2,
        ),
    );
    out.insert(
        "audit",
        q("SELECT kind, subject FROM audit_log ORDER BY seq", 2),
    );
    out
}

/// The scenario: two commits through the rule engine; returns each commit's outcomes.
fn scenario(url: &DbUrl, s: i64) -> Vec<Vec<Outcome>> {
    let mut w = Writer::open_url(url, Synchronous::Normal).unwrap();
    bind(&mut w, &[("a1", "E1"), ("a2", "E2")]);
    w.register_agents(&[AgentBinding {
        id: AgentId::new("g1").unwrap(),
        entity: EntityId::new("G1").unwrap(),
        domain: Domain::Game,
    }])
    .unwrap();
    let g1 = EntityId::new("G1").unwrap();
    let games = sessions("g1", 1, s);
    let mut t = tracker(&w);
    let (e1, e2) = (EntityId::new("E1").unwrap(), EntityId::new("E2").unwrap());
    let breach1 = chlorine("a1", 1, s, 0.1);
    let fine = chlorine("a2", 1, s, 0.6);
    let anonymous = DeadLetter {
        topic: "spotcheck/v1/pool/E9/x/readings".into(),
        agent: None,
        seq: None,
        code: "bad_json",
        reason: "expected value at line 1".into(),
        payload: b"{".to_vec(),
        items: 0,
    };
    let numbered = DeadLetter {
        topic: "spotcheck/v1/pool/E2/a2/readings".into(),
        agent: Some(AgentId::new("a2").unwrap()),
        seq: Some(Seq(9)),
        code: "unit_mismatch",
        reason: "field `readings[0].unit`".into(),
        payload: b"{}".to_vec(),
        items: 1,
    };
    let now = UnixMillis(s + 20 * MINUTE);
    let first = w
        .commit_observed(
            &[
                item(&e1, &breach1),
                item(&e1, &breach1),
                item(&e2, &fine),
                Item::Batch {
                    entity: &g1,
                    domain: Domain::Game,
                    batch: &games,
                },
                Item::DeadLetter(&anonymous),
                Item::DeadLetter(&numbered),
            ],
            now,
            &mut t,
        )
        .unwrap();
    let other_content = chlorine("a1", 1, s, 0.2);
    let breach2 = chlorine("a1", 2, s + 10 * MINUTE, 0.1);
    let a2 = AgentId::new("a2").unwrap();
    let second = w
        .commit_observed(
            &[
                item(&e1, &breach1),
                item(&e1, &other_content),
                item(&e1, &breach2),
                Item::Gap {
                    agent: &a2,
                    first: 3,
                    last: 10,
                },
                Item::DeadLetter(&numbered),
            ],
            UnixMillis(now.0 + MINUTE),
            &mut t,
        )
        .unwrap();
    vec![first.outcomes, second.outcomes]
}

/// Commits as the commit stage does: a failed transaction (a deadlock PostgreSQL broke) is
/// retried after the engine reloads its state.
fn commit_retrying(
    w: &mut Writer,
    t: &mut Tracker,
    items: &[Item<'_>],
    retries: &mut u32,
) -> Vec<Outcome> {
    let book = Rulebook::load(None).unwrap();
    loop {
        match w.commit_observed(items, UnixMillis::now(), t) {
            Ok(r) => return r.outcomes,
            Err(e) => {
                *retries += 1;
                assert!(*retries < 20, "commits keep failing: {e}");
                eprintln!("commit failed, retried: {e}");
                t.reload(
                    w.conn(),
                    (*book.rules()).clone(),
                    (*book.calendar()).clone(),
                    UnixMillis::now(),
                )
                .unwrap();
            }
        }
    }
}

/// The sink's growth after `from` once the watermark reaches `upto`: at once unless some
/// other transaction of the test server's cluster (an autovacuum's analyze) is running at
/// that moment, which the watermark rightly waits for.
fn settled(
    source: &mut Source,
    from: Cursor,
    upto: i64,
) -> spotcheck_collector::sink::source::Growth {
    wait_for(
        "the sink's watermark to pass the committed rows",
        std::time::Duration::from_secs(10),
        || Some(source.growth(from).unwrap()).filter(|g| g.max_chunk >= upto),
    )
}

mod same;
mod shared;

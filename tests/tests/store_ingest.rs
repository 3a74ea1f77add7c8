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

#[test]
fn the_writer_stores_the_same_on_both_engines() {
    let Some(b) = both("ingest_same") else { return };
    let mut results = Vec::new();
    // The same batches on both: the same times.
    let s = start();
    for (url, c) in [(&b.sqlite_url, &b.sqlite), (&b.pg_url, &b.postgres)] {
        let outcomes = scenario(url, s);
        assert_eq!(
            outcomes,
            vec![
                vec![
                    Outcome::Stored,
                    Outcome::Duplicate,
                    Outcome::Stored,
                    Outcome::Stored,
                    Outcome::DeadLettered,
                    Outcome::DeadLettered
                ],
                vec![
                    Outcome::Duplicate,
                    Outcome::SeqReused,
                    Outcome::Stored,
                    Outcome::Gap(7),
                    Outcome::DeadLettered
                ],
            ],
            "{:?}",
            c.backend()
        );
        let rows = stored(c);
        assert_eq!(rows["batches"].len(), 4, "{:?}", c.backend());
        assert_eq!(rows["events"].len(), 2, "{:?}", c.backend());
        assert_eq!(
            rows["dead_letters"].len(),
            3,
            "the numbered one once, the anonymous one, the reused number"
        );
        assert_eq!(
            rows["gaps"],
            vec![
                "Some(\"a2\") Some(3) Some(8)",
                "Some(\"a2\") Some(10) Some(10)"
            ]
        );
        let live: Vec<&String> = rows["tasks"]
            .iter()
            .filter(|t| t.contains("\"open\"") && t.contains("\"E1\""))
            .collect();
        assert_eq!(live.len(), 1, "one breach, one task: {:?}", rows["tasks"]);
        assert!(live[0].contains("pool/free_chlorine"), "{live:?}");
        // The game sessions open what the game pack says (a guest session at least; a minor
        // outside the allowed hours depends on the hour the test runs), the same on both.
        assert!(
            rows["tasks"]
                .iter()
                .any(|t| t.contains("game/guest_session")),
            "{:?}",
            rows["tasks"]
        );
        // The API's queries over what was stored.
        let entities = query::entities(c).unwrap();
        let series = query::series(c, "E1", Metric::FREE_CHLORINE, 0, 1000).unwrap();
        assert_eq!(series.len(), 20, "two batches of ten");
        let dead: Vec<_> = query::dead_letters(c, 10)
            .unwrap()
            .into_iter()
            .map(|d| (d.code, d.agent, d.seq, d.payload))
            .collect();
        let verified =
            spotcheck_collector::audit::store::verify_store(c, None).expect("the audit log reads");
        assert!(verified.problems.is_empty(), "{:?}", verified.problems);
        results.push((rows, format!("{entities:?}"), series, dead));
    }
    let (s, p) = (&results[0], &results[1]);
    for key in s.0.keys() {
        assert_eq!(s.0[key], p.0[key], "{key}: SQLite, then PostgreSQL");
    }
    assert_eq!(s.1, p.1, "query::entities");
    assert_eq!(s.2, p.2, "query::series");
    assert_eq!(s.3, p.3, "query::dead_letters");
}

#[test]
fn an_unsigned_parameter_above_the_largest_integer_is_refused_by_name() {
    let Some(b) = both("ingest_unsigned") else {
        return;
    };
    for c in b.each() {
        let err = c
            .query_row(
                "SELECT CAST($1 AS BIGINT) + CAST($2 AS BIGINT)",
                args![1u64, u64::MAX],
                |r| r.get::<i64>(0),
            )
            .unwrap_err();
        match &err {
            DbError::Parameter { index: 2, reason } => {
                assert!(reason.contains("18446744073709551615"), "{reason}")
            }
            other => panic!("{:?}: {other}", c.backend()),
        }
        let fits: i64 = c
            .query_row("SELECT CAST($1 AS BIGINT)", args![i64::MAX as u64], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fits, i64::MAX);
    }
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

#[test]
fn two_writers_on_postgres_store_overlapping_redeliveries_once_and_open_one_task() {
    let Some(b) = both("ingest_two") else { return };
    const AGENTS: usize = 6;
    const SEQS: u64 = 12;
    let s = start();
    // Three entities, two agents each; every batch breaches.
    let plan: Vec<(EntityId, Checked<Batch>)> = (0..AGENTS)
        .flat_map(|a| {
            (1..=SEQS).map(move |seq| {
                (
                    EntityId::new(format!("E{}", a / 2)).unwrap(),
                    chlorine(&format!("a{a}"), seq, s + seq as i64 * 10 * MINUTE, 0.1),
                )
            })
        })
        .collect();
    let url = b.pg_url.clone();
    // Each writer starts with one agent of every entity, then redelivers the other's: both
    // store readings of every entity, so its rule state moves between them.
    let run = |agents: [usize; AGENTS], per_commit: usize| {
        let url = url.clone();
        let plan = &plan;
        move || {
            let mut w = Writer::open_url(&url, Synchronous::Normal).unwrap();
            let mut t = tracker(&w);
            let order: Vec<usize> = agents
                .iter()
                .flat_map(|a| (0..SEQS as usize).map(move |k| a * SEQS as usize + k))
                .collect();
            let mut stored = Vec::new();
            let mut retries = 0;
            for group in order.chunks(per_commit) {
                let items: Vec<Item<'_>> = group
                    .iter()
                    .map(|&i| item(&plan[i].0, &plan[i].1))
                    .collect();
                let outcomes = commit_retrying(&mut w, &mut t, &items, &mut retries);
                for (&i, o) in group.iter().zip(outcomes) {
                    if o == Outcome::Stored {
                        stored.push(i);
                    } else {
                        assert_eq!(o, Outcome::Duplicate, "batch {i}");
                    }
                }
            }
            (stored, retries)
        }
    };
    let (a, b_) = std::thread::scope(|scope| {
        let a = scope.spawn(run([0, 2, 4, 1, 3, 5], 5));
        let b_ = scope.spawn(run([1, 3, 5, 0, 2, 4], 7));
        (a.join().unwrap(), b_.join().unwrap())
    });
    eprintln!("retries: {} and {}", a.1, b_.1);
    let mut all: Vec<usize> = a.0.iter().chain(&b_.0).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..plan.len()).collect::<Vec<_>>(),
        "every batch stored by exactly one writer ({} by one, {} by the other)",
        a.0.len(),
        b_.0.len()
    );
    let c = &b.postgres;
    let readings: i64 = c
        .query_row(
            "SELECT CAST(sum(n) AS BIGINT) FROM reading_chunks",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(readings, plan.len() as i64 * 10, "each reading once");
    let batches: i64 = c
        .query_row("SELECT count(*) FROM batches", args![], |r| r.get(0))
        .unwrap();
    assert_eq!(batches, plan.len() as i64);
    let tasks: Vec<(String, String, i64)> = c
        .query(
            "SELECT entity, rule, count(*) FROM tasks WHERE kind = 'anomaly'
             GROUP BY entity, rule ORDER BY entity, rule",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        tasks,
        (0..AGENTS / 2)
            .map(|e| (format!("E{e}"), "pool/free_chlorine".to_owned(), 1))
            .collect::<Vec<_>>(),
        "one task per (entity, rule)"
    );
    // Each writer continued from the state the other stored (Tracker::claim): the breach
    // never looked new to the second, so it never "returned" on the first one's task.
    let returned: i64 = c
        .query_row(
            "SELECT count(*) FROM task_notes WHERE kind = 'returned'",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        returned, 0,
        "the rule engine's state moved between the writers"
    );
    let verified = spotcheck_collector::audit::store::verify_store(c, None).unwrap();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    assert_eq!(verified.entries, AGENTS / 2, "one task opened per entity");
}

#[test]
fn the_sink_does_not_skip_a_row_committed_out_of_identity_order_on_postgres() {
    let Some(b) = both("ingest_sink") else { return };
    let setup = &b.postgres;
    assert_eq!(setup.backend(), Backend::Postgres);
    setup
        .execute_batch(
            "INSERT INTO entities (id, name, domain) VALUES (1, 'E1', 'pool');
             INSERT INTO agents (id, name, entity, domain) VALUES (1, 'a1', 'E1', 'pool');
             INSERT INTO metrics (id, name, unit) VALUES (1, 'ph', 'pH');",
        )
        .unwrap();
    let chunk = |seq: i64| {
        let samples = (0..3_i32).map(|i| spotcheck_collector::store::chunk::Sample {
            ts: UnixMillis(seq * 1000 + i64::from(i)),
            value: 7.2,
            quality: Quality::Good,
        });
        spotcheck_collector::store::chunk::encode(
            &[spotcheck_collector::store::chunk::Run { seq, n: 3 }],
            samples,
        )
    };
    let write = |c: &Conn, seq: i64| {
        c.execute(
            "INSERT INTO batches (agent, seq, stream, items, received_ms) VALUES (1, $1, 'readings', 3, 1000)",
            args![seq],
        )
        .unwrap();
        c.query_row(
            "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data)
             VALUES (1, 1, $1, $1, 1, $1, 3, $2) RETURNING rowid",
            args![seq, chunk(seq)],
            |r| r.get::<i64>(0),
        )
        .unwrap()
    };
    let (one, two) = (
        db::connect(&b.pg_url, Mode::Write).unwrap(),
        db::connect(&b.pg_url, Mode::Write).unwrap(),
    );
    // The first transaction takes the lower row id and commits last.
    let slow = one.transaction_concurrent().unwrap();
    let low = write(&slow, 1);
    let fast = two.transaction_concurrent().unwrap();
    let high = write(&fast, 2);
    fast.commit().unwrap();
    assert!(low < high, "{low} {high}");
    let visible: i64 = setup
        .query_row("SELECT max(rowid) FROM reading_chunks", args![], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(visible, high, "a plain cursor would move past {low} here");

    let mut source = Source::open_url(&b.pg_url).unwrap();
    let g = source.growth(Cursor::default()).unwrap();
    assert_eq!(
        (g.max_chunk, g.readings),
        (0, 0),
        "nothing is safe while the lower id is in flight"
    );
    let upto = Cursor {
        chunk: g.max_chunk,
        event: g.max_event,
    };
    let read = source
        .read(Cursor::default(), upto, 100, Precision::Ms)
        .unwrap();
    assert_eq!((read.readings, read.next.chunk), (0, 0));

    slow.commit().unwrap();
    let g = settled(&mut source, Cursor::default(), high);
    assert_eq!(
        (g.max_chunk, g.readings),
        (high, 6),
        "both, once both ended"
    );
    let upto = Cursor {
        chunk: g.max_chunk,
        event: g.max_event,
    };
    let read = source
        .read(Cursor::default(), upto, 100, Precision::Ms)
        .unwrap();
    assert_eq!((read.readings, read.next.chunk), (6, high));

    // A rolled-back transaction's id is passed over once it has ended.
    let dropped = one.transaction_concurrent().unwrap();
    let gone = write(&dropped, 3);
    drop(dropped);
    let after = two.transaction_concurrent().unwrap();
    let last = write(&after, 4);
    after.commit().unwrap();
    assert!(gone < last);
    let g = settled(&mut source, read.next, last);
    assert_eq!((g.max_chunk, g.readings), (last, 3));
}

/// The sink's growth after `from` once the watermark reaches `upto`: at once unless some
/// other transaction of the test server's cluster (an autovacuum's analyze) is running at
/// that moment, which the watermark rightly waits for.
fn settled(
    source: &mut Source,
    from: Cursor,
    upto: i64,
) -> spotcheck_collector::sink::source::Growth {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let g = source.growth(from).unwrap();
        if g.max_chunk >= upto || std::time::Instant::now() > deadline {
            return g;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_live_task_another_collector_opened_is_noted_not_duplicated() {
    let Some(b) = both("ingest_live_task") else {
        return;
    };
    let s = start();
    for (url, c) in [(&b.sqlite_url, &b.sqlite), (&b.pg_url, &b.postgres)] {
        // Another collector's commit opened the task (its rule state is not this engine's).
        c.execute(
            "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
                                rule, severity, opened_ms, detail, updated_ms)
             VALUES ('anomaly', 'E1', 'unassigned', 'unassigned', '2026-01-01', '2026-01-01',
                     'open', 'pool/free_chlorine', 'high', $1, 'elsewhere', $1)",
            args![s],
        )
        .unwrap();
        let mut w = Writer::open_url(url, Synchronous::Normal).unwrap();
        bind(&mut w, &[("a1", "E1")]);
        let mut t = tracker(&w);
        let e1 = EntityId::new("E1").unwrap();
        let breach = chlorine("a1", 1, s, 0.1);
        let r = w
            .commit_observed(&[item(&e1, &breach)], UnixMillis(s + 20 * MINUTE), &mut t)
            .unwrap();
        assert_eq!(r.outcomes, vec![Outcome::Stored]);
        let tasks: Vec<(String, i64)> = c
            .query(
                "SELECT t.status, (SELECT count(*) FROM task_notes n WHERE n.task = t.id AND n.kind = 'returned')
                 FROM tasks t WHERE t.kind = 'anomaly' ORDER BY t.id",
                args![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            tasks,
            vec![("open".to_owned(), 1)],
            "{:?}: the breach returned on the live task",
            c.backend()
        );
    }
}

#[test]
fn a_postgres_writer_whose_connection_is_lost_reconnects_on_the_retry() {
    let Some(b) = both("ingest_reconnect") else {
        return;
    };
    let mut w = Writer::open_url(&b.pg_url, Synchronous::Normal).unwrap();
    bind(&mut w, &[("a1", "E1")]);
    let e1 = EntityId::new("E1").unwrap();
    let s = start();
    let (one, two) = (chlorine("a1", 1, s, 0.6), chlorine("a1", 2, s, 0.6));
    w.commit(&[item(&e1, &one)], UnixMillis::now()).unwrap();
    // The server ends the writer's session (as a restart or an administrator would).
    let ended: Vec<bool> = b
        .postgres
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        ended.iter().any(|e| *e),
        "the writer's session was there to end"
    );
    let mut failed = 0;
    let report = loop {
        match w.commit(&[item(&e1, &two)], UnixMillis::now()) {
            Ok(r) => break r,
            Err(e) => {
                failed += 1;
                assert!(failed < 3, "the retry did not reconnect: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    assert_eq!(report.outcomes, vec![Outcome::Stored]);
    let n: i64 = b
        .postgres
        .query_row("SELECT count(*) FROM batches", args![], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn time_driven_rules_on_postgres_tick_the_entities_no_commit_holds() {
    let Some(b) = both("ingest_tick") else { return };
    let book = Rulebook::load(None).unwrap();
    let silent_since = UnixMillis(UnixMillis::now().0 - 120 * MINUTE);
    let e1 = EntityId::new("E1").unwrap();
    let open = |c: &Conn| -> i64 {
        c.query_row(
            "SELECT count(*) FROM tasks WHERE kind = 'anomaly' AND entity = 'E1' AND status = 'open'",
            args![],
            |r| r.get(0),
        )
        .unwrap()
    };
    for (url, c) in [(&b.sqlite_url, &b.sqlite), (&b.pg_url, &b.postgres)] {
        let mut w = Writer::open_url(url, Synchronous::Normal).unwrap();
        bind(&mut w, &[("a1", "E1")]);
        let mut t = Tracker::load(
            w.conn(),
            (*book.rules()).clone(),
            (*book.calendar()).clone(),
            &[(e1.clone(), Domain::Pool)],
            silent_since,
        )
        .unwrap();
        let tick = |w: &mut Writer, t: &mut Tracker| {
            w.transact(&mut |tx| t.tick(tx, UnixMillis::now()).map_err(|e| e.to_string()))
                .unwrap()
        };
        if c.backend() == Backend::Postgres {
            // A commit of another collector holds E1 right now: the tick passes it over.
            let other = db::connect(url, Mode::Write).unwrap();
            let held = other.transaction_concurrent().unwrap();
            held.query_once(
                "SELECT name FROM entities WHERE name = $1 FOR NO KEY UPDATE",
                args!["E1"],
                |_| Ok(()),
            )
            .unwrap();
            tick(&mut w, &mut t);
            assert_eq!(
                open(c),
                0,
                "E1 was held: not ticked, and the tick did not wait"
            );
            let written: i64 = c
                .query_row(
                    "SELECT count(*) FROM rule_state WHERE entity = 'E1'",
                    args![],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(written, 0, "nor was its state written without its claim");
            held.commit().unwrap();
        }
        tick(&mut w, &mut t);
        assert_eq!(open(c), 1, "{:?}: two hours without data", c.backend());
    }
}

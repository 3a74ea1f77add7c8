//! PostgreSQL shared by collectors: concurrent writers, the sink watermark, a lost connection, the ticker beside commits.

use super::*;

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
                // The first commit meets the ended session; the writer reconnects for the
                // next one, which must then succeed.
                assert!(failed < 2, "the retry did not reconnect: {e}");
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

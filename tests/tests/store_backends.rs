//! SQLite and PostgreSQL behind the store's one interface (`store::db`): the two schemas have
//! the same tables, columns and indexes, and the same SQL gives the same answers on both,
//! including the places where the engines differ unless the SQL says exactly what it means
//! (NULL ordering, integer sums, upserts, `RETURNING`). Needs PostgreSQL (skipped without it
//! unless `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::collections::BTreeSet;
use std::time::Duration;

use spotcheck_collector::store::db::{
    self, args, Backend, Conn, DbError, DbUrl, FromColumn, Mode, Sql, Value,
};
use spotcheck_e2e::postgres::both;
use spotcheck_e2e::wait_for;

/// Any column, shown the same way whichever engine it came from.
#[derive(Debug, PartialEq, Eq, Clone, PartialOrd, Ord)]
struct Shown(String);

impl FromColumn for Shown {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        Ok(Shown(match v {
            Value::Null => "NULL".into(),
            Value::Int(i) => format!("int {i}"),
            Value::Real(f) => format!("real {f}"),
            Value::Text(s) => format!("text {s:?}"),
            Value::Blob(b) => format!("bytes {}", hex(b)),
        }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rows(c: &Conn, sql: &str, a: &[&dyn db::Arg]) -> Vec<Vec<Shown>> {
    c.query(sql, a, |r| {
        let mut out = Vec::new();
        let mut i = 0;
        // Read columns until the row has no more.
        while let Ok(v) = r.get::<Shown>(i) {
            out.push(v);
            i += 1;
        }
        Ok(out)
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// (table, column, kind, nullable) of every column; kind is int, text or bytes.
fn columns(c: &Conn) -> BTreeSet<(String, String, String, bool)> {
    let sql = match c.backend() {
        Backend::Sqlite => {
            "SELECT m.name, p.name, p.type, p.\"notnull\" = 0 AND p.pk = 0
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres => {
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text,
                    c.is_nullable = 'YES' AND k.column_name IS NULL
             FROM information_schema.columns c
             LEFT JOIN information_schema.key_column_usage k
               ON k.table_name = c.table_name AND k.column_name = c.column_name
              AND k.constraint_name = c.table_name || '_pkey'
             WHERE c.table_schema = 'public' AND c.table_name <> 'spotcheck_schema'
               AND c.column_name <> 'rowid'"
        }
    };
    c.query(sql, args![], |r| {
        let kind: String = r.get(2)?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "integer" | "bigint" => "int",
            "text" => "text",
            "blob" | "bytea" => "bytes",
            other => panic!("unexpected column type {other}"),
        };
        Ok((r.get(0)?, r.get(1)?, kind.to_owned(), r.get::<bool>(3)?))
    })
    .unwrap()
    .into_iter()
    .collect()
}

fn indexes(c: &Conn) -> BTreeSet<String> {
    let sql = match c.backend() {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        }
        Backend::Postgres => {
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'
               AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'"
        }
    };
    c.query(sql, args![], |r| r.get(0))
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn both_schemas_have_the_same_tables_columns_and_indexes() {
    let Some(b) = both("schemas") else { return };
    let (s, p) = (columns(&b.sqlite), columns(&b.postgres));
    assert!(s.len() > 100, "{} columns", s.len());
    let only_s: Vec<_> = s.difference(&p).collect();
    let only_p: Vec<_> = p.difference(&s).collect();
    assert!(
        only_s.is_empty() && only_p.is_empty(),
        "only in SQLite: {only_s:#?}\nonly in PostgreSQL: {only_p:#?}"
    );
    assert_eq!(indexes(&b.sqlite), indexes(&b.postgres));
}

#[test]
fn the_same_sql_gives_the_same_answers_on_both() {
    let Some(b) = both("answers") else { return };
    let mut answers = Vec::new();
    for c in [&b.sqlite, &b.postgres] {
        let mut seen: Vec<Vec<Vec<Shown>>> = Vec::new();
        // Identity columns assigned by the engine, read back with RETURNING.
        for (name, entity) in [("a1", "E1"), ("a2", "E1"), ("a3", "E2")] {
            seen.push(rows(
                c,
                "INSERT INTO agents (name, entity, domain) VALUES ($1, $2, $3) RETURNING id",
                args![name, entity, "pool"],
            ));
        }
        // Dedupe by (agent, seq): the second insert of the same key returns nothing.
        for digest in [vec![1u8, 2], vec![1u8, 2], vec![9u8]] {
            seen.push(rows(
                c,
                "INSERT INTO batches (agent, seq, stream, items, received_ms, digest)
                 VALUES ($1, $2, 'readings', $3, $4, $5)
                 ON CONFLICT (agent, seq) DO NOTHING RETURNING seq",
                args![1i64, 7u64, 100usize, 1_700_000_000_000i64, digest],
            ));
        }
        for (seq, n) in [(7i64, 40i64), (8, 60)] {
            c.execute(
                "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data)
                 VALUES (1, 1, $1, $2, 1, $3, $4, $5)",
                args![seq * 1000, seq * 1000 + 999, seq, n, vec![0u8, 255, 7]],
            )
            .unwrap();
        }
        // The sink's cursor query: SUM of integers cast back to an integer.
        seen.push(rows(
            c,
            "SELECT coalesce(max(rowid), $1), CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks WHERE rowid > $1",
            args![0i64],
        ));
        seen.push(rows(
            c,
            "SELECT seq, n, data, length(data) FROM reading_chunks ORDER BY seq",
            args![],
        ));
        // At most one live anomaly task per (entity, rule): the partial unique index. (Not
        // the ids: a refused insert uses up an identity value on PostgreSQL, not on SQLite.
        // Ids are unique and increasing on both, never dense.)
        for (entity, status) in [
            ("E1", "open"),
            ("E1", "open"),
            ("E1", "resolved"),
            ("E2", "open"),
        ] {
            seen.push(rows(
                c,
                "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status, rule, opened_ms)
                 VALUES ('anomaly', $1, 'health', 'pool-water', '2026-01-01', '2026-01-31', $2, 'pool/chlorine', $3)
                 ON CONFLICT DO NOTHING RETURNING entity, status",
                args![entity, status, 5i64],
            ));
        }
        c.execute(
            "UPDATE tasks SET cleared_ms = $1 WHERE entity = $2",
            args![42i64, "E2"],
        )
        .unwrap();
        // NULLs sort first in SQLite and last in PostgreSQL unless the SQL says.
        seen.push(rows(
            c,
            "SELECT entity, status, cleared_ms FROM tasks ORDER BY cleared_ms NULLS FIRST, id",
            args![],
        ));
        seen.push(rows(
            c,
            "SELECT status, count(*), max(opened_ms) FROM tasks GROUP BY status ORDER BY status",
            args![],
        ));
        // Upsert of the rule engine's state.
        for state in ["{\"n\":1}", "{\"n\":2}"] {
            c.execute(
                "INSERT INTO rule_state (entity, rule, state) VALUES ($1, $2, $3)
                 ON CONFLICT (entity, rule) DO UPDATE SET state = excluded.state",
                args!["E1", "pool/chlorine", state],
            )
            .unwrap();
        }
        seen.push(rows(
            c,
            "SELECT entity, rule, state FROM rule_state",
            args![],
        ));
        // Flags are integers, `user` is quoted, reals are doubles.
        seen.push(rows(
            c,
            "INSERT INTO users (name, role, active, created_ms) VALUES ($1, 'admin', $2, 0) RETURNING id, active",
            args!["root", true],
        ));
        c.execute(
            "INSERT INTO api_tokens (\"user\", name, hash, created_ms, expires_ms, created_by) VALUES ($1, 'ci', 'h', 0, 1, 'cli')",
            args![1i64],
        )
        .unwrap();
        seen.push(rows(
            c,
            "SELECT u.name, t.name FROM api_tokens t JOIN users u ON u.id = t.\"user\"",
            args![],
        ));
        seen.push(rows(
            c,
            "SELECT CAST($1 AS DOUBLE PRECISION) / 4, 7 / 2, CAST($2 AS TEXT) || '-' || CAST($3 AS TEXT)",
            args![3.0f64, "a", "b"],
        ));
        // Parameters need not appear in their numeric order.
        seen.push(rows(
            c,
            "SELECT name FROM agents WHERE entity = $2 AND name <> $1 ORDER BY name",
            args!["a1", "E1"],
        ));
        answers.push(seen);
    }
    assert_eq!(answers[0].len(), answers[1].len());
    for (i, (s, p)) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(
            s, p,
            "statement {i}: SQLite (left) and PostgreSQL (right) differ"
        );
    }
    // And the answers are the ones the store relies on.
    assert_eq!(
        answers[1][4],
        Vec::<Vec<Shown>>::new(),
        "a duplicate batch is refused"
    );
    assert_eq!(
        answers[1][9],
        Vec::<Vec<Shown>>::new(),
        "a second live task is refused"
    );
}

#[test]
fn errors_say_what_was_wrong() {
    let Some(b) = both("errors") else { return };
    for c in [&b.sqlite, &b.postgres] {
        c.execute(
            "INSERT INTO entities (name, domain) VALUES ($1, 'pool')",
            args!["E1"],
        )
        .unwrap();
        let dup = c
            .execute(
                "INSERT INTO entities (name, domain) VALUES ($1, 'pool')",
                args!["E1"],
            )
            .unwrap_err();
        assert!(dup.is_unique_violation(), "{dup}");
        let msg = dup.to_string();
        assert!(
            msg.contains("entities") && msg.to_lowercase().contains("unique"),
            "{msg}"
        );
        let missing = c
            .execute(
                "INSERT INTO entities (name, domain) VALUES ($1, 'pool')",
                args![],
            )
            .unwrap_err();
        assert!(!missing.is_unique_violation());
        let none = c
            .query_row(
                "SELECT id FROM entities WHERE name = $1",
                args!["nobody"],
                |r| r.get::<i64>(0),
            )
            .unwrap_err();
        assert!(matches!(none, DbError::NoRow), "{none}");
        let wrong_type = c
            .query_row(
                "SELECT name FROM entities WHERE name = $1",
                args!["E1"],
                |r| r.get::<i64>(0),
            )
            .unwrap_err()
            .to_string();
        assert!(
            wrong_type.contains("column 0") && wrong_type.contains("integer"),
            "{wrong_type}"
        );
    }
    // PostgreSQL checks parameter types against the statement; the error names both.
    let e = b
        .postgres
        .query_row(
            "SELECT name FROM entities WHERE id = $1",
            args!["one"],
            |r| r.get::<String>(0),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("text") && e.contains("int8"), "{e}");
}

#[test]
fn a_dropped_transaction_rolls_back_and_writers_wait_for_each_other_across_connections() {
    let Some(b) = both("locks") else { return };
    for c in [&b.sqlite, &b.postgres] {
        let tx = c.transaction().unwrap();
        tx.execute("INSERT INTO plans (id, body) VALUES ('p1', '{}')", args![])
            .unwrap();
        drop(tx);
        let n: i64 = c
            .query_row("SELECT count(*) FROM plans", args![], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n,
            0,
            "{:?}: the dropped transaction's row is gone",
            c.backend()
        );
        assert!(c.is_idle());
    }
    // Two collectors' workflow writers: the second waits for the first's commit.
    let first = &b.postgres;
    let tx = first.transaction().unwrap();
    tx.execute("INSERT INTO plans (id, body) VALUES ('p1', '{}')", args![])
        .unwrap();
    let url = b.pg_url.clone();
    let second = std::thread::spawn(move || {
        let c = db::connect(&url, Mode::Write).unwrap();
        let tx = c.transaction().unwrap();
        // Runs only once the first has committed: its row is there.
        let n: i64 = tx
            .query_row("SELECT count(*) FROM plans", args![], |r| r.get(0))
            .unwrap();
        tx.execute("INSERT INTO plans (id, body) VALUES ('p2', '{}')", args![])
            .unwrap();
        tx.commit().unwrap();
        n
    });
    let observer = db::connect(&b.pg_url, Mode::Read).unwrap();
    wait_for(
        "the second writer to wait for the lock",
        Duration::from_secs(20),
        || {
            let waiting: i64 = observer
                .query_row(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    args![],
                    |r| r.get(0),
                )
                .unwrap();
            (waiting == 1).then_some(())
        },
    );
    tx.commit().unwrap();
    assert_eq!(second.join().unwrap(), 1);
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(b) = both("migrations") else { return };
    // Reconnecting (a second collector, a restart) changes nothing.
    let again = db::connect(&b.pg_url, Mode::Write).unwrap();
    let version: i64 = again
        .query_row("SELECT version FROM spotcheck_schema", args![], |r| {
            r.get(0)
        })
        .unwrap();
    let rows: i64 = again
        .query_row("SELECT count(*) FROM spotcheck_schema", args![], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        (version as usize, rows),
        (spotcheck_collector::store::schema::MIGRATIONS.len(), 1)
    );
    again
        .execute("UPDATE spotcheck_schema SET version = 999", args![])
        .unwrap();
    let Err(e) = db::connect(&b.pg_url, Mode::Write) else {
        panic!("a newer schema was accepted")
    };
    assert!(e.to_string().contains("999"), "{e}");
    drop(b.sqlite);
}

#[test]
fn one_collector_leads_its_work_is_fenced_and_a_killed_leader_is_replaced() {
    use spotcheck_collector::store::leader::{Leadership, Role};
    let Some(b) = both("leader") else { return };
    let retry = Duration::from_millis(200);
    let a = Leadership::campaign(&b.pg_url, Role::Collector, retry);
    wait_for("a leader", Duration::from_secs(20), || {
        a.is_leader().then_some(())
    });
    let second = Leadership::campaign(&b.pg_url, Role::Collector, retry);
    let insert = |l: &Leadership, id: &str| {
        l.with_leader(|c| c.execute("INSERT INTO plans (id, body) VALUES ($1, '{}')", args![id]))
    };
    assert!(matches!(insert(&a, "by-a"), Some(Ok(1))));
    assert!(
        insert(&second, "by-second").is_none(),
        "a standby did the leader's work"
    );
    assert!(!second.is_leader());

    // The leader's process ends: its connection closes and the standby takes over.
    let dropped = std::time::Instant::now();
    drop(a);
    wait_for("the standby to lead", Duration::from_secs(20), || {
        second.is_leader().then_some(())
    });
    let failover = dropped.elapsed();
    assert!(matches!(insert(&second, "by-second"), Some(Ok(1))));

    // The new leader's connection is cut (a network failure): its work fails rather than
    // running beside another leader, and a third collector takes over.
    let third = Leadership::campaign(&b.pg_url, Role::Collector, retry);
    // Only the leadership lock's holder: the third collector may be running its migrations
    // under another advisory lock at this moment.
    let killed: i64 = b
        .postgres
        .query_row(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND objsubid = 1
               AND ((classid::bigint << 32) | objid::bigint) = $1",
            args![Role::Collector.lock_key()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(killed, 1);
    assert!(
        !matches!(insert(&second, "after-cut"), Some(Ok(_))),
        "work ran on a connection that no longer holds the lock"
    );
    // (`is_leader` is each process's own view and may lag by one retry; the work is what
    // is fenced.) Whichever leads next does the work, once.
    wait_for("a leader after the cut", Duration::from_secs(20), || {
        [&second, &third]
            .into_iter()
            .any(|l| matches!(insert(l, "after-cut"), Some(Ok(1))))
            .then_some(())
    });
    let plans: Vec<String> = b
        .postgres
        .query("SELECT id FROM plans ORDER BY id", args![], |r| r.get(0))
        .unwrap();
    assert_eq!(plans, ["after-cut", "by-a", "by-second"]);
    eprintln!("failover after the leader's exit: {failover:?}");
}

/// Collectors sharing one store append to one audit chain: every append runs in a write
/// transaction, which holds the store's write lock, so entries never interleave. Two writers
/// append at once on each engine; the chain verifies and has every entry, and the audited
/// draws told the notification outbox in the same transactions.
#[test]
fn concurrent_writers_append_to_one_audit_chain_on_both_engines() {
    use spotcheck_collector::audit::{self, EntryKind};
    use spotcheck_protocol::UnixMillis;
    let Some(b) = both("audit") else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url: DbUrl = format!("sqlite://{}", dir.path().join("a.db").display())
        .parse()
        .unwrap();
    const EACH: usize = 40;
    for url in [sqlite_url, b.pg_url.clone()] {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let c = db::connect(&url, Mode::Write).unwrap();
                    for i in 0..EACH {
                        let tx = c.transaction().unwrap();
                        audit::acting_as("system", || {
                            audit::append(
                                &tx,
                                EntryKind::DrawCommitted,
                                &format!("draw:w{w}-{i}"),
                                &serde_json::json!({"draw": format!("w{w}-{i}"), "commitment": "c"}),
                                UnixMillis::now(),
                            )
                        })
                        .unwrap();
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let c = db::connect(&url, Mode::Read).unwrap();
        let report = audit::verify_store(&c, None).unwrap();
        assert!(report.is_ok(), "{:?}: {report:?}", c.backend());
        let (entries, problems) = audit::read_all(&c).unwrap();
        assert!(problems.is_empty());
        assert_eq!(entries.len(), 2 * EACH, "{:?}", c.backend());
        assert_eq!(
            audit::head(&c).unwrap().map(|(seq, _)| seq),
            Some(2 * EACH as i64)
        );
        let told: i64 = c
            .query_row(
                "SELECT count(*) FROM notify_outbox WHERE kind = 'draw_committed'",
                args![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(told, 2 * EACH as i64, "{:?}", c.backend());
    }
}

//! The writer gives the same rows, outcomes and tasks on SQLite and PostgreSQL.

use super::*;

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

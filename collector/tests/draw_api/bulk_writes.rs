//! The draw's bulk writes against writing one row at a time: tasks, assignments and audit
//! entries written together are the same rows, ids and hashes on both engines, and the
//! reveal's larger page cache is given back.

use super::*;

/// Every row of the task tables and the audit log, as text, in key order.
fn task_rows(conn: &Conn) -> Vec<String> {
    let mut out: Vec<String> = conn
        .query(
            "SELECT id, draw, batch, joint_plan, departments, kind, entity, department, item,
                    window_start, window_end, status, opened_ms, updated_ms, rule, severity,
                    detail, entered_by, result, published_ms
             FROM tasks ORDER BY id",
            args![],
            |r| {
                let mut row = vec![format!("{}", r.get::<i64>(0)?)];
                for i in 1..12 {
                    row.push(format!("{:?}", r.get::<Option<String>>(i)?));
                }
                for i in 12..14 {
                    row.push(format!("{:?}", r.get::<Option<i64>>(i)?));
                }
                for i in 14..19 {
                    row.push(format!("{:?}", r.get::<Option<String>>(i)?));
                }
                row.push(format!("{:?}", r.get::<Option<i64>>(19)?));
                Ok(format!("task {}", row.join(" | ")))
            },
        )
        .unwrap();
    out.extend(
        conn.query(
            "SELECT task, inspector FROM task_inspectors ORDER BY task, inspector",
            args![],
            |r| Ok(format!("team {} {}", r.get::<i64>(0)?, r.get::<String>(1)?)),
        )
        .unwrap(),
    );
    out.extend(
        conn.query(
            "SELECT seq, ts_ms, kind, subject, body, prev_hash, hash FROM audit_log ORDER BY seq",
            args![],
            |r| {
                Ok(format!(
                    "audit {} {} {} {} {} {} {}",
                    r.get::<i64>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<String>(5)?,
                    r.get::<String>(6)?
                ))
            },
        )
        .unwrap(),
    );
    out
}

#[test]
fn drawn_tasks_written_together_are_the_rows_written_one_at_a_time() {
    use spotcheck_collector::registry::model::{Department, DrawId, InspectorId, ItemId};
    use spotcheck_collector::registry::CreditCode;
    use spotcheck_collector::tasks::store::{
        create_drawn, create_drawn_all, NewDrawn, NewDrawnAll,
    };
    use spotcheck_collector::tasks::Kind;

    // 150 tasks: chunks of 64, 64, 16, 4 and 2 rows; teams of two and three inspectors, so
    // the assignments' chunks differ from the tasks'.
    let codes: Vec<CreditCode> = (0..150)
        .map(|i| CreditCode::complete(&format!("91440305MA{i:07}")).unwrap())
        .collect();
    let inspectors: Vec<InspectorId> = (0..7)
        .map(|i| InspectorId::new(format!("hb-{i}")).unwrap())
        .collect();
    let teams: Vec<Vec<InspectorId>> = (0..codes.len())
        .map(|i| {
            let size = 2 + i % 2;
            (0..size)
                .map(|k| inspectors[(i + 3 * k) % inspectors.len()].clone())
                .collect()
        })
        .collect();
    let random = Kind::Random {
        draw: DrawId::new("2026-health-pool-b1").unwrap(),
        batch: Some("b1".into()),
    };
    let joint = Kind::Joint {
        draw: DrawId::new("2026-health-pool-b1-fire").unwrap(),
        batch: Some("b1".into()),
        plan: DrawId::new("2026-health-pool").unwrap(),
        departments: vec![
            Department::new("health").unwrap(),
            Department::new("fire").unwrap(),
        ],
    };
    let health = Department::new("health").unwrap();
    let fire = Department::new("fire").unwrap();
    let (water, safety) = (
        ItemId::new("pool-water-quality").unwrap(),
        ItemId::new("pool-fire-safety").unwrap(),
    );
    let runs: [(&Kind, &Department, &ItemId); 2] =
        [(&random, &health, &water), (&joint, &fire, &safety)];
    let window = ("2026-03-01", "2026-04-30");
    let now = UnixMillis(1_764_000_000_000);

    let one_by_one = tempfile::tempdir().unwrap();
    let one = store_conn(one_by_one.path());
    let tx = one.transaction().unwrap();
    let mut ids_one = Vec::new();
    for (kind, department, item) in runs {
        for (code, team) in codes.iter().zip(&teams) {
            let t = NewDrawn {
                kind,
                entity: code,
                department,
                item,
                window,
                inspectors: team,
            };
            ids_one.push(create_drawn(&tx, &t, now).unwrap());
        }
    }
    tx.commit().unwrap();

    let together = tempfile::tempdir().unwrap();
    let all = store_conn(together.path());
    let tx = all.transaction().unwrap();
    let mut ids_all = Vec::new();
    for (kind, department, item) in runs {
        let t = NewDrawnAll {
            kind,
            department,
            item,
            window,
            teams: codes.iter().zip(&teams).map(|(c, t)| (c, &t[..])).collect(),
        };
        ids_all.extend(create_drawn_all(&tx, &t, now).unwrap());
    }
    tx.commit().unwrap();

    assert_eq!(ids_all, ids_one);
    let (rows_one, rows_all) = (task_rows(&one), task_rows(&all));
    assert_eq!(
        rows_one.len(),
        300 + 2 * 375 + 300,
        "tasks, assignments, audit entries"
    );
    assert_eq!(rows_all, rows_one);
}

/// Every row of the audit log, as text, in seq order.
fn audit_rows(conn: &Conn) -> Vec<String> {
    task_rows(conn)
        .into_iter()
        .filter(|r| r.starts_with("audit "))
        .collect()
}

#[test]
fn audit_entries_appended_together_are_the_entries_appended_one_by_one() {
    use serde_json::json;
    use spotcheck_collector::audit::{self, Actor, EntryKind, NewEntry};

    // 37 entries: two statements of 16 rows, then five of one; every kind, nested bodies
    // with keys out of order, non-ASCII text, one body giving its own "by"; an acting user
    // with a token; both after entries already in the log.
    let entries: Vec<NewEntry> = (0..37)
        .map(|i| NewEntry {
            kind: EntryKind::ALL[i % EntryKind::ALL.len()],
            subject: format!("task:{}", 1000 + i),
            body: if i == 5 {
                json!({"task": i, "by": "cli"})
            } else {
                json!({"z": [i, "水质", {"b": null, "a": true}], "task": i, "inspectors": ["hb-1", "hb-2"]})
            },
        })
        .collect();
    let now = UnixMillis(1_764_000_000_000);
    let actor = Actor {
        by: "user:3".into(),
        token: Some(7),
    };
    let before = |conn: &Conn| {
        let tx = conn.transaction().unwrap();
        for i in 0..3 {
            audit::append(
                &tx,
                EntryKind::PlanSaved,
                &format!("plan:{i}"),
                &json!({"plan": i}),
                UnixMillis(now.0 - 1000),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    };

    let one_by_one = tempfile::tempdir().unwrap();
    let one = store_conn(one_by_one.path());
    before(&one);
    let tx = one.transaction().unwrap();
    audit::acting(actor.clone(), || {
        for e in &entries {
            audit::append(&tx, e.kind, &e.subject, &e.body, now).unwrap();
        }
    });
    tx.commit().unwrap();

    let together = tempfile::tempdir().unwrap();
    let all = store_conn(together.path());
    before(&all);
    let tx = all.transaction().unwrap();
    let head = audit::acting(actor, || {
        audit::append_all(&tx, entries.clone(), now).unwrap()
    });
    // Nothing to append: the head is returned as it is.
    assert_eq!(audit::append_all(&tx, Vec::new(), now).unwrap(), head);
    tx.commit().unwrap();

    let rows = audit_rows(&one);
    assert_eq!(rows.len(), 40);
    assert_eq!(audit_rows(&all), rows, "byte for byte");
    assert_eq!(head, audit::head(&one).unwrap());
    assert!(rows[3].contains(r#""by":"user:3""#) && rows[3].contains(r#""via_token":7"#));
    assert!(
        rows[8].contains(r#""by":"cli""#),
        "a body's own \"by\" is kept"
    );
    let report = audit::verify_store(&all, head.as_ref().map(|h| h.1.as_str())).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    // A refused entry fails the call as `append` would, naming it.
    let tx = all.transaction().unwrap();
    let refused = vec![
        entries[0].clone(),
        NewEntry {
            kind: EntryKind::Assignment,
            subject: "task:1".into(),
            body: json!({"task": 1, "inspector_name": "someone"}),
        },
    ];
    let e = audit::append_all(&tx, refused, now).unwrap_err();
    assert!(e.to_string().contains("inspector_name"), "{e}");
    drop(tx);
    assert_eq!(audit_rows(&all), rows, "rolled back");
}

#[test]
fn the_reveals_larger_page_cache_is_given_back_afterwards() {
    use spotcheck_collector::store::db::with_page_cache;
    let dir = tempfile::tempdir().unwrap();
    let conn = store_conn(dir.path());
    let size = |c: &Conn| -> Option<i64> {
        c.as_sqlite()
            .map(|s| s.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap())
    };
    let before = size(&conn);
    let inside = with_page_cache(&conn, 256 * 1024, || size(&conn)).unwrap();
    assert_eq!(size(&conn), before, "set back");
    if !test_store::on_postgres() {
        assert_eq!(inside, Some(-256 * 1024), "256 MiB inside");
    }
}

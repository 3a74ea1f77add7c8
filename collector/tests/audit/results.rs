//! Publishing results with audit entries, the deadline list and the public feed.

use rusqlite::Connection;
use spotcheck_collector::audit::{self, EntryKind};
use spotcheck_collector::results::{
    self, pending_publication, public_results, to_csv, to_json, Category, Deadline, PublicFilter,
    PublicResult, Published, Refusal, ResultsError, COLUMNS,
};
use spotcheck_protocol::UnixMillis;

use crate::helpers::{fresh, T0};

const DAY: i64 = 86_400_000;
const POOL: &str = "91440300MA5FXXXX1A";
const GAME: &str = "91440300MA5GAME01B";

/// Two entities, an item, an inspector and tasks 1..=5 in assorted states; task 2 carries a
/// comment naming a person and an assigned inspector, which must never reach the feed.
fn seeded() -> (tempfile::TempDir, Connection) {
    let (dir, conn) = fresh();
    conn.execute_batch(&format!(
        "INSERT INTO registry_entities VALUES
           ('{POOL}', '南山游泳馆有限公司', 'pool', '南山区', '深圳市南山区某路1号', '李四 13800000000', 'B', '[]'),
           ('{GAME}', '=HYPERLINK(\"x\")游戏有限公司', 'game', '南山区', '某路2号', '王五', 'C', '[]');
         INSERT INTO registry_items VALUES
           ('pool-water-quality', '游泳池水质', 'health', '《公共场所卫生管理条例》', 'key', 'remote', 'pool');
         INSERT INTO registry_inspectors VALUES
           ('hb-0001', '张三', 'CERT-440300-0001', 'health', '[\"pool\"]', 1, '[]');
         INSERT INTO tasks (id, kind, entity, department, item, window_start, window_end, status, result, comment, resolved_ms, draw, rule, severity) VALUES
           (1, 'random',  '{POOL}', 'health', 'pool-water-quality', '2026-03-01', '2026-03-31', 'resolved', 'no_problem', NULL, {T0}, '2026-health-pool-b1', NULL, NULL),
           (2, 'anomaly', '{POOL}', 'health', 'pool-water-quality', '2026-03-01', '2026-03-31', 'resolved', 'corrected', '与张三核实，救生员赵六在岗', {}, NULL, 'pool/free_chlorine', 'high'),
           (3, 'random',  '{GAME}', 'culture', 'minor-hours', '2026-04-01', '2026-04-30', 'drawn', NULL, NULL, NULL, '2026-culture-game-b1', NULL, NULL),
           (4, 'referral', '{GAME}', 'culture', 'minor-hours', '2026-04-01', '2026-04-30', 'resolved', 'refused_inspection', NULL, {}, NULL, NULL, NULL),
           (5, 'anomaly', '{POOL}', 'health', 'pool-water-quality', '2026-03-01', '2026-03-31', 'acknowledged', NULL, NULL, NULL, NULL, 'pool/ph', 'medium');
         INSERT INTO task_inspectors VALUES (2, 'hb-0001');",
        T0 + DAY,
        T0 + 2 * DAY,
    ))
    .unwrap();
    (dir, conn)
}

/// [`results::publish`] through the store interface, on the database `conn` has open.
fn publish(
    conn: &Connection,
    tasks: &[i64],
    now: UnixMillis,
) -> Result<Vec<Published>, ResultsError> {
    use spotcheck_collector::store::db::{connect, DbUrl, Mode};
    let path = conn.path().expect("a database file");
    let db = connect(&DbUrl::Sqlite(path.into()), Mode::Write).unwrap();
    results::publish(&db, tasks, now)
}

fn status(conn: &Connection, task: i64) -> (String, Option<i64>) {
    conn.query_row(
        "SELECT status, published_ms FROM tasks WHERE id = ?1",
        [task],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[test]
fn publish_refuses_tasks_that_are_not_resolved_and_then_publishes_nothing() {
    let (_dir, conn) = seeded();
    let err = publish(&conn, &[1, 3, 5, 99], UnixMillis(T0 + 3 * DAY)).unwrap_err();
    let ResultsError::Refused { refusals } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        refusals,
        &vec![
            Refusal::NotResolved {
                task: 3,
                status: "drawn".into()
            },
            Refusal::NotResolved {
                task: 5,
                status: "acknowledged".into()
            },
            Refusal::NoSuchTask { task: 99 },
        ]
    );
    let msg = err.to_string();
    assert!(msg.starts_with("nothing was published: task 3: not resolved (status \"drawn\"); record its result first"), "{msg}");
    assert_eq!(status(&conn, 1), ("resolved".into(), None));
    assert_eq!(audit::head(&conn).unwrap(), None, "no audit entry either");
}

#[test]
fn publish_marks_resolved_tasks_published_with_one_audit_entry_each() {
    let (_dir, conn) = seeded();
    let now = UnixMillis(T0 + 3 * DAY);
    let done = publish(&conn, &[1, 2, 1], now).unwrap();
    assert_eq!(done.len(), 2, "a repeated id counts once");
    assert_eq!(done[0].result, Category::NoProblem);
    assert_eq!(done[1].result, Category::Corrected);
    assert_eq!((done[0].audit_seq, done[1].audit_seq), (1, 2));
    assert_eq!(status(&conn, 1), ("published".into(), Some(now.0)));
    assert_eq!(status(&conn, 2), ("published".into(), Some(now.0)));
    let (entries, _) = audit::read_all(&conn).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.kind == EntryKind::Publication));
    assert_eq!(entries[1].subject, "task:2");
    assert_eq!(
        entries[1].body,
        format!(
            r#"{{"by":"system","entity":"{POOL}","published_ms":{},"resolved_ms":{},"result":"corrected","task":2}}"#,
            now.0,
            T0 + DAY
        )
    );
    assert!(!entries[1].body.contains("张三") && !entries[1].body.contains("hb-0001"));
    assert!(audit::verify_store(&conn, None).unwrap().is_ok());
    // Publishing again is refused.
    let err = publish(&conn, &[1], now).unwrap_err();
    assert!(
        err.to_string().contains("task 1: already published"),
        "{err}"
    );
}

#[test]
fn a_resolved_task_without_a_valid_result_is_refused() {
    let (_dir, conn) = seeded();
    conn.execute(
        "UPDATE tasks SET result = 'on_site_needed' WHERE id = 1",
        [],
    )
    .unwrap();
    let err = publish(&conn, &[1], UnixMillis(T0)).unwrap_err();
    assert!(
        matches!(&err, ResultsError::Refused { refusals } if refusals == &[Refusal::NoResult { task: 1 }]),
        "{err}"
    );
}

#[test]
fn pending_publication_lists_resolved_results_with_days_left_and_overdue_at_the_boundary() {
    let (_dir, conn) = seeded();
    let deadline = Deadline { days: 20 };
    // Task 1 was resolved at T0: exactly on its deadline now, task 2 a day later.
    let now = UnixMillis(T0 + 20 * DAY);
    let pending = pending_publication(&conn, deadline, now).unwrap();
    let ids: Vec<i64> = pending.iter().map(|p| p.task).collect();
    assert_eq!(ids, [1, 2, 4]);
    assert_eq!((pending[0].days_left, pending[0].overdue), (0, false));
    assert_eq!((pending[1].days_left, pending[1].overdue), (1, false));
    assert_eq!(pending[0].due_ms, T0 + 20 * DAY);
    let later = pending_publication(&conn, deadline, UnixMillis(now.0 + 1)).unwrap();
    assert_eq!((later[0].days_left, later[0].overdue), (-1, true));
    assert!(!later[1].overdue);
    publish(&conn, &[1], now).unwrap();
    let ids: Vec<i64> = pending_publication(&conn, deadline, now)
        .unwrap()
        .iter()
        .map(|p| p.task)
        .collect();
    assert_eq!(ids, [2, 4]);
}

fn published_feed(conn: &Connection) -> Vec<PublicResult> {
    publish(conn, &[1, 2], UnixMillis(T0 + 3 * DAY)).unwrap();
    publish(conn, &[4], UnixMillis(T0 + 4 * DAY)).unwrap();
    public_results(conn, &PublicFilter::default()).unwrap()
}

#[test]
fn the_public_feed_has_exactly_the_documented_columns_and_no_personal_data() {
    let (_dir, conn) = seeded();
    let rows = published_feed(&conn);
    assert_eq!(
        rows.iter().map(|r| r.task_id).collect::<Vec<_>>(),
        [4, 2, 1]
    );
    assert_eq!(
        COLUMNS,
        [
            "task_id",
            "kind",
            "entity_code",
            "entity_name",
            "domain",
            "department",
            "item",
            "item_name",
            "window_start",
            "window_end",
            "result_code",
            "result_label",
            "published_date",
            "published_ms",
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&to_json(&rows)).unwrap();
    for row in json.as_array().unwrap() {
        let mut keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = COLUMNS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
    let csv = to_csv(&rows).unwrap();
    for text in [to_json(&rows), csv.clone()] {
        for personal in [
            "张三",
            "赵六",
            "hb-0001",
            "CERT-440300-0001",
            "李四",
            "13800000000",
            "深圳市南山区某路1号",
            "inspector",
            "comment",
        ] {
            assert!(!text.contains(personal), "{personal} leaked into {text}");
        }
    }
    let r = &rows[1];
    assert_eq!(r.entity_code, POOL);
    assert_eq!(r.entity_name, "南山游泳馆有限公司");
    assert_eq!(r.domain, "pool");
    assert_eq!(r.item_name, "游泳池水质");
    assert_eq!(
        (r.result_code.as_str(), r.result_label.as_str()),
        ("corrected", "发现问题已责令改正")
    );
    assert_eq!(r.published_date, results::store::china_date(T0 + 3 * DAY));
    assert_eq!(rows[0].result_label, "不予配合检查情节严重");
}

#[test]
fn json_keys_come_in_column_order() {
    let (_dir, conn) = seeded();
    let json = to_json(&published_feed(&conn));
    let first = &json[..json.find('}').unwrap()];
    let positions: Vec<usize> = COLUMNS
        .iter()
        .map(|c| first.find(&format!("\"{c}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{first}");
}

#[test]
fn the_csv_has_a_bom_and_crlf_and_round_trips_through_the_csv_crate() {
    let (_dir, conn) = seeded();
    let rows = published_feed(&conn);
    let csv_text = to_csv(&rows).unwrap();
    assert!(
        csv_text.starts_with("\u{feff}task_id,kind,entity_code,"),
        "{csv_text}"
    );
    assert!(csv_text.contains("\r\n"));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, COLUMNS);
    let back: Vec<PublicResult> = reader.deserialize().map(Result::unwrap).collect();
    // The one formula-looking entity name comes back with its protective quote.
    let mut expected = rows.clone();
    expected[0].entity_name = format!("'{}", expected[0].entity_name);
    assert_eq!(back, expected);
}

#[test]
fn the_public_feed_filters_by_domain_department_entity_and_time() {
    let (_dir, conn) = seeded();
    published_feed(&conn);
    let ids = |f: PublicFilter| -> Vec<i64> {
        public_results(&conn, &f)
            .unwrap()
            .iter()
            .map(|r| r.task_id)
            .collect()
    };
    assert_eq!(
        ids(PublicFilter {
            domain: Some("game".into()),
            ..Default::default()
        }),
        [4]
    );
    assert_eq!(
        ids(PublicFilter {
            department: Some("health".into()),
            ..Default::default()
        }),
        [2, 1]
    );
    assert_eq!(
        ids(PublicFilter {
            entity: Some(POOL.into()),
            limit: Some(1),
            ..Default::default()
        }),
        [2]
    );
    assert_eq!(
        ids(PublicFilter {
            since_ms: Some(T0 + 4 * DAY),
            ..Default::default()
        }),
        [4]
    );
    assert_eq!(
        ids(PublicFilter {
            until_ms: Some(T0 + 4 * DAY),
            ..Default::default()
        }),
        [2, 1]
    );
}

#[test]
fn unpublished_results_never_reach_the_public_feed() {
    let (_dir, conn) = seeded();
    assert!(public_results(&conn, &PublicFilter::default())
        .unwrap()
        .is_empty());
}

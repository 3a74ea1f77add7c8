//! The workflow (plans, draws, tasks, checks, results, publication, joint inspections, the
//! queue and the report's figures) on both store engines: the same calls on a SQLite store
//! and on a PostgreSQL store give the same answers, down to the bytes of the draw records.
//! Needs PostgreSQL (skipped without it unless `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::collections::BTreeSet;
use std::fmt::Debug;

use spotcheck_collector::check::{self, Decider, Decision};
use spotcheck_collector::draw::store as draws;
use spotcheck_collector::draw::{files, verify};
use spotcheck_collector::joint;
use spotcheck_collector::plan::store as plans;
use spotcheck_collector::plan::{Batch, ClassRatio, Partner, Plan, PlanDate};
use spotcheck_collector::registry::model::{Department, DrawId, InspectorId, ItemId};
use spotcheck_collector::registry::CreditCode;
use spotcheck_collector::report::{self, Period};
use spotcheck_collector::results::{self, Category, Deadline, PublicFilter};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::rules::ChinaDay;
use spotcheck_collector::store::db::{args, Conn, Sql};
use spotcheck_collector::tasks::store as tasks;
use spotcheck_collector::tasks::{TaskFilter, TaskId};
use spotcheck_collector::views::queue::{self, QueueQuery, Sort};
use spotcheck_collector::views::{changes, Scope};
use spotcheck_e2e::postgres::{both, Both};
use spotcheck_protocol::{Domain, UnixMillis};

/// 2026-03-02 08:00 China time: inside the plans' first batch.
const NOW: i64 = 1_772_409_600_000;
const HOUR: i64 = 3_600_000;

/// Asserts that SQLite's answer (`a`) and PostgreSQL's (`b`) are the same.
fn same<T: PartialEq + Debug>(what: &str, a: &T, b: &T) {
    assert_eq!(a, b, "{what}: SQLite (left) and PostgreSQL (right) differ");
}

/// `f` on each engine, SQLite first.
fn each<T>(b: &Both, mut f: impl FnMut(&Conn) -> T) -> (T, T) {
    let [s, p] = b.each();
    (f(s), f(p))
}

fn code(i: u32) -> CreditCode {
    CreditCode::complete(&format!("91440300MA{i:07}")).unwrap()
}

/// The pool entities: 40, risk classes A–D in turn.
fn pools() -> Vec<CreditCode> {
    (0..40).map(code).collect()
}

/// The libraries, as an import would leave them: the pool item (rule pack `pool`) of
/// health and the fire safety item of fire; 40 pools; three health inspectors of the pool
/// field (one with a conflict), one inactive and one of another field; four fire inspectors.
fn libraries(c: &Conn) {
    for (id, name, department, pack) in [
        (
            "pool-water-quality",
            "游泳场所水质卫生",
            "health",
            Some("pool"),
        ),
        ("pool-fire-safety", "游泳场所消防安全", "fire", None),
    ] {
        c.execute(
            "INSERT INTO registry_items (id, name, department, legal_basis, kind, method, rule_pack)
             VALUES ($1, $2, $3, 'GB 37488-2019', '\"general\"', '\"both\"', $4)",
            args![id, name, department, pack],
        )
        .unwrap();
    }
    for (i, code) in pools().iter().enumerate() {
        c.execute(
            "INSERT INTO registry_entities (code, name, domain, district, address, contact, risk, agents)
             VALUES ($1, $2, 'pool', '南山区', '某路', '某人', $3, '[]')",
            args![
                code.as_str(),
                format!("南山游泳馆{i:02}有限公司"),
                ["A", "B", "C", "D"][i % 4]
            ],
        )
        .unwrap();
    }
    let conflict = serde_json::to_string(&[pools()[3].as_str()]).unwrap();
    for (id, department, fields, active, conflicts) in [
        ("hb-001", "health", "[\"pool\"]", 1, conflict.as_str()),
        ("hb-002", "health", "[\"pool\"]", 1, "[]"),
        ("hb-003", "health", "[\"pool\"]", 1, "[]"),
        ("hb-004", "health", "[\"pool\"]", 0, "[]"),
        ("hb-005", "health", "[\"hospital\"]", 1, "[]"),
        ("fd-001", "fire", "[\"pool\"]", 1, "[]"),
        ("fd-002", "fire", "[\"pool\"]", 1, "[]"),
        ("fd-003", "fire", "[\"pool\"]", 1, "[]"),
        ("fd-004", "fire", "[\"pool\"]", 1, "[]"),
    ] {
        c.execute(
            "INSERT INTO registry_inspectors (id, name, certificate, department, fields, active, conflicts)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![
                id,
                format!("检查员{id}"),
                format!("CERT-{id}"),
                department,
                fields,
                active,
                conflicts
            ],
        )
        .unwrap();
    }
}

/// A joint plan of health with fire, and a plan of health alone, over the pools.
fn the_plans() -> Vec<Plan> {
    let plan = |id: &str, partners: Vec<Partner>| Plan {
        id: DrawId::new(id).unwrap(),
        year: 2026,
        department: Department::new("health").unwrap(),
        item: ItemId::new("pool-water-quality").unwrap(),
        domain: Domain::Pool,
        district: None,
        ratios: ClassRatio::defaults(),
        inspectors_per_entity: 2,
        batches: vec![
            Batch {
                label: "b1".into(),
                start: PlanDate::new("2026-03-01").unwrap(),
                end: PlanDate::new("2026-04-30").unwrap(),
            },
            Batch {
                label: "b2".into(),
                start: PlanDate::new("2026-09-01").unwrap(),
                end: PlanDate::new("2026-10-31").unwrap(),
            },
        ],
        partners,
    };
    vec![
        plan(
            "2026-health-pool",
            vec![Partner {
                department: Department::new("fire").unwrap(),
                item: ItemId::new("pool-fire-safety").unwrap(),
            }],
        ),
        plan("2026-health-solo", vec![]),
    ]
}

/// Commits batch b1 of every plan on both engines and gives PostgreSQL's draws SQLite's seeds
/// and salt keys (a commitment draws them at random), so that the reveals must agree.
fn commit_with_the_same_seeds(sqlite: &Conn, postgres: &Conn) {
    for p in the_plans() {
        let [s, q] = [sqlite, postgres].map(|c| {
            plans::save(c, &p).unwrap();
            plans::commit_batch(c, p.id.as_str(), "b1", NOW - HOUR).unwrap()
        });
        assert_eq!(s.parameters, q.parameters);
        assert_eq!(s.digests.parameters, q.digests.parameters);
        assert_eq!(s.digests.inspectors, q.digests.inspectors);
        let id = format!("{}-b1", p.id);
        let row = sqlite
            .query_row(
                "SELECT commitment, digests, seed, salt_key, partners FROM draws WHERE id = $1",
                args![id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<String>(3)?,
                        r.get::<Option<String>>(4)?,
                    ))
                },
            )
            .unwrap();
        let n = postgres
            .execute(
                "UPDATE draws SET commitment = $1, digests = $2, seed = $3, salt_key = $4,
                                  partners = $5 WHERE id = $6",
                args![row.0, row.1, row.2, row.3, row.4, id],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

fn all_tasks(c: &Conn) -> Vec<spotcheck_collector::tasks::Task> {
    tasks::list(
        c,
        &TaskFilter {
            limit: 10_000,
            ..TaskFilter::default()
        },
    )
    .unwrap()
}

/// The stored records, by draw id, as the text the store holds.
fn stored_records(c: &Conn) -> Vec<(String, Option<String>)> {
    c.query("SELECT id, record FROM draws ORDER BY id", args![], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

/// `f` on two new connections to PostgreSQL at once (two collectors sharing the store),
/// released together; their answers, in thread order.
fn at_once<T: Send>(
    url: &spotcheck_collector::store::db::DbUrl,
    f: impl Fn(&Conn) -> T + Sync,
) -> Vec<T> {
    use spotcheck_collector::store::db::{connect, Mode};
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let c = connect(url, Mode::Write).unwrap();
                    start.wait();
                    f(&c)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// A SQLite store and a PostgreSQL database whose default collation is ICU's `en-US` (where
/// `a` sorts before `B`, and `-` and `_` weigh little), on a private server. Fields drop in
/// order: the connections before the server.
struct OtherCollation {
    sqlite: Conn,
    pg: Conn,
    _server: spotcheck_e2e::postgres::Postgres,
    _dir: tempfile::TempDir,
}

fn with_a_natural_language_collation(name: &str) -> Option<OtherCollation> {
    use spotcheck_collector::store::db::{connect, DbUrl, Mode};
    let dir = tempfile::tempdir().unwrap();
    let server = spotcheck_e2e::postgres::Postgres::start(dir.path())?;
    let admin = connect(&server.url("postgres").parse().unwrap(), Mode::Write).unwrap();
    admin
        .execute_batch(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.utf8'
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        ))
        .unwrap();
    drop(admin);
    let pg = connect(&server.url(name).parse().unwrap(), Mode::Write).unwrap();
    let sqlite_url: DbUrl = format!("sqlite://{}", dir.path().join("s.db").display())
        .parse()
        .unwrap();
    let sqlite = connect(&sqlite_url, Mode::Write).unwrap();
    Some(OtherCollation {
        sqlite,
        pg,
        _server: server,
        _dir: dir,
    })
}

mod concurrent;
mod draw_records;
mod task_flow;

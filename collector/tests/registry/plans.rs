//! Plans: commit then reveal, impossible draws that change nothing, progress, joint tasks.

use rusqlite::Connection;
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::draw::store::commit as draw_commit;
use spotcheck_collector::draw::store::{commitments, records, DrawStoreError};
use spotcheck_collector::draw::{verify, DrawError, Quota};
use spotcheck_collector::joint;
use spotcheck_collector::plan::store::{
    commit_batch, progress, reveal_batch, save, PlanStoreError,
};
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::store;
use spotcheck_demo::generate;

fn library(dir: &std::path::Path, per_domain: usize, inspectors: usize) -> Connection {
    let conn = store::open_for_writing(&store::db_path(dir), Synchronous::Normal).unwrap();
    let entities = generate::entities(per_domain, 3, 1);
    let inspectors = generate::inspectors(inspectors, &entities, 2);
    write(&conn, &Records::Entities(entities)).unwrap();
    write(&conn, &Records::Inspectors(inspectors)).unwrap();
    write(&conn, &Records::Items(generate::items())).unwrap();
    for p in generate::plans(2026) {
        save(&conn, &p).unwrap();
    }
    conn
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_committed_then_revealed_batch_verifies_and_creates_tasks_for_partners_too() {
    let dir = tempfile::tempdir().unwrap();
    let conn = library(dir.path(), 60, 20);
    let db = store_conn(&store::db_path(dir.path()));
    let c = commit_batch(&db, "2026-health-pool", "b1", 1).unwrap();
    assert_eq!(commitments(&conn, 10).unwrap(), vec![c.clone()]);
    assert!(
        records(&conn, 10).unwrap().is_empty(),
        "nothing is published before the reveal"
    );
    let r = reveal_batch(&db, "2026-health-pool", "b1", 2).unwrap();
    assert_eq!(r.commitment, c.commitment);
    assert_eq!(r.committed().digests, c.digests);
    assert!(verify(&r).is_empty());
    // The health draw, and the fire department's draw of its own inspectors for the same
    // entities: a record of its own that verifies.
    let all = records(&conn, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], r);
    let fire = &all[1];
    assert_eq!(fire.parameters.draw_id.as_str(), "2026-health-pool-b1-fire");
    assert!(verify(fire).is_empty());
    let entities = |r: &spotcheck_collector::draw::DrawRecord| {
        let mut e: Vec<String> = r.draws.iter().map(|a| a.entity.to_string()).collect();
        e.sort();
        e
    };
    assert_eq!(entities(fire), entities(&r), "the same entities, one visit");
    // One health and one fire task per drawn entity, each with its own department's
    // inspectors (at least two).
    assert_eq!(count(&conn, "tasks"), 2 * r.draws.len() as i64);
    let staffed: Vec<(String, String)> = conn
        .prepare(
            "SELECT t.department, i.department FROM tasks t
             JOIN task_inspectors ti ON ti.task = t.id
             JOIN registry_inspectors i ON i.id = ti.inspector",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(staffed.len(), 4 * r.draws.len());
    assert!(
        staffed.iter().all(|(task, inspector)| task == inspector),
        "{staffed:?}"
    );
    let joint = joint::merge(&joint::stored_tasks(&conn).unwrap());
    assert_eq!(joint.len(), r.draws.len());

    let p = progress(
        &conn,
        &spotcheck_collector::plan::store::plan(&conn, "2026-health-pool").unwrap(),
    )
    .unwrap();
    assert_eq!(p.drawn, r.draws.len() as u64);
    assert_eq!(p.batches_drawn, 1);

    // The second batch excludes the entities drawn in the first.
    commit_batch(&db, "2026-health-pool", "b2", 3).unwrap();
    let r2 = reveal_batch(&db, "2026-health-pool", "b2", 4).unwrap();
    assert!(r2
        .candidates
        .iter()
        .all(|c| r.draws.iter().all(|a| a.entity != c.code)));
}

#[test]
fn a_revealed_draw_cannot_be_revealed_again() {
    let dir = tempfile::tempdir().unwrap();
    let _conn = library(dir.path(), 30, 10);
    let db = store_conn(&store::db_path(dir.path()));
    commit_batch(&db, "2026-culture-game", "b1", 1).unwrap();
    reveal_batch(&db, "2026-culture-game", "b1", 2).unwrap();
    let e = reveal_batch(&db, "2026-culture-game", "b1", 3).unwrap_err();
    assert!(
        matches!(e, PlanStoreError::DrawStore(DrawStoreError::Revealed(_))),
        "{e}"
    );
}

#[test]
fn too_few_inspectors_fails_the_commit_with_the_reason_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // One culture inspector: every game entity has fewer than two.
    let conn = library(dir.path(), 30, 1);
    let db = store_conn(&store::db_path(dir.path()));
    let e = commit_batch(&db, "2026-culture-game", "b1", 1).unwrap_err();
    assert!(
        matches!(
            e,
            PlanStoreError::DrawStore(DrawStoreError::Draw(DrawError::TooFewInspectors {
                needed: 2,
                ..
            }))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("needs 2 inspectors"), "{e}");
    assert_eq!(count(&conn, "draws"), 0);
    assert_eq!(count(&conn, "tasks"), 0);
}

#[test]
fn a_quota_above_the_pool_fails_the_commit_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conn = library(dir.path(), 30, 10);
    let db = store_conn(&store::db_path(dir.path()));
    let plan = spotcheck_collector::plan::store::plan(&conn, "2026-culture-game").unwrap();
    let entities = spotcheck_collector::registry::store::entities(&conn).unwrap();
    let inspectors = spotcheck_collector::registry::store::inspectors(&conn).unwrap();
    let mut input = plan
        .draw_input(
            &plan.batches[0],
            &entities,
            &inspectors,
            &Default::default(),
        )
        .unwrap();
    let d = input
        .candidates
        .iter()
        .filter(|c| c.class.as_str() == "D")
        .count() as u64;
    input.parameters.strata[3].quota = Quota::Count(d + 1);
    let e = draw_commit(&db, Some("2026-culture-game"), &input, None, 1).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "stratum D asks for {} entities but only {d}",
            d + 1
        )),
        "{e}"
    );
    assert_eq!(count(&conn, "draws"), 0);
}

#[test]
fn a_library_changed_after_the_commit_blocks_the_reveal() {
    let dir = tempfile::tempdir().unwrap();
    let conn = library(dir.path(), 30, 10);
    let db = store_conn(&store::db_path(dir.path()));
    commit_batch(&db, "2026-culture-game", "b1", 1).unwrap();
    let extra = generate::entities(31, 0, 99)
        .into_iter()
        .filter(|e| e.domain == spotcheck_protocol::Domain::Game)
        .take(1)
        .collect();
    write(&conn, &Records::Entities(extra)).unwrap();
    let e = reveal_batch(&db, "2026-culture-game", "b1", 2).unwrap_err();
    assert!(e.to_string().contains("candidate list"), "{e}");
    assert!(records(&conn, 10).unwrap().is_empty());
    assert_eq!(count(&conn, "tasks"), 0);
}

/// Class A at its maximum of 5 % over four batches: the plan's year never draws more than
/// 5 % of the class, and the batches share the annual target instead of each taking 5 % of
/// what is left.
#[test]
fn a_class_ratio_holds_for_the_year_over_four_batches() {
    let dir = tempfile::tempdir().unwrap();
    let conn = library(dir.path(), 400, 40);
    let db = store_conn(&store::db_path(dir.path()));
    let mut plan = spotcheck_collector::plan::store::plan(&conn, "2026-culture-game").unwrap();
    plan.batches = (1..=4)
        .map(|q| spotcheck_collector::plan::Batch {
            label: format!("q{q}"),
            start: spotcheck_collector::plan::PlanDate::new(&format!("2026-{:02}-01", q * 3 - 2))
                .unwrap(),
            end: spotcheck_collector::plan::PlanDate::new(&format!("2026-{:02}-28", q * 3 - 1))
                .unwrap(),
        })
        .collect();
    save(&conn, &plan).unwrap();
    let class_of = |conn: &Connection, class: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM registry_entities WHERE domain = 'game' AND risk = ?1",
            [class],
            |r| r.get(0),
        )
        .unwrap()
    };
    let population = class_of(&conn, "A");
    assert!(
        population >= 40,
        "enough class A games to tell 5 % per batch from 5 % a year: {population}"
    );
    let drawn_a = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT COUNT(DISTINCT t.entity) FROM tasks t JOIN registry_entities e ON e.code = t.entity
             WHERE t.department = 'culture' AND e.risk = 'A' AND t.draw IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let mut per_batch = Vec::new();
    for (i, b) in ["q1", "q2", "q3", "q4"].iter().enumerate() {
        commit_batch(&db, "2026-culture-game", b, 10 + i as i64).unwrap();
        reveal_batch(&db, "2026-culture-game", b, 20 + i as i64).unwrap();
        let drawn = drawn_a(&conn);
        assert!(
            drawn * 10_000 <= population * 500,
            "after batch {b}: {drawn} of {population} class A drawn, above 5 %"
        );
        per_batch.push(drawn);
    }
    let target = population * 500 / 10_000;
    assert_eq!(
        per_batch.last().copied(),
        Some(target),
        "the year completes the annual target of ⌊{population} × 5 %⌋: {per_batch:?}"
    );
    assert!(
        per_batch[0] < target,
        "the first batch takes its share, not the whole year's: {per_batch:?}"
    );
    let p = progress(&conn, &plan).unwrap();
    assert_eq!(p.batches_drawn, 4);
    // Progress per class: planned (the annual target), drawn, checked, published.
    let a = p.classes.iter().find(|c| c.class.as_str() == "A").unwrap();
    assert_eq!(
        (a.population, a.planned, a.drawn, a.checked, a.published),
        (population as u64, target as u64, target as u64, 0, 0)
    );
    assert_eq!(p.classes.len(), plan.ratios.len());
    assert_eq!(p.planned, p.classes.iter().map(|c| c.planned).sum::<u64>());
    assert_eq!(p.drawn, p.classes.iter().map(|c| c.drawn).sum::<u64>());
}

/// An anomaly task takes its department and item from the item list (一单), not from a fixed
/// table of domains: a bureau that gives pool water to another department sees its tasks there.
#[test]
fn an_anomaly_task_takes_the_department_of_its_item() {
    use spotcheck_collector::config::AgentBinding;
    use spotcheck_collector::registry::model::Department;
    use spotcheck_collector::rulebook::Rulebook;
    use spotcheck_collector::store::writer::Item;
    use spotcheck_collector::store::Writer;
    use spotcheck_collector::tasks::anomaly::Tracker;
    use spotcheck_protocol::{
        AgentId, Batch, Domain, EntityId, Limits, Metric, Quality, Reading, ReadingBatch, Seq,
        Unit, UnixMillis, Version,
    };

    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let conn = store::open_for_writing(&db, Synchronous::Normal).unwrap();
    let mut items = generate::items();
    for i in &mut items {
        if i.rule_pack.as_deref() == Some("pool") {
            i.department = Department::new("sports-bureau").unwrap();
        }
    }
    write(&conn, &Records::Items(items)).unwrap();
    drop(conn);

    let agent = AgentId::new("pool-agent-1").unwrap();
    let entity = EntityId::new("91440300MA5ABCDE1X").unwrap();
    let mut w = Writer::open(&db, Synchronous::Normal).unwrap();
    w.register_agents(&[AgentBinding {
        id: agent.clone(),
        entity: entity.clone(),
        domain: Domain::Pool,
    }])
    .unwrap();
    let book = Rulebook::load(None).unwrap();
    let mut tracker = Tracker::load(
        w.connection(),
        (*book.rules()).clone(),
        (*book.calendar()).clone(),
        &[],
        UnixMillis::now(),
    )
    .unwrap();
    // Free chlorine far below its band for an hour.
    let start = UnixMillis::now().0 - 2 * 3_600_000;
    let limits = Limits {
        max_age_ms: i64::MAX / 2,
        ..Limits::default()
    };
    let batches: Vec<_> = (0..6u64)
        .map(|b| {
            let readings = (0..10)
                .map(|m| Reading {
                    metric: Metric::new(Metric::FREE_CHLORINE).unwrap(),
                    value: 0.05,
                    unit: Unit::MilligramPerLitre,
                    ts_ms: UnixMillis(start + (b as i64 * 10 + m) * 60_000),
                    quality: Quality::Good,
                })
                .collect();
            let batch = Batch::Readings(ReadingBatch {
                v: Version,
                agent: agent.clone(),
                seq: Seq(b + 1),
                after: None,
                readings,
            });
            spotcheck_protocol::check(batch, &limits, UnixMillis::now()).unwrap()
        })
        .collect();
    let items: Vec<Item> = batches
        .iter()
        .map(|b| Item::Batch {
            entity: &entity,
            domain: Domain::Pool,
            batch: b,
        })
        .collect();
    w.commit_observed(&items, UnixMillis::now(), &mut tracker)
        .unwrap();
    let (department, item): (String, String) = w
        .connection()
        .query_row(
            "SELECT department, item FROM tasks WHERE kind = 'anomaly' AND rule = 'pool/free_chlorine'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(department, "sports-bureau");
    assert_eq!(item, "pool-water-quality");
}

/// A store connection to the SQLite file `db` (for the modules that take one).
fn store_conn(db: &std::path::Path) -> spotcheck_collector::store::db::Conn {
    use spotcheck_collector::store::db::{connect, DbUrl, Mode};
    connect(&DbUrl::Sqlite(db.to_owned()), Mode::Write).unwrap()
}

/// `registry::store::write` (which takes a store connection) on the SQLite file `conn` has open.
fn write(
    conn: &rusqlite::Connection,
    records: &Records,
) -> Result<usize, spotcheck_collector::registry::store::RegistryStoreError> {
    use spotcheck_collector::store::db::{connect, DbUrl, Mode};
    let path = conn.path().expect("a database file");
    let db = connect(&DbUrl::Sqlite(path.into()), Mode::Write)?;
    spotcheck_collector::registry::store::write(&db, records)
}

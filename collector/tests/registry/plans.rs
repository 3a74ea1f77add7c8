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
use spotcheck_collector::registry::generate;
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::registry::store::write;
use spotcheck_collector::store;

fn library(dir: &std::path::Path, per_domain: usize, inspectors: usize) -> Connection {
    let mut conn = store::open_for_writing(&store::db_path(dir), Synchronous::Normal).unwrap();
    let entities = generate::entities(per_domain, 3, 1);
    let inspectors = generate::inspectors(inspectors, &entities, 2);
    write(&mut conn, &Records::Entities(entities)).unwrap();
    write(&mut conn, &Records::Inspectors(inspectors)).unwrap();
    write(&mut conn, &Records::Items(generate::items())).unwrap();
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
    let mut conn = library(dir.path(), 60, 20);
    let c = commit_batch(&conn, "2026-health-pool", "b1", 1).unwrap();
    assert_eq!(commitments(&conn, 10).unwrap(), vec![c.clone()]);
    assert!(
        records(&conn, 10).unwrap().is_empty(),
        "nothing is published before the reveal"
    );
    let r = reveal_batch(&mut conn, "2026-health-pool", "b1", 2).unwrap();
    assert_eq!(r.commitment, c.commitment);
    assert_eq!(r.committed().digests, c.digests);
    assert!(verify(&r).is_empty());
    assert_eq!(records(&conn, 10).unwrap(), vec![r.clone()]);
    // One health and one fire task per drawn entity.
    assert_eq!(count(&conn, "tasks"), 2 * r.draws.len() as i64);
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
    commit_batch(&conn, "2026-health-pool", "b2", 3).unwrap();
    let r2 = reveal_batch(&mut conn, "2026-health-pool", "b2", 4).unwrap();
    assert!(r2
        .candidates
        .iter()
        .all(|c| r.draws.iter().all(|a| a.entity != c.code)));
}

#[test]
fn a_revealed_draw_cannot_be_revealed_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = library(dir.path(), 30, 10);
    commit_batch(&conn, "2026-culture-game", "b1", 1).unwrap();
    reveal_batch(&mut conn, "2026-culture-game", "b1", 2).unwrap();
    let e = reveal_batch(&mut conn, "2026-culture-game", "b1", 3).unwrap_err();
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
    let e = commit_batch(&conn, "2026-culture-game", "b1", 1).unwrap_err();
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
    let e = draw_commit(&conn, Some("2026-culture-game"), &input, None, 1).unwrap_err();
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
    let mut conn = library(dir.path(), 30, 10);
    commit_batch(&conn, "2026-culture-game", "b1", 1).unwrap();
    let extra = generate::entities(31, 0, 99)
        .into_iter()
        .filter(|e| e.domain == spotcheck_protocol::Domain::Game)
        .take(1)
        .collect();
    write(&mut conn, &Records::Entities(extra)).unwrap();
    let e = reveal_batch(&mut conn, "2026-culture-game", "b1", 2).unwrap_err();
    assert!(e.to_string().contains("candidate list"), "{e}");
    assert!(records(&conn, 10).unwrap().is_empty());
    assert_eq!(count(&conn, "tasks"), 0);
}

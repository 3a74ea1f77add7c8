//! Two collectors revealing, deciding or publishing at once on PostgreSQL take turns.

use super::*;

#[test]
fn two_collectors_revealing_deciding_or_publishing_at_once_take_turns_on_postgresql() {
    let Some(b) = both("workflow_turns") else {
        return;
    };
    let pg = &b.postgres;
    libraries(pg);
    let joint = &the_plans()[0];
    plans::save(pg, joint).unwrap();
    plans::commit_batch(pg, joint.id.as_str(), "b1", NOW - HOUR).unwrap();

    // One reveal draws; the other finds it revealed. One set of tasks.
    let revealed = at_once(&b.pg_url, |c| {
        plans::reveal_batch(c, joint.id.as_str(), "b1", NOW).map_err(|e| e.to_string())
    });
    let won: Vec<_> = revealed.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{revealed:?}");
    assert!(
        revealed
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.contains("already revealed"))),
        "{revealed:?}"
    );
    let tasks = all_tasks(pg);
    assert_eq!(
        tasks.len(),
        2 * won[0].draws.len(),
        "health's and fire's, once"
    );

    // A referral checked once; two inspectors decide on the verdict at once: one decision.
    let pool = pools()[5].to_string();
    let referral = tasks::NewReferral {
        entity: &pool,
        department: "health",
        item: "pool-water-quality",
        reason: "a complaint",
        entered_by: "user:1",
    };
    let id = tasks::create_referral(pg, &referral, UnixMillis(NOW))
        .unwrap()
        .id;
    let team = vec!["hb-002".to_string(), "hb-003".to_string()];
    tasks::assign_checked(pg, id, &team, UnixMillis(NOW)).unwrap();
    let (rules, calendar) = {
        let book = Rulebook::load(None).unwrap();
        (book.rules(), book.calendar())
    };
    let check = check::run(
        pg,
        &rules,
        &calendar,
        id,
        Some((NOW - HOUR, NOW)),
        UnixMillis(NOW),
    )
    .unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let decided = at_once(&b.pg_url, |c| {
        let who = team[n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)].clone();
        check::decide(
            c,
            check.id.0,
            &Decider::Inspector(who),
            Decision::Override {
                result: Category::NoProblem,
                reason: "on site: nothing found".into(),
            },
            UnixMillis(NOW + 1),
        )
        .map_err(|e| e.to_string())
    });
    assert_eq!(
        decided.iter().filter(|d| d.is_ok()).count(),
        1,
        "{decided:?}"
    );
    assert!(
        decided
            .iter()
            .any(|d| d.as_ref().is_err_and(|e| e.contains("already decided"))),
        "{decided:?}"
    );

    // Published once: the other publication is refused and publishes nothing.
    let published = at_once(&b.pg_url, |c| {
        results::publish(c, &[id.0], UnixMillis(NOW + 2)).map_err(|e| e.to_string())
    });
    assert_eq!(
        published.iter().filter(|p| p.is_ok()).count(),
        1,
        "{published:?}"
    );
    assert!(
        published
            .iter()
            .any(|p| p.as_ref().is_err_and(|e| e.contains("already published"))),
        "{published:?}"
    );
    // The audit chain took every change in turn.
    let report = spotcheck_collector::audit::verify_store(pg, None).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

//! The notification outbox on both engines, and two workers claiming at once on PostgreSQL.

use super::*;

#[test]
fn the_outbox_routes_persists_claims_sends_and_retries_the_same_on_both() {
    let Some(b) = both("notify") else { return };
    let hook = webhook_receiver();
    let s = notifications(&b.sqlite, &b.sqlite_url, &hook);
    let p = notifications(&b.postgres, &b.pg_url, &hook);
    assert_eq!(s, p);
}

#[test]
fn two_workers_never_claim_the_same_message_and_an_expired_claim_is_due_again() {
    let Some(b) = both("claims") else { return };
    for (c, url) in [(&b.sqlite, &b.sqlite_url), (&b.postgres, &b.pg_url)] {
        let ids = pending_messages(c, 200);
        // Two workers, each on its own connection, see the same due messages and try to
        // claim every one of them at the same moment, twice over.
        let start = Arc::new(Barrier::new(2));
        let claimers: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|owner| {
                let (url, start) = (url.clone(), start.clone());
                std::thread::spawn(move || {
                    let conn = db::connect(&url, Mode::Write).unwrap();
                    let due: Vec<i64> = outbox::due(&conn, T0, 1000)
                        .unwrap()
                        .into_iter()
                        .map(|m| m.id)
                        .collect();
                    start.wait();
                    let mut mine = Vec::new();
                    for _ in 0..2 {
                        for &id in &due {
                            if outbox::claim(&conn, id, owner, T0, T0 + 60_000).unwrap() {
                                mine.push(id);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let got: Vec<Vec<i64>> = claimers.into_iter().map(|t| t.join().unwrap()).collect();
        let (a, b2): (BTreeSet<i64>, BTreeSet<i64>) = (
            got[0].iter().copied().collect(),
            got[1].iter().copied().collect(),
        );
        assert_eq!(a.len(), got[0].len(), "a worker claimed one message twice");
        assert_eq!(b2.len(), got[1].len(), "a worker claimed one message twice");
        assert!(
            a.is_disjoint(&b2),
            "{:?}: both claimed {:?}",
            c.backend(),
            a.intersection(&b2).collect::<Vec<_>>()
        );
        let all: BTreeSet<i64> = a.union(&b2).copied().collect();
        assert_eq!(all, ids.iter().copied().collect(), "every message claimed");
        // While the claims last nothing is due; after, everything is again (at least once).
        assert!(outbox::due(c, T0 + 59_999, 1000).unwrap().is_empty());
        assert_eq!(outbox::due(c, T0 + 60_000, 1000).unwrap().len(), 200);
        // A worker whose claim ran out and was taken over: its record counts the attempt but
        // leaves the message to the new holder.
        let first = ids[0];
        let old = if a.contains(&first) { "w1" } else { "w2" };
        assert!(outbox::claim(c, first, "w3", T0 + 60_000, T0 + 120_000).unwrap());
        outbox::record(c, first, old, "c", T0 + 60_001, &Outcome::Sent, "late").unwrap();
        let m = |id| {
            c.query_row(
                "SELECT status, attempts, claimed_by FROM notify_messages WHERE id = $1",
                args![id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<i64>(1)?,
                        r.get::<Option<String>>(2)?,
                    ))
                },
            )
            .unwrap()
        };
        assert_eq!(m(first), ("pending".into(), 1, Some("w3".into())));
        outbox::record(c, first, "w3", "c", T0 + 60_002, &Outcome::Sent, "ok").unwrap();
        assert_eq!(m(first), ("sent".into(), 2, None));
    }
}

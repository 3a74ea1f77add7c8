//! The writer's unit tests.

use super::*;
use spotcheck_protocol::{check, Limits, Metric, Quality, Reading, ReadingBatch, Version};

fn batch(agent: &str, seq: u64, n: usize) -> Checked<Batch> {
    let now = UnixMillis::now().0;
    let points: Vec<(i64, f64)> = (0..n).map(|i| (now, 7.0 + i as f64 / 100.0)).collect();
    batch_at(agent, seq, &points)
}

fn count(w: &Writer, table: &str) -> i64 {
    w.connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_batch_committed_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
    let entity = EntityId::new("pool-1").unwrap();
    let b = batch("a1", 1, 5);
    let item = || Item::Batch {
        entity: &entity,
        domain: Domain::Pool,
        batch: &b,
    };
    let first = w.commit(&[item(), item()], UnixMillis::now()).unwrap();
    assert_eq!(first.outcomes, vec![Outcome::Stored, Outcome::Duplicate]);
    let again = w.commit(&[item()], UnixMillis::now()).unwrap();
    assert_eq!(again.outcomes, vec![Outcome::Duplicate]);
    assert_eq!(count(&w, "reading_chunks"), 1, "one metric: one chunk");
    let n: i64 = w
        .connection()
        .query_row("SELECT sum(n) FROM reading_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(count(&w, "batches"), 1);
}

#[test]
fn a_sequence_number_reused_with_other_content_is_a_dead_letter_not_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
    let entity = EntityId::new("pool-1").unwrap();
    let first = batch("a1", 1, 5);
    let redelivered = {
        let mut b = first.clone().into_inner();
        if let Batch::Readings(r) = &mut b {
            r.after = Some(Seq(1));
        }
        check(b, &Limits::default(), UnixMillis::now()).unwrap()
    };
    let other = batch("a1", 1, 3);
    let item = |b| Item::Batch {
        entity: &entity,
        domain: Domain::Pool,
        batch: b,
    };
    let r = w
        .commit(
            &[item(&first), item(&redelivered), item(&other)],
            UnixMillis::now(),
        )
        .unwrap();
    assert_eq!(
        r.outcomes,
        vec![Outcome::Stored, Outcome::Duplicate, Outcome::SeqReused]
    );
    let (code, seq, reason): (String, i64, String) = w
        .connection()
        .query_row("SELECT code, seq, reason FROM dead_letters", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((code.as_str(), seq), ("seq_reused", 1));
    assert!(
        reason.contains("already stored with different content"),
        "{reason}"
    );
    let n: i64 = w
        .connection()
        .query_row("SELECT sum(n) FROM reading_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        n, 5,
        "the first content stays; the second is not stored as data"
    );
}

#[test]
fn a_gap_is_recorded_without_the_numbers_that_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
    let agent = AgentId::new("a1").unwrap();
    let d = DeadLetter {
        topic: "t".into(),
        agent: Some(agent.clone()),
        seq: Some(Seq(5)),
        code: "unit_mismatch",
        reason: "r".into(),
        payload: b"{}".to_vec(),
        items: 1,
    };
    w.commit(&[Item::DeadLetter(&d)], UnixMillis::now())
        .unwrap();
    let r = w
        .commit(
            &[Item::Gap {
                agent: &agent,
                first: 3,
                last: 9,
            }],
            UnixMillis::now(),
        )
        .unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Gap(6)]);
    let mut st = w
        .connection()
        .prepare("SELECT first, last FROM seq_gaps ORDER BY first")
        .unwrap();
    let ranges: Vec<(i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ranges, vec![(3, 4), (6, 9)]);
}

#[test]
fn batches_of_one_series_in_one_commit_share_a_chunk_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut w = Writer::open(&path, Synchronous::Normal).unwrap();
    let entity = EntityId::new("pool-1").unwrap();
    let batches: Vec<_> = (1..=4).map(|seq| batch("a1", seq, 1)).collect();
    let items: Vec<Item<'_>> = batches
        .iter()
        .map(|b| Item::Batch {
            entity: &entity,
            domain: Domain::Pool,
            batch: b,
        })
        .collect();
    w.commit(&items[..3], UnixMillis::now()).unwrap();
    w.commit(&items[3..], UnixMillis::now()).unwrap();
    assert_eq!(count(&w, "batches"), 4);
    assert_eq!(count(&w, "reading_chunks"), 2, "one per commit");
    let first: (i64, i64) = w
        .connection()
        .query_row(
            "SELECT seq, n FROM reading_chunks ORDER BY seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(first, (1, 3), "named by its first batch, holding three");
    let read = crate::store::open_for_reading(&path).unwrap();
    let points = crate::store::query::series(&read, "pool-1", Metric::PH, 0, 100).unwrap();
    assert_eq!(points.len(), 4);
}

#[test]
fn dead_letters_keep_payload_and_reason_once_per_agent_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
    let d = DeadLetter {
        topic: "t".into(),
        agent: Some(AgentId::new("a").unwrap()),
        seq: Some(Seq(3)),
        code: "unit_mismatch",
        reason: "field `readings[0].unit`: …".into(),
        payload: b"{}".to_vec(),
        items: 1,
    };
    let anonymous = DeadLetter {
        agent: None,
        seq: None,
        ..d.clone()
    };
    let items = [
        Item::DeadLetter(&d),
        Item::DeadLetter(&d),
        Item::DeadLetter(&anonymous),
        Item::DeadLetter(&anonymous),
    ];
    w.commit(&items, UnixMillis::now()).unwrap();
    assert_eq!(count(&w, "dead_letters"), 3);
}

#[test]
fn pruning_removes_only_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
    let entity = EntityId::new("pool-1").unwrap();
    let b = batch("a1", 1, 3);
    let d = DeadLetter {
        topic: "t".into(),
        agent: None,
        seq: None,
        code: "bad_topic",
        reason: "r".into(),
        payload: b"x".to_vec(),
        items: 0,
    };
    w.commit(
        &[
            Item::Batch {
                entity: &entity,
                domain: Domain::Pool,
                batch: &b,
            },
            Item::DeadLetter(&d),
        ],
        UnixMillis(1_000),
    )
    .unwrap();
    assert_eq!(w.prune(UnixMillis(0), UnixMillis(0)).unwrap(), 0);
    assert_eq!(
        w.prune(UnixMillis(i64::MAX), UnixMillis(0)).unwrap(),
        1,
        "one chunk of three readings"
    );
    assert_eq!(count(&w, "dead_letters"), 1, "not yet past its retention");
    assert_eq!(w.prune(UnixMillis(0), UnixMillis(1_001)).unwrap(), 1);
    assert_eq!(count(&w, "dead_letters"), 0, "past its retention");
    assert_eq!(count(&w, "batches"), 1, "dedupe keys outlive the readings");
}

#[test]
fn without_digests_a_reused_number_passes_for_a_duplicate_as_before_hardening() {
    // The benchmark's baseline (`digest-cost`): no digest stored, so no way to tell.
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal)
        .unwrap()
        .without_digests();
    let entity = EntityId::new("pool-1").unwrap();
    let (first, other) = (batch("a1", 1, 5), batch("a1", 1, 3));
    let item = |b| Item::Batch {
        entity: &entity,
        domain: Domain::Pool,
        batch: b,
    };
    let r = w
        .commit(&[item(&first), item(&other)], UnixMillis::now())
        .unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Stored, Outcome::Duplicate]);
    let digest: Option<Vec<u8>> = w
        .connection()
        .query_row("SELECT digest FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(digest, None);
}

/// A batch of pH readings at these times (Unix ms) with these values.
fn batch_at(agent: &str, seq: u64, points: &[(i64, f64)]) -> Checked<Batch> {
    let readings = points
        .iter()
        .map(|&(ts, value)| Reading {
            metric: Metric::new(Metric::PH).unwrap(),
            value,
            unit: Unit::Ph,
            ts_ms: UnixMillis(ts),
            quality: Quality::Good,
        })
        .collect();
    let b = Batch::Readings(ReadingBatch {
        v: Version,
        agent: AgentId::new(agent).unwrap(),
        seq: Seq(seq),
        after: None,
        readings,
    });
    let newest = points.iter().map(|p| p.0).max().unwrap_or(0);
    check(b, &Limits::default(), UnixMillis(newest + 1000)).unwrap()
}

/// Commits each batch in its own transaction (one chunk each) for pool-1.
fn commit_each(w: &mut Writer, batches: &[Checked<Batch>]) {
    let entity = EntityId::new("pool-1").unwrap();
    for b in batches {
        let item = Item::Batch {
            entity: &entity,
            domain: Domain::Pool,
            batch: b,
        };
        w.commit(&[item], UnixMillis::now()).unwrap();
    }
}

#[test]
fn a_series_is_read_in_time_order_across_interleaved_chunks_up_to_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut w = Writer::open(&path, Synchronous::Normal).unwrap();
    let t = 1_700_000_000_000;
    commit_each(
        &mut w,
        &[
            batch_at("a1", 1, &[(t + 100, 7.0), (t + 300, 7.1), (t + 500, 7.2)]),
            batch_at("a1", 2, &[(t + 200, 7.3), (t + 400, 7.4), (t + 600, 7.5)]),
            batch_at("a1", 3, &[(t + 10_000, 7.6)]),
        ],
    );
    let read = crate::store::open_for_reading(&path).unwrap();
    let times = |since: i64, limit: u32| -> Vec<i64> {
        crate::store::query::series(&read, "pool-1", Metric::PH, since, limit)
            .unwrap()
            .iter()
            .map(|p| p.ts_ms - t)
            .collect()
    };
    assert_eq!(
        times(0, 4),
        vec![100, 200, 300, 400],
        "the first four across chunks"
    );
    assert_eq!(times(0, 100), vec![100, 200, 300, 400, 500, 600, 10_000]);
    assert_eq!(times(t + 350, 3), vec![400, 500, 600]);
    assert_eq!(times(0, 0), Vec::<i64>::new());
}

#[test]
fn a_thinned_series_counts_every_reading_and_keeps_each_spans_extremes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut w = Writer::open(&path, Synchronous::Normal).unwrap();
    let t = 1_700_000_000_000;
    // 5,000 readings a second apart in five chunks, one spike and one dip among them.
    let batches: Vec<_> = (0..5)
        .map(|b| {
            let points: Vec<(i64, f64)> = (0..1000)
                .map(|i| {
                    let n = b * 1000 + i;
                    let v = match n {
                        1234 => 9.9,
                        4321 => 5.1,
                        _ => 7.0 + (n % 7) as f64 / 100.0,
                    };
                    (t + n * 1000, v)
                })
                .collect();
            batch_at("a1", b as u64 + 1, &points)
        })
        .collect();
    commit_each(&mut w, &batches);
    let read = crate::store::open_for_reading(&path).unwrap();
    let range = (t, t + 5_000_000);
    let (count, points) =
        crate::store::query::series_thinned(&read, "pool-1", Metric::PH, range, 200).unwrap();
    assert_eq!(count, 5000);
    assert!(points.len() <= 200, "{}", points.len());
    assert!(
        points.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms),
        "oldest first"
    );
    assert!(points
        .iter()
        .any(|p| p.value == 9.9 && p.ts_ms == t + 1_234_000));
    assert!(points
        .iter()
        .any(|p| p.value == 5.1 && p.ts_ms == t + 4_321_000));
    // A range with no more readings than asked for comes back whole.
    let (count, points) = crate::store::query::series_thinned(
        &read,
        "pool-1",
        Metric::PH,
        (t + 10_000, t + 20_000),
        200,
    )
    .unwrap();
    assert_eq!(count, 10);
    let times: Vec<i64> = points.iter().map(|p| (p.ts_ms - t) / 1000).collect();
    assert_eq!(times, (10..20).collect::<Vec<_>>());
}

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

use super::recover::list_segments;
use super::*;

const KIB: u64 = 1024;

fn opts(max_bytes: u64, segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        segment_bytes,
        fsync: false,
    }
}

fn big() -> SpoolOptions {
    opts(64 * KIB * KIB, 4 * KIB * KIB)
}

fn payload(seq: Seq, size: usize) -> Vec<u8> {
    let mut p = format!("{{\"seq\":{}}}", seq.0).into_bytes();
    p.resize(size.max(p.len()), b' ');
    p
}

fn append(spool: &mut Spool, size: usize) -> Seq {
    spool
        .append(Stream::Readings, |s| payload(s, size))
        .unwrap()
}

fn pending(spool: &Spool) -> Vec<u64> {
    spool.pending().map(|s| s.0).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn appends_get_sequence_numbers_from_one_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(spool.next_seq(), Seq(1));
    for want in 1..=3 {
        assert_eq!(append(&mut spool, 10), Seq(want));
    }
    let events = spool.append(Stream::Events, |s| payload(s, 0)).unwrap();
    let r = spool.read(events).unwrap().unwrap();
    assert_eq!(
        (r.seq, r.stream, r.payload),
        (Seq(4), Stream::Events, payload(Seq(4), 0))
    );
    assert_eq!(
        spool.read(Seq(2)).unwrap().unwrap().payload,
        payload(Seq(2), 10)
    );
    assert_eq!(spool.read(Seq(99)).unwrap(), None);
}

#[test]
fn a_torn_tail_is_truncated_and_the_pending_records_and_numbering_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), big()).unwrap();
        for _ in 0..5 {
            append(&mut spool, 100);
        }
        // kill -9: no flush, no clean close.
    }
    let seg = &segment_files(dir.path())[0];
    let len = fs::metadata(seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let mut spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 2, 3, 4]);
    assert_eq!(spool.next_seq(), Seq(5));
    for s in 1..=4 {
        assert_eq!(
            spool.read(Seq(s)).unwrap().unwrap().payload,
            payload(Seq(s), 100)
        );
    }
    assert_eq!(append(&mut spool, 1), Seq(5));
    drop(spool);
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 2, 3, 4, 5]);
}

#[test]
fn garbage_after_the_last_record_is_treated_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), big()).unwrap();
        append(&mut spool, 10);
    }
    let seg = &segment_files(dir.path())[0];
    let mut f = fs::OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(&[0xff; 30]).unwrap();
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1]);
    assert_eq!(
        inspect(dir.path()).unwrap().bytes,
        fs::metadata(seg).unwrap().len()
    );
}

#[test]
fn confirmed_records_are_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), big()).unwrap();
        for _ in 0..6 {
            append(&mut spool, 10);
        }
        assert!(spool.ack(Seq(2)).unwrap());
        assert!(spool.ack(Seq(5)).unwrap());
        assert!(!spool.ack(Seq(5)).unwrap(), "a repeated ack is ignored");
        assert!(
            !spool.ack(Seq(77)).unwrap(),
            "an ack for an unknown seq is ignored"
        );
    }
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 3, 4, 6]);
    assert_eq!(spool.next_seq(), Seq(7));
}

#[test]
fn numbering_continues_after_every_record_was_confirmed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), big()).unwrap();
        for _ in 0..3 {
            let s = append(&mut spool, 10);
            spool.ack(s).unwrap();
        }
    }
    // Reopening deletes the fully confirmed segment.
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(spool.pending_len(), 0);
    assert_eq!(spool.next_seq(), Seq(4));
    drop(spool);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(spool_next_seq(dir.path()).unwrap(), 4);
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(append(&mut spool, 10), Seq(4));
}

#[test]
fn a_fully_confirmed_segment_is_deleted_once_appends_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of about three 100-byte records.
    let mut spool = Spool::open(dir.path(), opts(64 * KIB, 400)).unwrap();
    for _ in 0..7 {
        append(&mut spool, 100);
    }
    let before = segment_files(dir.path()).len();
    assert!(before >= 3, "{before}");
    for s in 1..=3 {
        spool.ack(Seq(s)).unwrap();
    }
    assert_eq!(segment_files(dir.path()).len(), before - 1);
    assert_eq!(spool.stats().bytes, inspect(dir.path()).unwrap().bytes);
}

#[test]
fn overflow_drops_the_oldest_segment_and_counts_its_unconfirmed_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), opts(2000, 500)).unwrap();
    for _ in 0..40 {
        append(&mut spool, 100);
    }
    let stats = spool.stats();
    assert!(stats.bytes <= 2000, "{stats:?}");
    assert!(stats.dropped > 0);
    assert_eq!(stats.pending as u64 + stats.dropped, 40);
    // Drop oldest: what is left is the newest records, without gaps.
    let left = pending(&spool);
    assert_eq!(left.last(), Some(&40));
    assert_eq!(left, (41 - left.len() as u64..=40).collect::<Vec<_>>());
    drop(spool);
    let spool = Spool::open(dir.path(), opts(2000, 500)).unwrap();
    assert_eq!(pending(&spool), left);
    assert_eq!(spool.next_seq(), Seq(41));
    assert_eq!(
        spool.dropped(),
        stats.dropped,
        "the count survives a restart"
    );
    assert_eq!(inspect(dir.path()).unwrap().dropped, stats.dropped);
}

#[test]
fn a_record_larger_than_the_spool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), opts(500, 500)).unwrap();
    let e = spool
        .append(Stream::Readings, |s| payload(s, 600))
        .unwrap_err();
    assert!(matches!(e, SpoolError::RecordTooLarge { .. }), "{e}");
    assert_eq!(append(&mut spool, 10), Seq(1));
}

#[test]
fn a_foreign_file_with_a_segment_name_is_moved_to_quarantine_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment::segment_path(dir.path(), 1);
    fs::write(&path, b"not a spool segment").unwrap();
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), Vec::<u64>::new());
    assert!(!path.exists());
    let kept = dir
        .path()
        .join(segment::QUARANTINE)
        .join("00000000000000000001.seg.0-19.damaged");
    assert_eq!(fs::read(kept).unwrap(), b"not a spool segment");
}

/// Five records of 100 bytes in one segment, never confirmed; returns the segment's path and
/// the frames' offsets.
fn five_records(dir: &Path) -> (PathBuf, Vec<u64>) {
    {
        let mut spool = Spool::open(dir, big()).unwrap();
        for _ in 0..5 {
            append(&mut spool, 100);
        }
    }
    let seg = segment_files(dir)[0].clone();
    let offsets = segment::scan(&seg)
        .unwrap()
        .records
        .iter()
        .map(|r| r.offset)
        .collect();
    (seg, offsets)
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_costs_the_record_it_hit_and_is_set_aside_once() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, offsets) = five_records(dir.path());
    flip(&seg, offsets[2] + 30); // in record 3's payload
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 2, 4, 5]);
    assert_eq!(spool.damaged(), 1);
    for s in [1, 2, 4, 5] {
        assert_eq!(
            spool.read(Seq(s)).unwrap().unwrap().payload,
            payload(Seq(s), 100)
        );
    }
    let q: Vec<_> = fs::read_dir(dir.path().join(segment::QUARANTINE))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        fs::metadata(&q[0]).unwrap().len(),
        offsets[3] - offsets[2],
        "exactly the damaged record's bytes"
    );
    drop(spool);
    // Rewritten without the damage: a second open finds nothing wrong.
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 2, 4, 5]);
    assert_eq!(spool.damaged(), 0);
    assert_eq!(spool.next_seq(), Seq(6));
}

#[test]
fn a_damaged_header_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _) = five_records(dir.path());
    flip(&seg, 3);
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 2, 3, 4, 5]);
    assert_eq!(spool.damaged(), 0);
    assert!(fs::read(&seg).unwrap().starts_with(segment::MAGIC));
}

#[test]
fn a_cut_older_segment_loses_the_records_up_to_the_next_segment_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, offsets) = five_records(dir.path());
    {
        // A later process appends to a segment of its own (seq 6 on).
        let mut spool = Spool::open(dir.path(), big()).unwrap();
        assert_eq!(append(&mut spool, 100), Seq(6));
        spool.ack(Seq(2)).unwrap();
    }
    // Cut inside record 2: records 2..=5 are gone; 2 was confirmed already.
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(offsets[1] + 20)
        .unwrap();
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(pending(&spool), vec![1, 6]);
    assert_eq!(spool.damaged(), 3, "3, 4 and 5 were not yet confirmed");
    assert_eq!(spool.next_seq(), Seq(7));
}

#[test]
fn inspect_matches_the_open_spool_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    for _ in 0..5 {
        append(&mut spool, 10);
    }
    spool.ack(Seq(1)).unwrap();
    let s = inspect(dir.path()).unwrap();
    assert_eq!(
        (s.next_seq, s.pending, s.bytes),
        (6, 4, spool.stats().bytes)
    );
    assert_eq!(inspect(&dir.path().join("missing")).unwrap().next_seq, 1);
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    /// Ack the n-th appended record (modulo how many there are).
    Ack(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..300).prop_map(Op::Append),
        4 => any::<usize>().prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pending_is_always_appended_minus_acked_minus_dropped(ops in prop::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(3000, 700);
        let mut spool = Spool::open(dir.path(), o).unwrap();
        let mut appended: Vec<u64> = Vec::new();
        let mut acked: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Append(size) => {
                    let s = append(&mut spool, size);
                    prop_assert_eq!(s.0, appended.last().map_or(1, |l| l + 1));
                    appended.push(s.0);
                }
                Op::Ack(i) if !appended.is_empty() => {
                    let s = appended[i % appended.len()];
                    if spool.ack(Seq(s)).unwrap() {
                        prop_assert!(acked.insert(s));
                    }
                }
                Op::Ack(_) => {}
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(dir.path(), o).unwrap();
                }
            }
            let now = pending(&spool);
            let expected: Vec<u64> = appended.iter().copied().filter(|s| !acked.contains(s)).collect();
            // The count of dropped records survives a reopen.
            let total_dropped = spool.dropped();
            prop_assert_eq!(now.len() as u64 + total_dropped, expected.len() as u64);
            // What is missing was dropped, and dropping takes the oldest.
            let missing: Vec<u64> = expected.iter().copied().filter(|s| !now.contains(s)).collect();
            if let (Some(&m), Some(&p)) = (missing.last(), now.first()) {
                prop_assert!(m < p, "dropped {} is newer than pending {}", m, p);
            }
            prop_assert!(spool.stats().bytes <= o.max_bytes);
            prop_assert_eq!(spool.next_seq().0, appended.last().map_or(1, |l| l + 1));
        }
        for s in pending(&spool) {
            prop_assert_eq!(spool.read(Seq(s)).unwrap().unwrap().payload.starts_with(format!("{{\"seq\":{s}}}").as_bytes()), true);
        }
    }
}

#[test]
fn the_collectors_next_moves_the_counter_up_and_the_move_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    append(&mut spool, 10);
    append(&mut spool, 10);
    assert!(!spool.advance_to(Seq(2)).unwrap(), "never backwards");
    assert!(spool.advance_to(Seq(500)).unwrap());
    assert_eq!(append(&mut spool, 10), Seq(500));
    assert_eq!(pending(&spool), vec![1, 2, 500]);
    for s in [1, 2, 500] {
        spool.ack(Seq(s)).unwrap();
    }
    drop(spool);
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(spool.next_seq(), Seq(501));
    // Advancing with nothing appended since still survives.
    drop(spool);
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    spool.advance_to(Seq(900)).unwrap();
    drop(spool);
    assert_eq!(Spool::open(dir.path(), big()).unwrap().next_seq(), Seq(900));
}

#[test]
fn a_sources_mark_survives_a_restart_whether_its_segment_is_kept_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    let s1 = spool
        .append_marked(Stream::Readings, Some(("file:a", "one")), |s| {
            payload(s, 10)
        })
        .unwrap();
    spool
        .append_marked(Stream::Readings, Some(("file:a", "two")), |s| {
            payload(s, 10)
        })
        .unwrap();
    append(&mut spool, 10);
    assert_eq!(spool.mark("file:a"), Some((Seq(2), "two")));
    drop(spool);
    // Kept in the segment, read back by the scan.
    let mut spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(spool.mark("file:a"), Some((Seq(2), "two")));
    assert_eq!(spool.mark("file:b"), None);
    // Confirmed and deleted: the marks file keeps it.
    for s in [s1.0, 2, 3] {
        spool.ack(Seq(s)).unwrap();
    }
    append(&mut spool, 10); // a new segment; the old one goes
    spool.ack(Seq(4)).unwrap();
    drop(spool);
    drop(Spool::open(dir.path(), big()).unwrap());
    assert!(
        segment_files(dir.path()).is_empty(),
        "every segment confirmed and gone"
    );
    let spool = Spool::open(dir.path(), big()).unwrap();
    assert_eq!(spool.mark("file:a"), Some((Seq(2), "two")));
    assert_eq!(spool.pending_len(), 0);
}

//! The fault suite's storage faults (issue 16), beside the collector kills of `faults.rs`:
//!
//! - an agent's spool segments damaged while the agent is stopped (a flipped byte inside a
//!   record, a wrong header, an older segment cut short): the agent says what it lost, sets
//!   only the damaged bytes aside, and everything else is stored exactly once;
//! - the collector's data directory on a small tmpfs that fills up: commits fail, nothing is
//!   confirmed to the agent that is not committed, the log and `/healthz` say why, and once
//!   space is freed every batch is stored exactly once and the database is intact.
//!
//! Both report sent vs stored, duplicates and panics. The tmpfs test needs root to mount; it
//! skips (saying so) without.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spotcheck_agent::spool::inspect;
use spotcheck_e2e::*;

const AGENT: &str = "pool-agent-1";

fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool").join(AGENT)
}

/// The segment files of a spool, oldest first.
fn segments(spool: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// The first seq a segment holds (its name).
fn segment_id(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// `(offset, seq)` of each frame of a segment, read by the documented framing (8 magic
/// bytes; then `len: u32 LE | crc: u32 LE | seq: u64 LE | …`, `len` bytes after the header).
fn frames(path: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 8usize;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        out.push((at as u64, seq));
        at += 8 + len;
    }
    out
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_spool_costs_only_the_records_it_hit_and_the_rest_is_stored_exactly_once() {
    const BATCHES: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    // No broker yet: every batch stays in the spool. ~30 kB batches in 512 KiB segments.
    let config = agent_config(dir.path(), AGENT, "pool-1", "pool", free_port(), BATCHES, 5);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "[spool]\n",
            "[spool]\nsegment_bytes = 524288\nfsync = false\n",
        )
        .replace("seed = 7\n", "seed = 7\nrecords_per_batch = 50\n");
    std::fs::write(&config, &text).unwrap();
    let mut agent = start_agent(dir.path(), "agent-1", &config);
    wait_for(
        "the agent to spool every batch",
        Duration::from_secs(60),
        || {
            agent.assert_running();
            inspect(&spool_dir(dir.path()))
                .ok()
                .filter(|s| s.next_seq == BATCHES + 1)
        },
    );
    agent.signal_and_wait("KILL");

    // Damage three segments while the agent is stopped.
    let segs = segments(&spool_dir(dir.path()));
    assert!(segs.len() >= 5, "want at least 5 segments: {segs:?}");
    let mut lost = BTreeSet::new();
    // 1. A flipped byte in the payload of the second segment's third record.
    let (at, seq) = frames(&segs[1])[2];
    flip_byte(&segs[1], at + 8 + 9 + 40);
    lost.insert(seq);
    // 2. The third segment's header: no record lost.
    flip_byte(&segs[2], 0);
    // 3. The fourth segment cut inside its fourth record: it and the rest up to the fifth
    //    segment's first record are gone.
    let (at, first_cut) = frames(&segs[3])[3];
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[3])
        .unwrap()
        .set_len(at + 100)
        .unwrap();
    lost.extend(first_cut..segment_id(&segs[4]));
    eprintln!("damaged: batches {lost:?} cannot be read any more");

    // The collector comes up; the agent restarts on the damaged spool and makes 5 more.
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("broker = ") {
                format!("broker = \"mqtt://127.0.0.1:{}\"", collector.mqtt_port)
            } else if l.starts_with("batches = ") {
                "batches = 5".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(dir.path(), "agent-2", &config);
    let status = agent.wait(Duration::from_secs(240));
    let log = strip_ansi(&agent.log());
    assert!(status.success(), "agent failed:\n{log}");

    // Said clearly: which file, which bytes, which batches, where the bytes went.
    let damaged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Spool segment damaged"))
        .collect();
    assert_eq!(damaged.len(), 3, "{log}");
    assert!(
        damaged
            .iter()
            .any(|l| l.contains(&format!("records {seq}..={seq} (1 not yet confirmed"))),
        "the flipped record is named: {damaged:#?}"
    );
    assert!(
        damaged.iter().any(|l| l.contains("lost=no record")),
        "a damaged header loses nothing: {damaged:#?}"
    );
    let last_cut = segment_id(&segs[4]) - 1;
    assert!(
        damaged.iter().any(|l| l.contains(&format!(
            "records {first_cut}..={last_cut} ({} not yet confirmed",
            last_cut - first_cut + 1
        ))),
        "the cut records are named: {damaged:#?}"
    );
    let quarantined = std::fs::read_dir(spool_dir(dir.path()).join("quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 3, "only the damaged bytes are set aside");

    // Everything else exactly once, in order, whole.
    let made = spotcheck_agent::spool_next_seq(&spool_dir(dir.path())).unwrap() - 1;
    assert_eq!(made, BATCHES + 5);
    let db = collector.db();
    let stored: Vec<u64> = stored_batches(&db, AGENT).iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (1..=made).filter(|s| !lost.contains(s)).collect();
    eprintln!(
        "made {made} batches; {} lost to the damage; stored {}",
        lost.len(),
        stored.len()
    );
    assert_eq!(stored, want, "every undamaged batch exactly once");
    assert_eq!(batches_with_wrong_item_counts(&db), 0);
    // Nothing undamaged was refused; batches kept back behind the lost numbers may have been
    // let go (and sent again), which is not a loss.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM dead_letters WHERE code NOT IN ('gap_not_filled', 'held_full') OR seq IS NOT NULL"
        ),
        0
    );
    // The collector learns the lost numbers as given up.
    let given_up = count(
        &db,
        &format!("SELECT CAST(coalesce(sum(last - first + 1), 0) AS BIGINT) FROM seq_gaps WHERE agent = '{AGENT}'"),
    );
    assert_eq!(given_up as usize, lost.len());
    collector.proc.assert_running();
    let panics = collector.proc.log().matches("panicked").count() + log.matches("panicked").count();
    assert_eq!(panics, 0);
}

fn healthz(c: &Collector) -> (u16, serde_json::Value) {
    let mut r = ureq::get(&format!("http://{}/healthz", c.http))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("/healthz answers");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().expect("/healthz is JSON"))
}

#[test]
fn a_collector_whose_disk_fills_stops_confirming_says_why_and_stores_everything_once_space_returns()
{
    if store::sqlite_only("a full tmpfs under the data directory fills the SQLite file; a PostgreSQL store is elsewhere") {
        return;
    }
    const BATCHES: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("collector"), "32m") else {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    };
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    // Leave the database a little room, then stream ~60 kB batches into it.
    let filler = dir.path().join("collector").join("filler");
    let room = 256 * 1024;
    let fill = disk.free_bytes().saturating_sub(room);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();
    let config = agent_config(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        BATCHES,
        20,
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("seed = 7\n", "seed = 7\nrecords_per_batch = 100\n");
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(dir.path(), "agent", &config);

    // Commits fail: /healthz says so, with the reason.
    let body = wait_for("/healthz 503", Duration::from_secs(120), || {
        collector.proc.assert_running();
        agent.assert_running();
        let (status, body) = healthz(&collector);
        (status == 503).then_some(body)
    });
    let commit = body["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "commit_thread")
        .cloned()
        .unwrap_or_default();
    assert_eq!(commit["state"], "failing", "{body}");
    let reason = commit["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("full"),
        "the reason names the full disk: {body}"
    );
    let log = strip_ansi(&collector.proc.log());
    assert!(
        log.contains("Commit failed; retrying. Nothing is acknowledged until it succeeds."),
        "{log}"
    );

    // No confirmation before commit: whatever the agent let go of is stored. (Read the spool
    // first: what is stored only grows.)
    let spool = inspect(&spool_dir(dir.path())).unwrap();
    let confirmed = spool.next_seq - 1 - spool.pending as u64;
    let stored = stored_batches(&collector.db(), AGENT).len() as u64;
    eprintln!(
        "disk full: agent made {}, {} pending, {confirmed} confirmed; {stored} stored",
        spool.next_seq - 1,
        spool.pending
    );
    assert!(spool.pending > 0, "{spool:?}");
    assert!(
        confirmed <= stored,
        "{confirmed} confirmed to the agent but only {stored} stored"
    );

    // Space returns: commits resume, the agent drains, everything is stored exactly once.
    std::fs::remove_file(&filler).unwrap();
    let status = agent.wait(Duration::from_secs(240));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    wait_for("/healthz 200 again", Duration::from_secs(60), || {
        collector.proc.assert_running();
        (healthz(&collector).0 == 200).then_some(())
    });
    let made = spotcheck_agent::spool_next_seq(&spool_dir(dir.path())).unwrap() - 1;
    assert_eq!(made, BATCHES);
    let db = collector.db();
    let seqs: Vec<u64> = stored_batches(&db, AGENT).iter().map(|(s, _)| *s).collect();
    eprintln!(
        "sent {made} batches ({} readings); stored {} batches ({} readings)",
        made * 600,
        seqs.len(),
        stored_readings(&db).len()
    );
    assert_eq!(
        seqs,
        (1..=made).collect::<Vec<_>>(),
        "every batch exactly once"
    );
    assert_eq!(stored_readings(&db).len() as u64, made * 600);
    assert_eq!(batches_with_wrong_item_counts(&db), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
    let check: String = db
        .query_row("PRAGMA integrity_check", args![], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let panics =
        collector.proc.log().matches("panicked").count() + agent.log().matches("panicked").count();
    assert_eq!(panics, 0);
    drop(db);
    collector.proc.signal_and_wait("TERM");
}

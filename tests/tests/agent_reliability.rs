//! The agent's reliability contract against a real Mosquitto and the real collector binary
//! (issue 3): broker outages (clean stop and SIGKILL, both without persistence, so the broker
//! forgets everything it had acknowledged), kill -9 of the agent with unconfirmed batches, and
//! a spool at its byte limit.
//!
//! What "exactly once, in order" asserts here, honestly:
//!
//! - exactly once: the collector's `batches` table holds every sequence number the agent made,
//!   once (the primary key is (agent, seq)), with all its readings stored exactly once;
//! - in order: no batch is stored after a later one. A broker that restarts empty drops what
//!   arrives before the collector has subscribed again, and the agent re-sends that only after
//!   its ack timeout; meanwhile the collector keeps the later batches back (each says, in
//!   `after`, which earlier ones must be stored first) and stores them once the gap is filled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use spotcheck_agent::spool::inspect;
use spotcheck_e2e::*;

const AGENT: &str = "pool-agent-1";
/// The pool simulator sends six readings per batch.
const READINGS_PER_BATCH: u64 = 6;

fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool").join(AGENT)
}

/// Pending batches in the running agent's spool (0 while the spool is between two states).
fn pending(dir: &Path) -> usize {
    inspect(&spool_dir(dir)).map(|s| s.pending).unwrap_or(0)
}

/// Asserts that the collector stored seqs `first..=last` of the agent and nothing else, each
/// once with all its readings, in seq order.
fn assert_stored_exactly_once_in_order(collector: &Collector, first: u64, last: u64) {
    let db = collector.db();
    let stored = stored_batches(&db, AGENT);
    let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (first..=last).collect();
    if seqs != want {
        let missing: Vec<u64> = want.iter().filter(|s| !seqs.contains(s)).copied().collect();
        let extra: Vec<u64> = seqs.iter().filter(|s| !want.contains(s)).copied().collect();
        panic!(
            "stored seqs differ from {first}..={last}: missing {missing:?}, unexpected {extra:?}"
        );
    }
    assert_eq!(
        batches_with_wrong_item_counts(&db),
        0,
        "a batch's readings were stored twice or partly"
    );
    assert_eq!(
        stored_readings(&db).len() as u64,
        (last - first + 1) * READINGS_PER_BATCH
    );
    // In order: each batch was stored no later than the next one (batches stored in one
    // transaction share a time; inside it the collector keeps sequence order).
    for pair in stored.windows(2) {
        let ((s0, t0), (s1, t1)) = (pair[0], pair[1]);
        assert!(
            t0 <= t1,
            "seq {s0} was stored at {t0} ms, after seq {s1} at {t1} ms: out of order"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
}

/// A fresh Mosquitto, the collector on it with [`AGENT`] bound to `pool-1`, and the config of
/// an agent that makes `batches` simulated batches 10 ms apart; `None` if Mosquitto is missing.
fn mosquitto_collector_agent(dir: &Path, batches: u64) -> Option<(Mosquitto, Collector, PathBuf)> {
    let broker = Mosquitto::start(dir)?;
    let collector = Collector::start(
        dir,
        Some(broker.port),
        &agent_binding(AGENT, "pool-1", "pool"),
    );
    let config = agent_config(dir, AGENT, "pool-1", "pool", broker.port, batches, 10);
    Some((broker, collector, config))
}

/// Stops the broker with `signal` in the middle of a stream of `BATCHES` batches, waits until
/// the agent has spooled batches the broker never saw, restarts the broker (empty: no
/// persistence) and checks the collector ends up with every batch exactly once, in order.
fn broker_outage_loses_nothing(signal: &str) {
    const BATCHES: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let Some((mut broker, mut collector, config)) = mosquitto_collector_agent(dir.path(), BATCHES)
    else {
        return;
    };
    let mut agent = start_agent(dir.path(), "agent", &config);

    collector.wait_stat("batches_committed", 30, Duration::from_secs(60));
    let status = broker.proc.signal_and_wait(signal);
    eprintln!("mosquitto stopped with SIG{signal}: {status}");
    let stopped_at = collector.stat("batches_committed");
    wait_for(
        "the agent to spool batches while the broker is down",
        Duration::from_secs(30),
        || {
            agent.assert_running();
            (pending(dir.path()) >= 30).then_some(())
        },
    );
    broker.restart(dir.path());

    let status = agent.wait(Duration::from_secs(120));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    assert!(
        stopped_at < BATCHES,
        "the outage began after the stream had ended"
    );
    assert_eq!(
        spotcheck_agent::spool_next_seq(&spool_dir(dir.path())).unwrap(),
        BATCHES + 1
    );
    // The agent exits only once the collector has confirmed every batch, so all are stored.
    assert_stored_exactly_once_in_order(&collector, 1, BATCHES);
    eprintln!(
        "committed before the outage: {stopped_at}; duplicates dropped by the collector: {}",
        collector.stat("duplicates_dropped")
    );
}

#[test]
fn every_batch_arrives_once_and_in_order_when_mosquitto_is_stopped_and_restarted() {
    broker_outage_loses_nothing("TERM");
}

#[test]
fn every_batch_arrives_once_and_in_order_when_mosquitto_is_sigkilled_and_restarted_empty() {
    broker_outage_loses_nothing("KILL");
}

#[test]
fn an_agent_killed_with_unconfirmed_batches_loses_and_duplicates_nothing_after_restart() {
    const BATCHES: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, mut collector, config)) = mosquitto_collector_agent(dir.path(), BATCHES)
    else {
        return;
    };
    let mut agent = start_agent(dir.path(), "agent-1", &config);
    collector.wait_stat("batches_committed", 20, Duration::from_secs(60));

    // Freeze the collector so that confirmations stop and the spool fills with batches that
    // are published (Mosquitto queues them for the collector) but unconfirmed.
    collector.proc.signal("STOP");
    wait_for(
        "unconfirmed batches in the spool",
        Duration::from_secs(30),
        || {
            agent.assert_running();
            (pending(dir.path()) >= 30).then_some(())
        },
    );
    agent.signal_and_wait("KILL");
    let at_kill = inspect(&spool_dir(dir.path())).unwrap();
    assert!(at_kill.pending > 0, "the spool was empty at the kill");
    let made_before_kill = at_kill.next_seq - 1;
    eprintln!(
        "at the kill: {made_before_kill} batches made, {} unconfirmed",
        at_kill.pending
    );
    collector.proc.signal("CONT");

    // The restarted agent re-sends the unconfirmed batches, then makes BATCHES new ones
    // (numbered on from where the killed one stopped) and exits once all are confirmed.
    let mut agent = start_agent(dir.path(), "agent-2", &config);
    let status = agent.wait(Duration::from_secs(120));
    assert!(status.success(), "restarted agent failed:\n{}", agent.log());
    let made = spotcheck_agent::spool_next_seq(&spool_dir(dir.path())).unwrap() - 1;
    assert_eq!(
        made,
        made_before_kill + BATCHES,
        "numbering continues after kill -9"
    );
    assert_stored_exactly_once_in_order(&collector, 1, made);
    eprintln!(
        "duplicates dropped by the collector: {}",
        collector.stat("duplicates_dropped")
    );
}

#[test]
fn a_full_spool_drops_the_oldest_batches_counts_them_and_delivers_the_rest() {
    const BATCHES: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    if !Path::new("/usr/sbin/mosquitto").exists() && !Path::new("/usr/bin/mosquitto").exists() {
        assert!(!servers_required(), "mosquitto is not installed");
        eprintln!("skipping: mosquitto is not installed");
        return;
    }
    // The broker is down while the agent makes every batch: ~60 kB each, into a 1 MiB spool.
    let port = free_port();
    let config = agent_config(dir.path(), AGENT, "pool-1", "pool", port, BATCHES, 5);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "[spool]\n",
            "[spool]\nmax_bytes = 1048576\nsegment_bytes = 524288\nfsync = false\n",
        )
        .replace("seed = 7\n", "seed = 7\nrecords_per_batch = 100\n");
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(dir.path(), "agent", &config);
    wait_for(
        "the agent to make every batch",
        Duration::from_secs(60),
        || {
            agent.assert_running();
            inspect(&spool_dir(dir.path()))
                .ok()
                .filter(|s| s.next_seq == BATCHES + 1)
        },
    );
    let spooled = inspect(&spool_dir(dir.path())).unwrap();
    assert!(spooled.bytes <= 1_048_576, "{spooled:?}");
    let dropped = last_logged_number(&agent.log(), "dropped_total")
        .expect("the agent logs what the overflow policy dropped");
    assert!(dropped > 0, "nothing was dropped: {spooled:?}");
    assert_eq!(spooled.pending as u64 + dropped, BATCHES, "{spooled:?}");

    let Some(broker) = Mosquitto::start_on(dir.path(), port) else {
        return;
    };
    let collector = Collector::start(
        dir.path(),
        Some(broker.port),
        &agent_binding(AGENT, "pool-1", "pool"),
    );
    let status = agent.wait(Duration::from_secs(120));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    // Drop oldest: the survivors are the newest batches, delivered once each.
    let db = collector.db();
    let seqs: Vec<u64> = stored_batches(&db, AGENT).iter().map(|b| b.0).collect();
    let want: Vec<u64> = (dropped + 1..=BATCHES).collect();
    assert_eq!(seqs, want);
    assert_eq!(batches_with_wrong_item_counts(&db), 0);
    // The collector noticed the dropped range, recorded it and counts it for this agent.
    let gaps: (i64, i64, i64) = db
        .query_row(
            "SELECT min(first), max(last), CAST(sum(last - first + 1) AS BIGINT) FROM seq_gaps WHERE agent = $1",
            args![AGENT],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(gaps, (1, dropped as i64, dropped as i64));
    let metrics = ureq::get(&format!("http://{}/metrics", collector.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "spotcheck_agent_batches_given_up_total{{agent=\"{AGENT}\"}} {dropped}"
        )),
        "{metrics}"
    );
}

#[test]
fn an_agent_on_a_full_disk_pauses_its_sources_restarts_and_drains_once_acks_return() {
    const BATCHES: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let Some(_disk) = SmallDisk::mount(&dir.path().join("spool"), "1536k") else {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    };
    let Some((_broker, collector, config)) = mosquitto_collector_agent(dir.path(), BATCHES) else {
        return;
    };
    // ~60 kB batches into a 1.5 MiB disk, far below spool.max_bytes: the disk fills first.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("[spool]\n", "[spool]\nsegment_bytes = 524288\n")
        .replace("seed = 7\n", "seed = 7\nrecords_per_batch = 100\n");
    std::fs::write(&config, text).unwrap();

    // No acks while the collector is frozen: the spool fills the disk.
    collector.proc.signal("STOP");
    let mut agent = start_agent(dir.path(), "agent-1", &config);
    wait_for(
        "the agent to find its disk full",
        Duration::from_secs(60),
        || {
            agent.assert_running();
            strip_ansi(&agent.log()).contains("Disk full").then_some(())
        },
    );
    // It does not exit, and it starts again on the full disk after a kill -9.
    agent.signal_and_wait("KILL");
    let mut agent = start_agent(dir.path(), "agent-2", &config);
    wait_for(
        "the restarted agent to find its disk full",
        Duration::from_secs(60),
        || {
            agent.assert_running();
            strip_ansi(&agent.log()).contains("Disk full").then_some(())
        },
    );
    let at_full = inspect(&spool_dir(dir.path())).unwrap();
    assert!(at_full.pending > 0, "{at_full:?}");

    // Acks return: space is freed, the sources resume, and everything drains.
    collector.proc.signal("CONT");
    let status = agent.wait(Duration::from_secs(180));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    assert!(
        strip_ansi(&agent.log()).contains("Disk space is back"),
        "{}",
        agent.log()
    );
    let made = spotcheck_agent::spool_next_seq(&spool_dir(dir.path())).unwrap() - 1;
    assert!(made >= BATCHES, "{made}");
    // Every batch the spool took, stored once and whole; none lost, none twice.
    let db = collector.db();
    let seqs: Vec<u64> = stored_batches(&db, AGENT).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=made).collect::<Vec<_>>());
    assert_eq!(batches_with_wrong_item_counts(&db), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
}

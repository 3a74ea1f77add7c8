//! The fault suite's CI part (issue 16): the collector killed with SIGKILL at twenty moments
//! of an agent's stream (embedded broker, so the broker dies with it), restarted each time on
//! the same data. Reports sent vs stored; asserts every batch the agent made is stored exactly
//! once and whole, nothing is dead-lettered, the database passes `PRAGMA integrity_check` (on SQLite), and
//! no process panicked.

use std::time::Duration;

use spotcheck_e2e::*;

const AGENT: &str = "pool-agent-1";
const KILLS: usize = 20;

/// A small seeded generator, so a failing run can be repeated (xorshift64*).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

#[test]
fn the_collector_killed_twenty_times_during_a_stream_loses_and_duplicates_nothing() {
    let seed = std::env::var("SPOTCHECK_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    eprintln!("fault moments seed: {seed} (set SPOTCHECK_FAULT_SEED to repeat)");
    let mut moments = Moments(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let config = agent_config(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        1500,
        10,
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    let mut panics = 0;
    for k in 1..=KILLS {
        // Some progress since the last restart, then a kill at a random moment after it.
        let before = collector.stat("batches_committed");
        if !agent.has_exited() {
            wait_for("ingest to make progress", Duration::from_secs(60), || {
                collector.proc.assert_running();
                (collector.stat("batches_committed") > before || agent.has_exited()).then_some(())
            });
        }
        std::thread::sleep(Duration::from_millis(moments.next_ms(300)));
        collector.proc.signal_and_wait("KILL");
        panics += collector.proc.log().matches("panicked").count();
        collector.restart(&format!("collector-{k}"));
    }
    let status = agent.wait(Duration::from_secs(180));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    panics += collector.proc.log().matches("panicked").count();
    panics += agent.log().matches("panicked").count();

    let made = spotcheck_agent::spool_next_seq(&dir.path().join("spool").join(AGENT)).unwrap() - 1;
    let db = collector.db();
    let seqs: Vec<u64> = stored_batches(&db, AGENT).iter().map(|(s, _)| *s).collect();
    let stored_readings = stored_readings(&db).len() as u64;
    eprintln!(
        "sent {made} batches ({} readings); stored {} batches ({stored_readings} readings); {KILLS} collector kills",
        made * 6,
        seqs.len()
    );
    assert_eq!(
        seqs,
        (1..=made).collect::<Vec<_>>(),
        "every batch exactly once"
    );
    assert_eq!(stored_readings, made * 6, "duplicates: 0, losses: 0");
    assert_eq!(batches_with_wrong_item_counts(&db), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
    // SQLite's own check of the file; PostgreSQL has no counterpart to ask.
    if !store::on_postgres() {
        let check: String = db
            .query_row("PRAGMA integrity_check", args![], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    assert_eq!(panics, 0, "a process panicked");
}

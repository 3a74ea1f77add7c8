//! The two MAC algorithms end to end (issue 10): an agent that signs with keyed BLAKE3 (the
//! default) and one configured `mac = "hmac-sha256"` (as for a collector that only knows
//! HMAC-SHA256) both have every batch stored and confirmed, and the collector answers each in
//! the algorithm it signs with, so an agent that only knows HMAC-SHA256 can check its acks.

use std::path::Path;
use std::time::Duration;

use spotcheck_e2e::*;

const BATCHES: u64 = 10;

#[test]
fn agents_of_either_mac_algorithm_are_stored_and_answered_in_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    if !have_mosquitto_pub() {
        return;
    }
    // Every ack, topic first (`-v`), as the broker delivers it.
    let acks = Proc::spawn(
        "acks",
        Path::new("/usr/bin/mosquitto_sub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-q",
            "1",
            "-v",
            "-t",
            "spotcheck/v1/agents/+/ack",
        ],
        dir.path(),
    );
    let bindings = agent_binding("b3", "pool-1", "pool") + &agent_binding("hm", "pool-2", "pool");
    let mut c = Collector::start(dir.path(), Some(broker.port), &bindings);
    let b3 = agent_config(dir.path(), "b3", "pool-1", "pool", broker.port, BATCHES, 5);
    let hm = agent_config(dir.path(), "hm", "pool-2", "pool", broker.port, BATCHES, 5);
    let text = std::fs::read_to_string(&hm).unwrap();
    let text = text.replacen(
        "domain = \"pool\"\n",
        "domain = \"pool\"\nmac = \"hmac-sha256\"\n",
        1,
    );
    std::fs::write(&hm, text).unwrap();
    let mut agents = [
        start_agent(dir.path(), "agent-b3", &b3),
        start_agent(dir.path(), "agent-hm", &hm),
    ];
    c.wait_stat("batches_committed", 2 * BATCHES, Duration::from_secs(60));
    // Each exits by itself once every batch it made is confirmed by an ack it believed.
    for a in &mut agents {
        let status = a.wait(Duration::from_secs(30));
        assert!(status.success(), "agent failed:\n{}", a.log());
    }
    assert_eq!(c.stat("messages_rejected"), 0);
    assert_eq!(
        count(&c.db(), "SELECT count(*) FROM batches"),
        2 * BATCHES as i64
    );
    let log = acks.log();
    let of = |agent: &str| -> Vec<String> {
        let topic = format!("spotcheck/v1/agents/{agent}/ack ");
        log.lines()
            .filter_map(|l| l.strip_prefix(&topic))
            .map(str::to_owned)
            .collect()
    };
    let (b3_acks, hm_acks) = (of("b3"), of("hm"));
    assert!(!b3_acks.is_empty() && !hm_acks.is_empty(), "{log}");
    for ack in &b3_acks {
        assert!(ack.contains(",\"mac\":\"b3:1:"), "{ack}");
    }
    for ack in &hm_acks {
        assert!(ack.contains(",\"mac\":\"1:"), "{ack}");
    }
}

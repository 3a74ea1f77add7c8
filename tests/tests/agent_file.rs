//! The agent's file tail and stdin sources, with the real agent and collector binaries
//! (embedded broker): a tail across a rotation, a restart that resumes at the saved offset, and
//! records piped into stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use spotcheck_e2e::*;

const AGENT: &str = "pool-agent-1";

/// A JSON-lines pH reading whose `ts_ms` identifies it (`base + i`).
fn json_line(base: i64, i: i64) -> String {
    format!(
        r#"{{"metric":"ph","value":7.2,"unit":"pH","ts_ms":{}}}"#,
        base + i
    ) + "\n"
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Stored readings, and how many distinct timestamps (each line has its own) they have.
fn readings(collector: &Collector) -> (usize, usize) {
    let all = stored_readings(&collector.db());
    let distinct: std::collections::BTreeSet<i64> = all.iter().map(|r| r.0).collect();
    (all.len(), distinct.len())
}

fn file_source(dir: &Path, format: &str) -> String {
    format!(
        "[[sources]]\ntype = \"file\"\npath = {:?}\nformat = \"{format}\"\nstate_file = {:?}\npoll_interval_ms = 50\nrecords_per_batch = 10\n",
        dir.join("records.log").display().to_string(),
        dir.join("state").join("tail.json").display().to_string(),
    )
}

/// Waits until the tail's saved offset reaches the end of `file` (everything was spooled).
fn wait_tail_caught_up(dir: &Path, file: &Path, agent: &mut Proc) {
    let state = dir.join("state").join("tail.json");
    wait_for(
        "the tail to reach the end of the file",
        Duration::from_secs(30),
        || {
            agent.assert_running();
            let len = std::fs::metadata(file).ok()?.len();
            let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).ok()?).ok()?;
            (s["offset"].as_u64()? == len).then_some(())
        },
    );
}

#[test]
fn the_file_tail_follows_a_rotation_and_reads_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let log = dir.path().join("records.log");
    let base = spotcheck_protocol::UnixMillis::now().0 - 60_000;
    append(
        &log,
        &(0..25).map(|i| json_line(base, i)).collect::<String>(),
    );
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        &file_source(dir.path(), "json_lines"),
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    collector.wait_stat("readings_ingested", 25, Duration::from_secs(60));

    // logrotate's default: the writer adds its last lines, the file is renamed away, and a new
    // one is created under the name.
    append(
        &log,
        &(25..30).map(|i| json_line(base, i)).collect::<String>(),
    );
    std::fs::rename(&log, dir.path().join("records.log.1")).unwrap();
    append(
        &log,
        &(30..50).map(|i| json_line(base, i)).collect::<String>(),
    );

    collector.wait_stat("readings_ingested", 50, Duration::from_secs(60));
    wait_tail_caught_up(dir.path(), &log, &mut agent);
    assert_eq!(readings(&collector), (50, 50), "every line once");
    agent.assert_running();
    assert!(strip_ansi(&agent.log()).contains("Tailed file rotated"));
}

#[test]
fn a_restarted_file_tail_resumes_at_its_offset_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let log = dir.path().join("records.log");
    let base = spotcheck_protocol::UnixMillis::now().0 - 60_000;
    let csv = |from: i64, to: i64| -> String {
        (from..to)
            .map(|i| format!("ph,7.2,pH,{}\n", base + i))
            .collect()
    };
    append(&log, &format!("metric,value,unit,ts_ms\n{}", csv(0, 30)));
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        &file_source(dir.path(), "csv"),
    );
    let mut agent = start_agent(dir.path(), "agent-1", &config);
    collector.wait_stat("readings_ingested", 30, Duration::from_secs(60));
    wait_tail_caught_up(dir.path(), &log, &mut agent);
    let status = agent.signal_and_wait("TERM");
    assert!(
        status.success(),
        "agent failed on SIGTERM:\n{}",
        agent.log()
    );

    // Lines written while the agent is stopped; a malformed one is skipped and counted.
    append(
        &log,
        &format!("{}ph,not-a-number\n{}", csv(30, 40), csv(40, 50)),
    );
    let mut agent = start_agent(dir.path(), "agent-2", &config);
    collector.wait_stat("readings_ingested", 50, Duration::from_secs(60));
    wait_tail_caught_up(dir.path(), &log, &mut agent);
    let spool = dir.path().join("spool").join(AGENT);
    wait_for("the spool to be empty", Duration::from_secs(30), || {
        spotcheck_agent::spool::inspect(&spool)
            .ok()
            .filter(|s| s.pending == 0)
    });
    assert_eq!(readings(&collector), (50, 50), "every line once");
    let log_text = strip_ansi(&agent.log());
    assert!(log_text.contains("Resuming the file tail"), "{log_text}");
    assert!(log_text.contains("Input rejected."), "{log_text}");
}

#[test]
fn records_piped_into_stdin_are_stored_and_the_agent_exits_at_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        "[[sources]]\ntype = \"stdin\"\nrecords_per_batch = 4\n",
    );
    let base = spotcheck_protocol::UnixMillis::now().0 - 60_000;
    let out = std::fs::File::create(dir.path().join("agent-stdin.log")).unwrap();
    let mut child = Command::new(bin("spotcheck-agent"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let lines: String = (0..10).map(|i| json_line(base, i)).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{lines}not json\n").as_bytes())
        .unwrap();
    collector.wait_stat("readings_ingested", 10, Duration::from_secs(60));
    let status = wait_for("the agent to exit", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    let log = std::fs::read_to_string(dir.path().join("agent-stdin.log")).unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(readings(&collector), (10, 10));
    assert!(strip_ansi(&log).contains("malformed_json"), "{log}");
}

#[test]
fn an_agent_killed_again_and_again_while_its_file_tail_reads_a_backlog_stores_every_line_once() {
    const LINES: i64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let log = dir.path().join("records.log");
    let base = spotcheck_protocol::UnixMillis::now().0 - 3_600_000;
    append(
        &log,
        &(0..LINES).map(|i| json_line(base, i)).collect::<String>(),
    );
    let len = std::fs::metadata(&log).unwrap().len();
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        &file_source(dir.path(), "json_lines"),
    );
    let state = dir.path().join("state").join("tail.json");
    let offset = || -> u64 {
        std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|s| s["offset"].as_u64())
            .unwrap_or(0)
    };
    // Killed (SIGKILL) at six points of the backlog, each while the tail is reading.
    for k in 1..=6u64 {
        let mut agent = start_agent(dir.path(), &format!("agent-{k}"), &config);
        let target = len * k / 7;
        wait_for("the tail to move on", Duration::from_secs(60), || {
            agent.assert_running();
            (offset() >= target).then_some(())
        });
        agent.signal_and_wait("KILL");
    }
    let mut agent = start_agent(dir.path(), "agent-last", &config);
    wait_tail_caught_up(dir.path(), &log, &mut agent);
    collector.wait_stat("readings_ingested", LINES as u64, Duration::from_secs(120));
    let spool = dir.path().join("spool").join(AGENT);
    wait_for("the spool to be empty", Duration::from_secs(60), || {
        spotcheck_agent::spool::inspect(&spool)
            .ok()
            .filter(|s| s.pending == 0)
    });
    assert_eq!(
        readings(&collector),
        (LINES as usize, LINES as usize),
        "every line exactly once"
    );
}

//! Bad configuration: a clear message that names the field or address, and a non-zero exit.

use std::time::Duration;

use spotcheck_e2e::*;

fn collector_with(dir: &std::path::Path, toml: &str) -> (bool, String) {
    let path = dir.join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    let mut p = Proc::spawn(
        "collector",
        &bin("spotcheck-collector"),
        &["serve", "--config", path.to_str().unwrap()],
        dir,
    );
    let status = p.wait(Duration::from_secs(30));
    (status.success(), p.log())
}

#[test]
fn an_unknown_key_is_named_and_the_collector_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, log) = collector_with(dir.path(), "[mqtt]\nbrokr = \"mqtt://127.0.0.1:1883\"\n");
    assert!(!ok);
    assert!(log.contains("brokr") && log.contains("line 2"), "{log}");
}

#[test]
fn a_value_of_the_wrong_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, log) = collector_with(dir.path(), "[store]\nretention_days = \"forever\"\n");
    assert!(!ok);
    assert!(
        log.contains("retention_days") || log.contains("line 2"),
        "{log}"
    );
}

#[test]
fn an_unreachable_broker_is_named_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there
    let toml = format!(
        "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{}\"\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{port}\"\nconnect_timeout_s = 2\n",
        dir.path().join("data").display().to_string(),
        free_port()
    );
    let (ok, log) = collector_with(dir.path(), &toml);
    assert!(!ok);
    assert!(log.contains(&format!("mqtt://127.0.0.1:{port}")), "{log}");
}

#[test]
fn an_agent_config_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), "a1", "pool-1", "pool", 1883, 1, 10);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[spool]\n", "[spool]\nsize = 3\n");
    std::fs::write(&config, text).unwrap();
    let mut p = start_agent(dir.path(), "agent", &config);
    let status = p.wait(Duration::from_secs(30));
    assert!(!status.success());
    assert!(p.log().contains("size"), "{}", p.log());
}

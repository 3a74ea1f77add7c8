//! Operating the agent: `spotcheck-agent check`, the local `/healthz` and `/metrics`, and a
//! TLS connection with a client certificate to a real Mosquitto.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spotcheck_e2e::*;

const AGENT: &str = "pool-agent-1";

fn simulate_source() -> &'static str {
    "[[sources]]\ntype = \"simulate\"\nfeed = \"pool\"\ninterval_ms = 20\nseed = 7\n"
}

fn run_check(config: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(bin("spotcheck-agent"))
        .args(["check", "--config", config.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), strip_ansi(&text))
}

#[test]
fn check_passes_against_a_reachable_broker_and_lists_reasons_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        simulate_source(),
    );
    let (ok, text) = run_check(&config, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("ok: broker mqtt://127.0.0.1"), "{text}");
    assert!(text.contains("ok: spool directory"), "{text}");

    let nobody = format!("mqtt://127.0.0.1:{}", free_port());
    let (ok, text) = run_check(&config, &["--broker", &nobody]);
    assert!(!ok, "{text}");
    assert!(text.contains("cannot reach the broker"), "{text}");

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("ack_timeout_ms = 2000", "ack_timeout_ms = 5");
    std::fs::write(&bad, text).unwrap();
    let (ok, text) = run_check(&bad, &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("mqtt.ack_timeout_ms"), "{text}");
}

#[test]
fn healthz_and_metrics_report_the_agent_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        &format!(
            "{}\n[telemetry]\nlisten = \"{listen}\"\n",
            simulate_source()
        ),
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    wait_listening("/metrics", listen, &mut agent);
    collector.wait_stat("batches_committed", 5, Duration::from_secs(60));
    let health: serde_json::Value = ureq::get(&format!("http://{listen}/healthz"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = wait_for("metrics to show batches", Duration::from_secs(30), || {
        let text = ureq::get(&format!("http://{listen}/metrics"))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        (text.contains("spotcheck_agent_connected 1")
            && !text.contains("spotcheck_agent_spool_next_seq 1\n"))
        .then_some(text)
    });
    for name in [
        "spotcheck_agent_spool_pending",
        "spotcheck_agent_spool_dropped_total 0",
        "spotcheck_agent_records_rejected_total",
        "spotcheck_agent_modbus_errors_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
}

#[test]
fn readings_reach_the_collector_over_mqtts_with_a_client_certificate() {
    let program = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(program) = program else {
        assert!(!servers_required(), "mosquitto is not installed");
        eprintln!("skipping: mosquitto is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    spotcheck_e2e::tls::make_certificates(d);
    // Mosquitto started as root drops to its own user, which must be able to read the
    // (throwaway) keys.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.crt", "server.crt", "server.key"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (plain, tls) = (free_port(), free_port());
    let p = |f: &str| d.join(f).display().to_string();
    std::fs::write(
        d.join("mosquitto-tls.conf"),
        format!(
            "per_listener_settings true\npersistence false\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            p("ca.crt"),
            p("server.crt"),
            p("server.key")
        ),
    )
    .unwrap();
    let mut broker = Proc::spawn(
        "mosquitto",
        Path::new(program),
        &["-c", &p("mosquitto-tls.conf")],
        d,
    );
    wait_listening(
        "mosquitto's TLS listener",
        ([127, 0, 0, 1], tls).into(),
        &mut broker,
    );
    let mut collector = Collector::start(d, Some(plain), &agent_binding(AGENT, "pool-1", "pool"));
    let config = agent_config_with_sources(d, AGENT, "pool-1", "pool", plain, simulate_source());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("mqtt://127.0.0.1:{plain}"),
            &format!("mqtts://127.0.0.1:{tls}"),
        )
        .replace(
            "ack_timeout_ms = 2000\n",
            &format!(
                "ack_timeout_ms = 2000\n[mqtt.tls]\nca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
                p("ca.crt"),
                p("client.crt"),
                p("client.key")
            ),
        );
    std::fs::write(&config, text).unwrap();
    let (ok, out) = run_check(&config, &[]);
    assert!(ok, "{out}");
    let mut agent = start_agent(d, "agent", &config);
    collector.wait_stat("batches_committed", 5, Duration::from_secs(60));
    agent.assert_running();
    assert!(strip_ansi(&agent.log()).contains("mqtts://127.0.0.1"));
}

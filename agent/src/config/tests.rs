//! Unit tests of the configuration: parsing, validation and the shipped examples.
use super::*;

const GOOD: &str = r#"
[agent]
id = "pool-agent-1"
entity = "pool-1"
domain = "pool"

[mqtt]
broker = "mqtt://127.0.0.1:1883"

[spool]
dir = "./spool/pool-agent-1"

[[sources]]
type = "simulate"
feed = "pool"
interval_ms = 1000
seed = 42
"#;

fn parse_err(text: &str) -> String {
    AgentConfig::from_toml_str(text).unwrap_err().to_string()
}

fn problems(c: &AgentConfig) -> Vec<String> {
    match c.validate() {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_minimal_config_parses_with_defaults_and_validates() {
    let c = AgentConfig::from_toml_str(GOOD).unwrap();
    c.validate().unwrap();
    assert_eq!(c.mqtt.keepalive_s, 30);
    assert_eq!(c.mqtt.max_in_flight, 256);
    assert_eq!(c.spool.max_bytes, 256 * 1024 * 1024);
    assert!(c.spool.fsync);
    assert_eq!(c.agent.mac, spotcheck_protocol::mac::Algorithm::Blake3);
}

#[test]
fn the_mac_algorithm_can_be_set_back_to_hmac_sha256() {
    let text = GOOD.replace(
        "domain = \"pool\"",
        "domain = \"pool\"\nmac = \"hmac-sha256\"",
    );
    let c = AgentConfig::from_toml_str(&text).unwrap();
    assert_eq!(c.agent.mac, spotcheck_protocol::mac::Algorithm::HmacSha256);
    let bad = GOOD.replace("domain = \"pool\"", "domain = \"pool\"\nmac = \"md5\"");
    let err = parse_err(&bad);
    assert!(
        err.contains("hmac-sha256") && err.contains("blake3"),
        "{err}"
    );
}

#[test]
fn shipped_examples_parse_and_validate() {
    for name in [
        "simulate", "pool", "game", "hospital", "http", "file", "stdin", "modbus",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.toml"));
        let c = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // tls.toml names certificate files that exist only on a real installation.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tls.toml");
    let c = AgentConfig::load(&path).unwrap();
    assert!(c.broker_addr().unwrap().tls);
    let Err(ConfigError::Invalid { problems }) = c.validate() else {
        panic!("tls.toml names files that do not exist here")
    };
    assert!(
        problems.iter().all(|p| p.starts_with("mqtt.tls.")),
        "{problems:?}"
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = GOOD.replace("keepalive", "x").replace(
        "broker = \"mqtt://127.0.0.1:1883\"",
        "broker = \"mqtt://127.0.0.1:1883\"\nkeepalive = 3",
    );
    let e = parse_err(&text);
    assert!(e.contains("keepalive"), "{e}");
    assert!(e.contains("line 9"), "{e}");
}

#[test]
fn an_unknown_key_inside_a_source_is_named() {
    let e = parse_err(&GOOD.replace("seed = 42", "sed = 42"));
    assert!(e.contains("sed"), "{e}");
}

#[test]
fn a_wrong_type_is_named_with_its_line() {
    let e = parse_err(&GOOD.replace(
        "[spool]\ndir = \"./spool/pool-agent-1\"",
        "[spool]\ndir = \"./spool/pool-agent-1\"\nfsync = \"yes\"",
    ));
    assert!(e.contains("fsync") || e.contains("line 13"), "{e}");
    assert!(e.contains("bool"), "{e}");
}

#[test]
fn an_invalid_agent_id_is_rejected_at_parse_time() {
    let e = parse_err(&GOOD.replace("pool-agent-1\"\nentity", "pool/agent\"\nentity"));
    assert!(e.contains("'/'"), "{e}");
}

#[test]
fn a_file_error_names_the_file() {
    let e = AgentConfig::load(Path::new("/nonexistent/agent.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/agent.toml"), "{e}");
}

#[test]
fn broker_urls_parse_or_say_what_is_wrong() {
    let ok = BrokerAddr::parse("mqtt://broker.local:1884").unwrap();
    assert_eq!((ok.host.as_str(), ok.port), ("broker.local", 1884));
    assert_eq!(BrokerAddr::parse("mqtt://h").unwrap().port, 1883);
    assert_eq!(BrokerAddr::parse("mqtt://[::1]:1999").unwrap().host, "::1");
    let tls = BrokerAddr::parse("mqtts://h").unwrap();
    assert!(tls.tls);
    assert_eq!(tls.port, 8883);
    assert!(BrokerAddr::parse("ws://h:8883")
        .unwrap_err()
        .contains("mqtts://"));
    assert!(BrokerAddr::parse("127.0.0.1:1883")
        .unwrap_err()
        .contains("no scheme"));
    assert!(BrokerAddr::parse("mqtt://h:99999")
        .unwrap_err()
        .contains("port"));
    assert!(BrokerAddr::parse("mqtt://:1883")
        .unwrap_err()
        .contains("no host"));
}

#[test]
fn validate_lists_every_problem_at_once() {
    let mut c = AgentConfig::from_toml_str(GOOD).unwrap();
    c.mqtt.broker = "tcp://x".into();
    c.mqtt.max_in_flight = 0;
    c.spool.max_bytes = 10;
    let SourceConfig::Simulate(sim) = &mut c.sources[0] else {
        panic!("the config has a simulate source")
    };
    sim.feed = Domain::Game;
    sim.interval_ms = 0;
    let p = problems(&c);
    let all = p.join("\n");
    assert!(all.contains("mqtt.broker"), "{all}");
    assert!(all.contains("max_in_flight"), "{all}");
    assert!(all.contains("spool.max_bytes"), "{all}");
    assert!(all.contains("sources[0].feed"), "{all}");
    assert!(all.contains("sources[0].interval_ms"), "{all}");
    assert!(p.len() >= 5, "{all}");
}

#[test]
fn the_password_is_never_printed() {
    let text = GOOD.replace(
        "broker = \"mqtt://127.0.0.1:1883\"",
        "broker = \"mqtt://127.0.0.1:1883\"\nusername = \"u\"\npassword = \"hunter2\"",
    );
    let c = AgentConfig::from_toml_str(&text).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

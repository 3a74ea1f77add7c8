//! The agent's Modbus TCP source against pymodbus's server (PyPI, installed by `.ci/run`; see
//! `agent/tests/modbus/server.py` for its registers), through the real collector: every data
//! type and word order of the register map decodes to the expected reading, and a register
//! the device refuses (a Modbus exception) is logged, counted and retried without stopping the
//! others.

use std::path::Path;
use std::time::Duration;

use spotcheck_e2e::*;

const AGENT: &str = "pool-agent-1";

#[test]
fn modbus_registers_become_readings_and_an_exception_is_logged_and_retried() {
    if !python_has("pymodbus") {
        assert!(
            !servers_required(),
            "pymodbus is not installed but SPOTCHECK_REQUIRE_SERVERS=1 (pip install pymodbus==3.8.6)"
        );
        eprintln!("skipping: pymodbus is not installed (pip install pymodbus==3.8.6)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/modbus/server.py");
    let mut server = Proc::spawn(
        "pymodbus",
        Path::new("python3"),
        &[script.to_str().unwrap(), &port.to_string()],
        dir.path(),
    );
    wait_listening(
        "the pymodbus server",
        ([127, 0, 0, 1], port).into(),
        &mut server,
    );

    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "pool-1", "pool"));
    let sources = format!(
        r#"[[sources]]
type = "modbus"
address = "127.0.0.1:{port}"
unit_id = 1
poll_interval_ms = 200
timeout_ms = 1000

[[sources.registers]]
metric = "ph"
unit = "pH"
address = 0
register = "holding"
data_type = "u16"
scale = 0.01

[[sources.registers]]
metric = "free_chlorine"
unit = "mg/L"
address = 1
register = "holding"
data_type = "f32"
word_order = "big"

[[sources.registers]]
metric = "orp"
unit = "mV"
address = 3
register = "holding"
data_type = "i32"
scale = -3.5

[[sources.registers]]
metric = "water_temperature"
unit = "Cel"
address = 0
register = "input"
data_type = "i16"
scale = 0.1

[[sources.registers]]
metric = "turbidity"
unit = "NTU"
address = 150
register = "holding"
data_type = "u16"
"#
    );
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "pool-1",
        "pool",
        collector.mqtt_port,
        &sources,
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    // Three polls' worth: four good registers each.
    collector.wait_stat("readings_ingested", 12, Duration::from_secs(60));
    agent.assert_running();
    server.assert_running();

    let db = collector.db();
    let names: Vec<String> = db
        .query("SELECT name FROM metrics ORDER BY name", args![], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(names, ["free_chlorine", "orp", "ph", "water_temperature"]);

    let values: Vec<f64> = stored_readings(&db).into_iter().map(|r| r.1).collect();
    for (want, what) in [
        (7.2, "pH 720 × 0.01"),
        (f64::from(0.55f32), "free chlorine f32 0.55"),
        (700.0, "ORP i32 -200 × -3.5"),
        (26.5, "temperature i16 265 × 0.1"),
    ] {
        assert!(
            values.iter().any(|v| (v - want).abs() < 1e-9),
            "{what}: no reading of {want} in {values:?}"
        );
    }
    let log = strip_ansi(&agent.log());
    let failures = log.matches("Modbus poll failed").count();
    assert!(
        failures >= 2,
        "the refused register is retried each poll:\n{log}"
    );
    assert!(
        log.contains("turbidity"),
        "the failure names the entry:\n{log}"
    );
}

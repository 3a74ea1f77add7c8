//! `spotcheck-agent check`: validates a configuration and what it points at, without
//! publishing anything, and lists every problem found.
//!
//! Checked: the configuration itself ([`AgentConfig::validate`]); that the spool directory can
//! be created and written; that the broker accepts an MQTT connection with the configured
//! credentials and TLS settings (under the client id `AGENT-check`, so a running agent is not
//! disconnected, and without a last will); that each `http` source's and the `[telemetry]`
//! listen address can be bound; and that each Modbus device accepts a TCP connection.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet};

use crate::config::AgentConfig;
use crate::publish;
use crate::sources::SourceConfig;

/// How long the broker and devices get to answer.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// What `check` found wrong; each line says what and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
pub struct CheckFailed {
    /// One sentence per problem.
    pub problems: Vec<String>,
}

/// Runs every check; on success returns what was checked, one line each.
pub async fn check(config: &AgentConfig) -> Result<Vec<String>, CheckFailed> {
    if let Err(e) = config.validate() {
        return Err(CheckFailed {
            problems: match e {
                crate::ConfigError::Invalid { problems } => problems,
                other => vec![other.to_string()],
            },
        });
    }
    let mut passed = vec!["configuration is valid".to_owned()];
    let mut problems = Vec::new();
    let mut note = |r: Result<String, String>| match r {
        Ok(p) => passed.push(p),
        Err(p) => problems.push(p),
    };
    note(spool_writable(config));
    note(broker_reachable(config).await);
    for (i, source) in config.sources.iter().enumerate() {
        match source {
            SourceConfig::Http(h) => {
                note(bindable(&format!("sources[{i}].listen"), h.listen).await)
            }
            SourceConfig::Modbus(m) => note(device_reachable(i, m.address).await),
            _ => {}
        }
    }
    if let Some(t) = &config.telemetry {
        note(bindable("telemetry.listen", t.listen).await);
    }
    if problems.is_empty() {
        Ok(passed)
    } else {
        Err(CheckFailed { problems })
    }
}

fn spool_writable(config: &AgentConfig) -> Result<String, String> {
    let dir = &config.spool.dir;
    let probe = dir.join(".check.tmp");
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe))
        .map(|()| format!("spool directory {} is writable", dir.display()))
        .map_err(|e| {
            format!(
                "spool.dir {}: cannot create or write it: {e}; fix its permissions or pick another directory",
                dir.display()
            )
        })
}

async fn broker_reachable(config: &AgentConfig) -> Result<String, String> {
    let broker = config.broker_addr().map_err(|e| e.to_string())?;
    let id = format!("{}-check", config.agent.id);
    let options = publish::mqtt_options(config, &broker, &id).map_err(|e| e.to_string())?;
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let connected = tokio::time::timeout(REACH_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return match ack.code {
                        ConnectReturnCode::Success => Ok(()),
                        code => Err(format!(
                            "the broker {broker} refused the connection ({code:?}); check mqtt.username and mqtt.password"
                        )),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "cannot reach the broker {broker}: {e}; check mqtt.broker, the network and (for mqtts://) mqtt.tls"
                    ))
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "the broker {broker} did not answer within {REACH_TIMEOUT:?}; check mqtt.broker and the network"
        ))
    });
    if connected.is_ok() {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    }
    connected.map(|()| format!("broker {broker} accepts the connection"))
}

async fn bindable(key: &str, addr: std::net::SocketAddr) -> Result<String, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map(|_| format!("{key} {addr} can be bound"))
        .map_err(|e| format!("{key} {addr} cannot be bound: {e}; is another process using it?"))
}

async fn device_reachable(i: usize, addr: std::net::SocketAddr) -> Result<String, String> {
    match tokio::time::timeout(REACH_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(format!(
            "sources[{i}]: Modbus device {addr} accepts TCP connections"
        )),
        Ok(Err(e)) => Err(format!(
            "sources[{i}].address: cannot connect to the Modbus device {addr}: {e}"
        )),
        Err(_) => Err(format!(
            "sources[{i}].address: the Modbus device {addr} did not answer within {REACH_TIMEOUT:?}"
        )),
    }
}

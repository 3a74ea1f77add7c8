//! How the collector's MQTT client reaches an external broker over `mqtts://`: the
//! `[mqtt.tls]` table (the CA the broker must chain to, an optional client certificate) and
//! the broker password. The collector's own types, so that it depends on the wire contract
//! only and never on the agent crate; the agent's `[mqtt.tls]` reads the same way.

use std::fmt;
use std::path::{Path, PathBuf};

use rumqttc::TlsConfiguration;
use serde::Deserialize;

/// The `[mqtt.tls]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM file of the collector's client certificate (mutual TLS); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// A string that is never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("mqtt.tls.{key}: cannot read {}: {e}", path.display()))
}

/// The rumqttc TLS settings for `tls` (rustls with ring).
pub fn tls_configuration(tls: &TlsConfig) -> Result<TlsConfiguration, String> {
    // One crypto provider for the process (ring); a second install attempt is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = read_pem("ca_file", &tls.ca_file)?;
    let client_auth = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            Some((read_pem("client_cert", cert)?, read_pem("client_key", key)?))
        }
        _ => None,
    };
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

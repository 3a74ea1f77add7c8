//! The MQTT broker the collector reads from: an embedded one (rumqttd, the default) or an
//! external one named by URL. Either way ingest talks to it over real MQTT.

pub mod embedded;
pub mod tls;
pub mod url;

pub use embedded::{EmbeddedBroker, EmbeddedBrokerError, InProcessLink};
pub use url::{BrokerUrl, BrokerUrlError};

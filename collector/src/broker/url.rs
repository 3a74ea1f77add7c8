//! `mqtt://host:port` addresses.

use std::fmt;

/// A broker address from configuration or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why a string is not a broker URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    /// Not `mqtt://`.
    #[error(
        "broker URL {0:?} must start with mqtt:// (TLS is not supported by the collector yet)"
    )]
    Scheme(String),
    /// Host or port missing or malformed.
    #[error("broker URL {0:?} must look like mqtt://host:port")]
    Shape(String),
}

impl std::str::FromStr for BrokerUrl {
    type Err = BrokerUrlError;
    fn from_str(s: &str) -> Result<Self, BrokerUrlError> {
        let rest = s
            .strip_prefix("mqtt://")
            .ok_or_else(|| BrokerUrlError::Scheme(s.to_owned()))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| BrokerUrlError::Shape(s.to_owned()))?,
            ),
            None => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(BrokerUrlError::Shape(s.to_owned()));
        }
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_port() {
        let u: BrokerUrl = "mqtt://127.0.0.1:1884".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1884));
        let u: BrokerUrl = "mqtt://broker.local".parse().unwrap();
        assert_eq!(u.port, 1883);
        assert_eq!(u.to_string(), "mqtt://broker.local:1883");
    }

    #[test]
    fn other_schemes_and_shapes_are_rejected() {
        assert!(matches!(
            "http://x:1".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Scheme(_))
        ));
        assert!(matches!(
            "mqtt://:1883".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Shape(_))
        ));
        assert!(matches!(
            "mqtt://x:notaport".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Shape(_))
        ));
    }
}

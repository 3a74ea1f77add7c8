//! `mqtt://host:port` and `mqtts://host:port` (TLS) addresses. Credentials never go in the
//! URL (it is logged): `mqtt://user:pass@host` is refused with a pointer to
//! `mqtt.username` / `mqtt.password_file`.

use std::fmt;

/// A broker address from configuration or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS (rustls) with `[mqtt.tls]`.
    pub tls: bool,
}

/// Why a string is not a broker URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    /// Not `mqtt://` or `mqtts://`.
    #[error("broker URL {0:?} must start with mqtt:// or mqtts:// (TLS)")]
    Scheme(String),
    /// A user name or password in the URL.
    #[error("broker URL {0:?} holds a user name or password; URLs get logged, so write mqtt://host:port and put them in mqtt.username and mqtt.password_file (or the SPOTCHECK_MQTT_PASSWORD environment variable)")]
    Credentials(String),
    /// Host or port missing or malformed.
    #[error("broker URL {0:?} must look like mqtt://host:port")]
    Shape(String),
}

impl std::str::FromStr for BrokerUrl {
    type Err = BrokerUrlError;
    fn from_str(s: &str) -> Result<Self, BrokerUrlError> {
        let (rest, tls) = match (s.strip_prefix("mqtt://"), s.strip_prefix("mqtts://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => return Err(BrokerUrlError::Scheme(s.to_owned())),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            // Say which URL without repeating the password.
            let shown = format!(
                "{}://…@{}",
                if tls { "mqtts" } else { "mqtt" },
                rest.rsplit('@').next().unwrap_or("")
            );
            return Err(BrokerUrlError::Credentials(shown));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| BrokerUrlError::Shape(s.to_owned()))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(BrokerUrlError::Shape(s.to_owned()));
        }
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
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
    fn tls_urls_parse_and_credentials_in_a_url_are_refused_without_echoing_them() {
        let u: BrokerUrl = "mqtts://broker.local".parse().unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        assert_eq!(u.to_string(), "mqtts://broker.local:8883");
        let e = "mqtt://user:s3cret@host:1883"
            .parse::<BrokerUrl>()
            .unwrap_err();
        assert!(matches!(e, BrokerUrlError::Credentials(_)));
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("mqtt.username"), "{e}");
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

//! One write request: line protocol (gzipped if configured) to the write URL, and what the
//! answer means for the sink. HTTP through `ureq` (blocking, on the sink's own thread).

use std::io::Write;

use super::config::SinkConfig;

/// What a write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the points are stored.
    Written,
    /// 400 / 413 / 422: the server refuses these lines and will refuse them again; they go to
    /// the dead-letter store with the server's reason.
    Rejected {
        /// The status.
        status: u16,
        /// The server's message.
        reason: String,
    },
    /// Anything else (429, 5xx, 401/403/404, connection errors): try again later.
    Retry {
        /// The status, if the server answered.
        status: Option<u16>,
        /// `Retry-After` as sent.
        retry_after: Option<String>,
        /// What went wrong, for the log.
        error: String,
    },
}

/// Classifies an HTTP answer.
pub fn classify(status: u16, retry_after: Option<String>, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Written,
        400 | 413 | 422 => Outcome::Rejected {
            status,
            reason: truncate(body, 2000),
        },
        _ => Outcome::Retry {
            status: Some(status),
            retry_after,
            error: format!("HTTP {status}: {}", truncate(body, 300)),
        },
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Gzips a request body (fastest level: the network is rarely the limit on a LAN, the CPU
/// the collector shares with ingest is).
pub fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 8),
        flate2::Compression::fast(),
    );
    enc.write_all(text.as_bytes()).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

/// The HTTP side of the sink.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    auth: Option<String>,
    gzip: bool,
}

impl Client {
    /// A client for `config`'s write URL.
    pub fn new(config: &SinkConfig) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .build()
            .into();
        Client {
            agent,
            url: config.write_url.clone(),
            auth: config
                .token
                .as_ref()
                .map(|t| format!("Token {}", t.expose())),
            gzip: config.gzip,
        }
    }

    /// The request body for `lines`: gzipped when configured, else `None` (send the text).
    /// Separate from [`Client::post`] so the sink encodes the next batch while one is in flight.
    pub fn encode(&self, lines: &str) -> Option<Vec<u8>> {
        self.gzip.then(|| gzip(lines))
    }

    /// Sends `lines`.
    pub fn write(&self, lines: &str) -> Outcome {
        self.post(lines, self.encode(lines).as_deref())
    }

    /// Sends a batch: `gzipped` if [`Client::encode`] made it, else `lines` as they are.
    pub fn post(&self, lines: &str, gzipped: Option<&[u8]>) -> Outcome {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        let sent = match gzipped {
            Some(body) => req.header("Content-Encoding", "gzip").send(body),
            None => req.send(lines.as_bytes()),
        };
        match sent {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = resp.body_mut().read_to_string().unwrap_or_default();
                classify(status, retry_after, body)
            }
            Err(e) => Outcome::Retry {
                status: None,
                retry_after: None,
                error: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(204, None, String::new()), Outcome::Written);
        assert!(
            matches!(classify(400, None, "bad line".into()), Outcome::Rejected { status: 400, reason } if reason == "bad line")
        );
        assert!(matches!(
            classify(422, None, String::new()),
            Outcome::Rejected { status: 422, .. }
        ));
        assert!(
            matches!(classify(429, Some("2".into()), String::new()), Outcome::Retry { status: Some(429), retry_after: Some(r), .. } if r == "2")
        );
        assert!(matches!(
            classify(503, None, String::new()),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(401, None, String::new()),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let text = "pool,entity=a value=1 1\n".repeat(100);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gzip(&text)[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }
}

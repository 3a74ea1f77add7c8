//! Generic webhook: `POST url` with the message as JSON, signed so the receiver can tell it
//! came from this collector and is not a replay.
//!
//! Headers: `X-Spotcheck-Timestamp` (Unix milliseconds), `X-Spotcheck-Signature`
//! (`sha256=` + hex HMAC-SHA256 under the channel secret over `{timestamp}.{body}`),
//! `X-Spotcheck-Message` (the message id). A receiver recomputes the signature over the raw
//! body, compares in constant time, and refuses a timestamp more than 5 minutes from its
//! clock; it may drop a message id it has already seen (a send whose answer was lost is sent
//! again).

use serde_json::json;

use super::{hmac_sha256, post_json, OutMessage, SendError};
use crate::notify::config::ChannelConfig;

/// The signature header's value for `body` sent at `ts_ms`.
pub fn signature(secret: &str, ts_ms: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{ts_ms}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac))
}

/// The JSON body.
pub fn body(msg: &OutMessage) -> String {
    json!({
        "id": msg.id,
        "title": msg.title,
        "text": msg.text,
        "route": msg.route,
        "group": msg.group,
        "liaisons": msg.recipients.names,
    })
    .to_string()
}

/// One attempt.
pub fn send(c: &ChannelConfig, msg: &OutMessage) -> Result<String, SendError> {
    let url = c
        .url
        .as_deref()
        .ok_or_else(|| SendError::Config("no url".into()))?;
    let secret = c
        .secret()
        .ok_or_else(|| SendError::Config("no secret".into()))?;
    let body = body(msg);
    let ts = spotcheck_protocol::UnixMillis::now().0;
    let (status, answer) = post_json(
        c,
        url,
        &[
            ("X-Spotcheck-Timestamp", ts.to_string()),
            ("X-Spotcheck-Signature", signature(&secret, ts, &body)),
            ("X-Spotcheck-Message", msg.id.to_string()),
        ],
        &body,
    )?;
    if (200..300).contains(&status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(SendError::Refused(format!(
            "HTTP {status}: {}",
            answer.chars().take(200).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = signature("k", 1, "{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("k", 2, "{}"));
        assert_ne!(a, signature("k", 1, "{ }"));
        assert_ne!(a, signature("k2", 1, "{}"));
    }
}

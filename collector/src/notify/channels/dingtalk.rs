//! DingTalk (钉钉) group robot: `POST …/robot/send?access_token=TOKEN` with
//! `{"msgtype": "markdown", "markdown": {"title": "…", "text": "…"}, "at": {"atMobiles": […]}}`.
//! Signed mode (加签): `sign` = URL-encoded base64 of HMAC-SHA256 under the secret over
//! `"{timestamp}\n{secret}"`, the timestamp in milliseconds; both go into the query as
//! `&timestamp=…&sign=…`. The robot refuses a timestamp more than an hour off.

use base64::Engine;
use serde_json::json;

use super::{hmac_sha256, post_json, robot_answer, OutMessage, SendError};
use crate::notify::config::ChannelConfig;

/// The `sign` value (before URL encoding) for `ts_ms`.
pub fn sign(secret: &str, ts_ms: i64) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{ts_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// The URL to post to: with `timestamp` and `sign` added in signed mode.
pub fn signed_url(base: &str, secret: Option<&str>, ts_ms: i64) -> Result<String, SendError> {
    let mut url = url::Url::parse(base).map_err(|e| SendError::Config(e.to_string()))?;
    if let Some(secret) = secret {
        url.query_pairs_mut()
            .append_pair("timestamp", &ts_ms.to_string())
            .append_pair("sign", &sign(secret, ts_ms));
    }
    Ok(url.to_string())
}

/// The JSON body. DingTalk shows an @ only when the mobile also appears in the text.
pub fn body(msg: &OutMessage) -> String {
    let mut text = msg.text.clone();
    if !msg.recipients.mobiles.is_empty() {
        let at: Vec<String> = msg
            .recipients
            .mobiles
            .iter()
            .map(|m| format!("@{m}"))
            .collect();
        text.push_str(&format!("\n\n{}", at.join(" ")));
    } else if !msg.recipients.names.is_empty() {
        text.push_str(&format!("\n\n联络员：{}", msg.recipients.names.join("、")));
    }
    json!({
        "msgtype": "markdown",
        "markdown": {"title": msg.title, "text": text},
        "at": {"atMobiles": msg.recipients.mobiles, "isAtAll": false},
    })
    .to_string()
}

/// One attempt.
pub fn send(c: &ChannelConfig, msg: &OutMessage) -> Result<String, SendError> {
    let base = c
        .url
        .as_deref()
        .ok_or_else(|| SendError::Config("no url".into()))?;
    let secret = c.secret();
    let url = signed_url(
        base,
        secret.as_deref(),
        spotcheck_protocol::UnixMillis::now().0,
    )?;
    let (status, answer) = post_json(c, &url, &[], &body(msg))?;
    robot_answer(status, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_url_encoded_base64_of_the_hmac_over_timestamp_newline_secret() {
        let url = signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=t",
            Some("SECabc"),
            1_700_000_000_000,
        )
        .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().collect();
        assert_eq!(q["access_token"], "t");
        assert_eq!(q["timestamp"], "1700000000000");
        let expected = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(b"SECabc", b"1700000000000\nSECabc"));
        assert_eq!(q["sign"], expected);
        // '+', '/' and '=' never appear raw in the query.
        let raw_sign = url.split("sign=").nth(1).unwrap();
        assert!(!raw_sign.contains(['+', '/', '=']), "{raw_sign}");
    }
}

//! The channels: each turns a persisted message into one request and says whether it
//! arrived. One attempt per call; retries, backoff and the delivery log are the worker's.
//!
//! - [`webhook`]: generic JSON, signed with HMAC-SHA256 over `timestamp.body`.
//! - [`wecom`]: WeCom (企业微信) group robot, `msgtype: markdown`.
//! - [`dingtalk`]: DingTalk (钉钉) group robot, `msgtype: markdown`, signed mode.
//! - [`email`]: SMTP with STARTTLS (or TLS) and AUTH, through `lettre`.

pub mod dingtalk;
pub mod email;
pub mod webhook;
pub mod wecom;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{ChannelConfig, ChannelType};

/// A message as the channels send it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMessage {
    /// Message id (receivers may use it to drop a repeat after a crash between sending and
    /// recording).
    pub id: i64,
    /// Short title (e-mail subject, DingTalk title).
    pub title: String,
    /// Markdown text, in Chinese.
    pub text: String,
    /// The route that produced it.
    pub route: String,
    /// The group it tells about.
    pub group: String,
    /// Who is addressed beyond the channel's own recipients.
    pub recipients: Recipients,
}

/// The department's liaison officers a route adds, and e-mail's fixed recipients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipients {
    /// E-mail addresses.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Mobile numbers (DingTalk @).
    #[serde(default)]
    pub mobiles: Vec<String>,
    /// Names, shown in robot messages.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The channel is misconfigured (a missing secret); retrying will not help.
    #[error("channel misconfigured: {0}")]
    Config(String),
    /// Network, TLS, timeout.
    #[error("{0}")]
    Transport(String),
    /// The server answered, and not with success.
    #[error("refused: {0}")]
    Refused(String),
}

/// Sends `msg` through the channel `c`; the success detail goes to the delivery log.
pub fn send(c: &ChannelConfig, msg: &OutMessage) -> Result<String, SendError> {
    match c.kind {
        ChannelType::Webhook => webhook::send(c, msg),
        ChannelType::Wecom => wecom::send(c, msg),
        ChannelType::Dingtalk => dingtalk::send(c, msg),
        ChannelType::Email => email::send(c, msg),
    }
}

/// A blocking HTTP agent that returns every status as an answer.
pub(crate) fn http_agent(timeout_s: u64) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(timeout_s)))
        .build()
        .into()
}

/// POSTs JSON; returns the status and the body.
pub(crate) fn post_json(
    c: &ChannelConfig,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(u16, String), SendError> {
    let mut req = http_agent(c.timeout_s)
        .post(url)
        .header("Content-Type", "application/json; charset=utf-8");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send(body.as_bytes()) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            Ok((status, text))
        }
        Err(e) => Err(SendError::Transport(e.to_string())),
    }
}

/// Robots answer 200 with `{"errcode": 0, "errmsg": "ok"}`; anything else is a refusal.
pub(crate) fn robot_answer(status: u16, body: &str) -> Result<String, SendError> {
    if status != 200 {
        return Err(SendError::Refused(format!("HTTP {status}: {}", clip(body))));
    }
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| SendError::Refused(format!("not the robot's JSON answer: {}", clip(body))))?;
    match v.get("errcode").and_then(serde_json::Value::as_i64) {
        Some(0) => Ok("HTTP 200 errcode 0".to_owned()),
        Some(code) => Err(SendError::Refused(format!(
            "errcode {code}: {}",
            v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("")
        ))),
        None => Err(SendError::Refused(format!("no errcode: {}", clip(body)))),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

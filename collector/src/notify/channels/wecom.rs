//! WeCom (企业微信) group robot: `POST …/cgi-bin/webhook/send?key=KEY` with
//! `{"msgtype": "markdown", "markdown": {"content": "…"}}` (content at most 4096 bytes, UTF-8);
//! the robot answers `{"errcode": 0, "errmsg": "ok"}`.

use serde_json::json;

use super::{post_json, robot_answer, OutMessage, SendError};
use crate::notify::config::ChannelConfig;

/// WeCom's limit on markdown content, in bytes.
pub const MAX_CONTENT_BYTES: usize = 4096;

/// The JSON body.
pub fn body(msg: &OutMessage) -> String {
    let mut content = msg.text.clone();
    if !msg.recipients.names.is_empty() {
        content.push_str(&format!("\n\n联络员：{}", msg.recipients.names.join("、")));
    }
    json!({"msgtype": "markdown", "markdown": {"content": truncate(&content, MAX_CONTENT_BYTES)}})
        .to_string()
}

/// At most `max` bytes, cut at a character boundary, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max - "…".len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One attempt.
pub fn send(c: &ChannelConfig, msg: &OutMessage) -> Result<String, SendError> {
    let url = c
        .url
        .as_deref()
        .ok_or_else(|| SendError::Config("no url".into()))?;
    let (status, answer) = post_json(c, url, &[], &body(msg))?;
    robot_answer(status, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_chinese_text_is_cut_at_a_character_boundary() {
        let s = "氯".repeat(2000);
        let t = truncate(&s, MAX_CONTENT_BYTES);
        assert!(t.len() <= MAX_CONTENT_BYTES && t.ends_with('…'));
    }
}

//! `[notify]`: the worker's settings, the channels and the routes. Read in two steps like the
//! rest of the configuration: serde reads it strictly, then [`Rules::check`] refuses, with
//! the reason, a channel or route that cannot work (a bad URL, an unknown department, an
//! e-mail channel with no recipients), at load and whenever the API saves new rules.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::event::EventKind;

/// `[notify]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The console's base URL, for links in messages (e.g. `https://spotcheck.example.gov.cn`).
    pub console_url: String,
    /// How often the worker routes, groups and sends, in milliseconds.
    pub tick_ms: u64,
    /// How often the worker scans for time-driven events (deadlines, silence), in seconds.
    pub scan_s: u64,
    /// An anomaly task still unacknowledged after this many minutes is escalated.
    pub escalate_after_min: u64,
    /// An anomaly task unresolved after this many hours is overdue.
    pub resolve_within_h: u64,
    /// Warn this many days before a result's publication deadline.
    pub publication_due_days: u32,
    /// An agent that has sent nothing for this many minutes is silent.
    pub agent_silent_min: u64,
    /// The first retry waits this long (milliseconds); each further one twice as long.
    pub retry_base_ms: u64,
    /// The longest wait between retries, in seconds.
    pub retry_max_s: u64,
    /// Attempts before a message is given up as failed.
    pub max_attempts: u32,
    /// Defaults for routes that do not set their own.
    pub group_wait_s: u64,
    /// See [`Route::group_interval_s`].
    pub group_interval_s: u64,
    /// See [`Route::repeat_interval_s`].
    pub repeat_interval_s: u64,
    /// A report event (kind `report`) every this many days, for the past period; 0: none.
    pub report_every_days: u32,
    /// The channels.
    pub channels: Vec<ChannelConfig>,
    /// The routes, in order.
    pub routes: Vec<Route>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            console_url: "http://127.0.0.1:8080".into(),
            tick_ms: 1000,
            scan_s: 60,
            escalate_after_min: 30,
            resolve_within_h: 72,
            publication_due_days: 3,
            agent_silent_min: 15,
            retry_base_ms: 2000,
            retry_max_s: 600,
            max_attempts: 10,
            group_wait_s: 30,
            group_interval_s: 300,
            repeat_interval_s: 4 * 3600,
            report_every_days: 0,
            channels: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl NotifyConfig {
    /// The channels and routes.
    pub fn rules(&self) -> Rules {
        Rules {
            channels: self.channels.clone(),
            routes: self.routes.clone(),
        }
    }

    /// Problems serde cannot see; department names are checked at start, against the store.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.tick_ms == 0 || self.scan_s == 0 {
            problems.push("notify.tick_ms and notify.scan_s must be at least 1".into());
        }
        if self.max_attempts == 0 {
            problems.push("notify.max_attempts must be at least 1".into());
        }
        if let Err(e) = check_url(&self.console_url, false) {
            problems.push(format!("notify.console_url: {e}"));
        }
        if let Err(list) = self.rules().check(None) {
            problems.extend(list.into_iter().map(|p| format!("notify: {p}")));
        }
    }
}

/// The kind of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    /// Generic JSON webhook, HMAC-signed.
    Webhook,
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) group robot.
    Dingtalk,
    /// E-mail over SMTP.
    Email,
}

/// How to secure the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, required (the default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on this machine or in tests.
    None,
}

/// One channel. Fields not used by its `type` must be absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name routes refer to.
    pub name: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: ChannelType,
    /// webhook, wecom, dingtalk: where to POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// webhook: the HMAC key; dingtalk: the robot's signing secret (`SEC…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The name of an environment variable holding `secret` (preferred over writing it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// email: the SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    /// email: its port (default 587, or 465 with `tls = "tls"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    /// email: connection security.
    #[serde(default)]
    pub tls: SmtpTls,
    /// email: a PEM file of a private CA to trust besides the system's (an internal relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// email: the login (absent: no AUTH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// email: the password, or better `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// email: the name of an environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// email: the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// email: fixed recipients (routes may add the department's liaison officers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Messages per minute at most (DingTalk allows 20 per robot); more wait.
    #[serde(default = "twenty")]
    pub max_per_minute: u32,
    /// Per-attempt timeout, in seconds.
    #[serde(default = "ten")]
    pub timeout_s: u64,
}

fn twenty() -> u32 {
    20
}
fn ten() -> u64 {
    10
}

impl ChannelConfig {
    /// The secret, from `secret_env` if set, else `secret`.
    pub fn secret(&self) -> Option<String> {
        from_env_or(&self.secret_env, &self.secret)
    }

    /// The SMTP password, from `password_env` if set, else `password`.
    pub fn password(&self) -> Option<String> {
        from_env_or(&self.password_env, &self.password)
    }

    /// The channel with inline secrets replaced by `***`, for showing.
    pub fn redacted(&self) -> ChannelConfig {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "***".to_owned());
        ChannelConfig {
            secret: hide(&self.secret),
            password: hide(&self.password),
            url: self.url.as_deref().map(redact_url),
            ..self.clone()
        }
    }
}

/// Robot URLs carry their token in the query: show only the path.
fn redact_url(u: &str) -> String {
    match u.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => u.to_owned(),
    }
}

fn from_env_or(env: &Option<String>, inline: &Option<String>) -> Option<String> {
    env.as_ref()
        .and_then(|name| std::env::var(name).ok())
        .or_else(|| inline.clone())
}

/// A label events are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The department.
    Department,
    /// The domain.
    Domain,
    /// The entity.
    Entity,
    /// The rule key.
    Rule,
    /// The event kind.
    Kind,
    /// The task.
    Task,
}

/// One routing rule: which events, to which channels, grouped how. Routes are tried in
/// order; the first that matches takes the event unless it says `continue = true` (as in
/// Alertmanager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name (groups and messages carry it).
    pub name: String,
    /// Match these departments only (empty: any).
    #[serde(default)]
    pub departments: Vec<String>,
    /// Match these domains only (empty: any).
    #[serde(default)]
    pub domains: Vec<spotcheck_protocol::Domain>,
    /// Match anomaly events of these severities only (empty: any; other events have none
    /// and match only an empty list).
    #[serde(default)]
    pub severities: Vec<crate::rules::Severity>,
    /// Match these kinds only (empty: any).
    #[serde(default)]
    pub kinds: Vec<EventKind>,
    /// Where to send.
    pub channels: Vec<String>,
    /// Also address the event's department's liaison officers (e-mail: their addresses;
    /// robots: their names and, for DingTalk, an @ of their phones).
    #[serde(default)]
    pub liaisons: bool,
    /// Labels that make a group (default: department, entity, rule).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<Label>,
    /// Wait this long after a group's first event before its first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait_s: Option<u64>,
    /// After a message, wait this long before telling the group's new events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval_s: Option<u64>,
    /// Something already told (the same task's condition, the same deadline) is not told
    /// again within this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval_s: Option<u64>,
    /// Keep trying later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub keep_going: bool,
}

impl Route {
    /// A route named `name` that matches nothing and has every default.
    pub fn defaults(name: &str) -> Route {
        Route {
            name: name.to_owned(),
            departments: Vec::new(),
            domains: Vec::new(),
            severities: Vec::new(),
            kinds: Vec::new(),
            channels: Vec::new(),
            liaisons: false,
            group_by: default_group_by(),
            group_wait_s: None,
            group_interval_s: None,
            repeat_interval_s: None,
            keep_going: false,
        }
    }
}

fn default_group_by() -> Vec<Label> {
    vec![Label::Department, Label::Entity, Label::Rule]
}

/// The channels and the routes: what the API saves and the worker follows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The channels.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// The routes, in order.
    #[serde(default)]
    pub routes: Vec<Route>,
}

impl Rules {
    /// Every problem at once. `departments`: the known departments (None: not checked).
    pub fn check(&self, departments: Option<&BTreeSet<String>>) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        for c in &self.channels {
            let who = format!("channel {:?}", c.name);
            if c.name.trim().is_empty() {
                problems.push("a channel has an empty name".into());
            }
            if !names.insert(c.name.as_str()) {
                problems.push(format!("{who}: the name is used twice"));
            }
            if c.max_per_minute == 0 || c.timeout_s == 0 {
                problems.push(format!(
                    "{who}: max_per_minute and timeout_s must be at least 1"
                ));
            }
            if let Some(env) = &c.secret_env {
                if std::env::var(env).is_err() {
                    problems.push(format!("{who}: secret_env names {env}, which is not set"));
                }
            }
            if let Some(env) = &c.password_env {
                if std::env::var(env).is_err() {
                    problems.push(format!("{who}: password_env names {env}, which is not set"));
                }
            }
            check_channel(c, &who, &mut problems);
        }
        let mut routes = BTreeSet::new();
        for r in &self.routes {
            let who = format!("route {:?}", r.name);
            if r.name.trim().is_empty() {
                problems.push("a route has an empty name".into());
            }
            if !routes.insert(r.name.as_str()) {
                problems.push(format!("{who}: the name is used twice"));
            }
            if r.channels.is_empty() {
                problems.push(format!("{who}: no channels: it would send nowhere"));
            }
            for ch in &r.channels {
                match self.channels.iter().find(|c| &c.name == ch) {
                    None => problems.push(format!("{who}: unknown channel {ch:?}")),
                    Some(c) if c.kind == ChannelType::Email && c.to.is_empty() && !r.liaisons => {
                        problems.push(format!(
                            "{who}: channel {ch:?} has no recipients (`to` is empty) and the route does not add the liaison officers (`liaisons = true`)"
                        ))
                    }
                    Some(_) => {}
                }
            }
            if let Some(known) = departments {
                for d in &r.departments {
                    if !known.contains(d) {
                        problems.push(format!(
                            "{who}: unknown department {d:?}; known: {}",
                            known.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            if r.group_interval_s == Some(0) || r.repeat_interval_s == Some(0) {
                problems.push(format!(
                    "{who}: group_interval_s and repeat_interval_s must be at least 1"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn check_channel(c: &ChannelConfig, who: &str, problems: &mut Vec<String>) {
    let unused = |field: &str, set: bool, problems: &mut Vec<String>| {
        if set {
            problems.push(format!(
                "{who}: `{field}` is not used by a {:?} channel",
                c.kind
            ));
        }
    };
    match c.kind {
        ChannelType::Webhook | ChannelType::Wecom | ChannelType::Dingtalk => {
            match c.url.as_deref() {
                None => problems.push(format!("{who}: no url")),
                Some(u) => match check_url(u, c.kind != ChannelType::Webhook) {
                    Err(e) => problems.push(format!("{who}: url {u:?}: {e}")),
                    Ok(parsed) => {
                        let has =
                            |k: &str| parsed.query_pairs().any(|(q, v)| q == k && !v.is_empty());
                        if c.kind == ChannelType::Wecom && !has("key") {
                            problems.push(format!("{who}: a WeCom robot URL carries its key: …/cgi-bin/webhook/send?key=…"));
                        }
                        if c.kind == ChannelType::Dingtalk && !has("access_token") {
                            problems.push(format!("{who}: a DingTalk robot URL carries its token: …/robot/send?access_token=…"));
                        }
                    }
                },
            }
            if c.kind == ChannelType::Webhook && c.secret().is_none() {
                problems.push(format!(
                    "{who}: a webhook needs `secret` or `secret_env`: receivers check the signature"
                ));
            }
            if c.kind == ChannelType::Wecom {
                unused(
                    "secret",
                    c.secret.is_some() || c.secret_env.is_some(),
                    problems,
                );
            }
            unused("smtp_host", c.smtp_host.is_some(), problems);
            unused("to", !c.to.is_empty(), problems);
            unused("from", c.from.is_some(), problems);
            unused("ca_file", c.ca_file.is_some(), problems);
        }
        ChannelType::Email => {
            unused("url", c.url.is_some(), problems);
            match c.smtp_host.as_deref() {
                None | Some("") => problems.push(format!("{who}: no smtp_host")),
                Some(_) => {}
            }
            match c.from.as_deref() {
                None => problems.push(format!("{who}: no `from` address")),
                Some(f) => {
                    if f.parse::<lettre::message::Mailbox>().is_err() {
                        problems.push(format!("{who}: `from` {f:?} is not an e-mail address"));
                    }
                }
            }
            for t in &c.to {
                if t.parse::<lettre::message::Mailbox>().is_err() {
                    problems.push(format!("{who}: recipient {t:?} is not an e-mail address"));
                }
            }
            if let Some(ca) = &c.ca_file {
                if let Err(e) = std::fs::read(ca) {
                    problems.push(format!("{who}: ca_file {}: {e}", ca.display()));
                }
            }
            if c.username.is_some() != (c.password.is_some() || c.password_env.is_some()) {
                problems.push(format!(
                    "{who}: username and password (or password_env) go together"
                ));
            }
            if c.username.is_some() && c.tls == SmtpTls::None {
                problems.push(format!("{who}: refusing to send a password in clear text: use tls = \"starttls\" or \"tls\""));
            }
        }
    }
}

/// An absolute http(s) URL with a host; `https_only`: robots take https, except on loopback
/// (tests, a local relay).
pub fn check_url(u: &str, https_only: bool) -> Result<url::Url, String> {
    let parsed = url::Url::parse(u).map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or("");
    if host.is_empty() {
        return Err("no host".into());
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if https_only && !loopback {
                Err("must be https:// (plain http only to this machine)".into())
            } else {
                Ok(parsed)
            }
        }
        other => Err(format!("scheme {other:?}: use http:// or https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Rules {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_bad_url_an_unknown_department_and_no_recipients_are_each_refused_with_the_reason() {
        let r = rules(
            r#"
            [[channels]]
            name = "robot"
            type = "wecom"
            url = "ftp://qyapi.weixin.qq.com/x"
            [[channels]]
            name = "mail"
            type = "email"
            smtp_host = "smtp.example.cn"
            from = "spotcheck@example.cn"
            [[routes]]
            name = "pools"
            departments = ["health", "helth"]
            channels = ["robot", "mail", "nowhere"]
            "#,
        );
        let known: BTreeSet<String> = ["health".to_owned(), "culture".to_owned()].into();
        let problems = r.check(Some(&known)).unwrap_err().join("\n");
        for needle in [
            "url \"ftp://qyapi.weixin.qq.com/x\": scheme \"ftp\"",
            "unknown department \"helth\"",
            "channel \"mail\" has no recipients",
            "unknown channel \"nowhere\"",
        ] {
            assert!(
                problems.contains(needle),
                "{needle} missing in:\n{problems}"
            );
        }
        assert!(!problems.contains("\"health\""), "{problems}");
    }

    #[test]
    fn robots_need_https_except_on_loopback_and_carry_their_token() {
        assert!(check_url("http://oapi.dingtalk.com/robot/send", true).is_err());
        assert!(check_url("http://127.0.0.1:9/robot/send", true).is_ok());
        let r = rules(
            r#"
            [[channels]]
            name = "ding"
            type = "dingtalk"
            url = "https://oapi.dingtalk.com/robot/send"
            "#,
        );
        let p = r.check(None).unwrap_err().join("\n");
        assert!(p.contains("access_token"), "{p}");
    }

    #[test]
    fn a_webhook_without_a_secret_and_smtp_auth_in_clear_text_are_refused() {
        let r = rules(
            r#"
            [[channels]]
            name = "hook"
            type = "webhook"
            url = "https://hooks.example.cn/x"
            [[channels]]
            name = "mail"
            type = "email"
            smtp_host = "smtp.example.cn"
            from = "a@example.cn"
            to = ["b@example.cn"]
            tls = "none"
            username = "a"
            password = "p"
            "#,
        );
        let p = r.check(None).unwrap_err().join("\n");
        assert!(p.contains("needs `secret`"), "{p}");
        assert!(p.contains("clear text"), "{p}");
    }

    #[test]
    fn redaction_hides_secrets_and_robot_tokens() {
        let r = rules(
            r#"
            [[channels]]
            name = "ding"
            type = "dingtalk"
            url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
            secret = "SECxyz"
            "#,
        );
        let shown = serde_json::to_string(&r.channels[0].redacted()).unwrap();
        assert!(
            !shown.contains("abc") && !shown.contains("SECxyz"),
            "{shown}"
        );
        assert!(r.check(None).is_ok());
    }
}

#[cfg(test)]
mod readme {
    /// The README's configuration example (with its notification channels and routes) is
    /// valid once the secrets it names are in the environment.
    #[test]
    fn the_readme_example_validates() {
        let readme = include_str!("../../../README.md");
        let at = readme.find("## Collector configuration").unwrap();
        let block = readme[at..]
            .split("```toml")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        std::env::set_var("SPOTCHECK_DINGTALK_SECRET", "SECreadme");
        std::env::set_var("SPOTCHECK_SMTP_PASSWORD", "readme");
        let raw =
            crate::config::RawConfig::parse(block, std::path::Path::new("README.md")).unwrap();
        assert_eq!(raw.notify.routes.len(), 2);
        if let Err(e) = raw.validate() {
            panic!("{e}");
        }
    }
}

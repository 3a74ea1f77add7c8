//! E-mail over SMTP through `lettre`: STARTTLS required by default (or TLS from the first
//! byte), AUTH when a username is set, the message as UTF-8 plain text (the Markdown reads
//! well as text).

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::{OutMessage, SendError};
use crate::notify::config::{ChannelConfig, SmtpTls};

/// The message `msg` as an e-mail from `c.from` to `c.to` and the route's liaison officers.
pub fn build(c: &ChannelConfig, msg: &OutMessage) -> Result<Message, SendError> {
    let bad = |what: &str, v: &str| SendError::Config(format!("{what} {v:?} is not an address"));
    let from = c
        .from
        .as_deref()
        .ok_or_else(|| SendError::Config("no from".into()))?;
    let mut b = Message::builder()
        .from(from.parse::<Mailbox>().map_err(|_| bad("from", from))?)
        .subject(&msg.title)
        .header(ContentType::TEXT_PLAIN);
    let mut any = false;
    let mut seen = std::collections::BTreeSet::new();
    for to in c.to.iter().chain(&msg.recipients.emails) {
        if !seen.insert(to.to_lowercase()) {
            continue;
        }
        b = b.to(to.parse::<Mailbox>().map_err(|_| bad("recipient", to))?);
        any = true;
    }
    if !any {
        return Err(SendError::Config(
            "no recipients: the channel's `to` is empty and the department has no liaison officer with an e-mail address".into(),
        ));
    }
    b.body(format!(
        "{}\n\n-- \nSpotcheck 消息编号 {}\n",
        msg.text, msg.id
    ))
    .map_err(|e| SendError::Config(e.to_string()))
}

/// The SMTP transport for `c`.
pub fn transport(c: &ChannelConfig) -> Result<SmtpTransport, SendError> {
    let host = c
        .smtp_host
        .as_deref()
        .ok_or_else(|| SendError::Config("no smtp_host".into()))?;
    let tls_params = || -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(host.to_owned());
        if let Some(ca) = &c.ca_file {
            let bad = |e: String| SendError::Config(format!("ca_file {}: {e}", ca.display()));
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            b = b
                .add_root_certificate(Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?);
        }
        b.build_rustls()
            .map_err(|e| SendError::Config(e.to_string()))
    };
    let (tls, default_port) = match c.tls {
        SmtpTls::Starttls => (Tls::Required(tls_params()?), 587),
        SmtpTls::Tls => (Tls::Wrapper(tls_params()?), 465),
        SmtpTls::None => (Tls::None, 25),
    };
    let mut b = SmtpTransport::builder_dangerous(host)
        .port(c.smtp_port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(std::time::Duration::from_secs(c.timeout_s)));
    if let Some(user) = &c.username {
        let password = c
            .password()
            .ok_or_else(|| SendError::Config("no password".into()))?;
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    Ok(b.build())
}

/// One attempt.
pub fn send(c: &ChannelConfig, msg: &OutMessage) -> Result<String, SendError> {
    let email = build(c, msg)?;
    let t = transport(c)?;
    match t.send(&email) {
        Ok(resp) => Ok(format!("SMTP {}", resp.code())),
        Err(e) if e.is_permanent() => Err(SendError::Refused(e.to_string())),
        Err(e) => Err(SendError::Transport(e.to_string())),
    }
}

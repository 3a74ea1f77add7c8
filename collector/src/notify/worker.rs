//! The delivery worker, on its own thread with its own connection: ingest never waits for
//! it, and a dead channel costs it only its own retries.
//!
//! Each step: reload the rules if the API saved new ones; scan for time-driven events (every
//! `scan_s`); route new outbox events into groups; flush the groups that are due into
//! persisted messages; send the due messages (rate-limited per channel), recording each
//! attempt in the delivery log and scheduling a retry with exponential backoff. A message is
//! marked sent only after its channel accepted it, so a crash at any point sends each
//! message at least once after the restart, and nothing is lost; a crash between a channel's
//! acceptance and the record re-sends that one message (webhooks carry its id for receivers
//! that drop repeats).
//!
//! The worker runs on SQLite or PostgreSQL (a `Conn`). With several collectors on one
//! PostgreSQL store it runs on the leader only (store/leader.rs: started when this collector
//! gains the leadership, stopped when it loses it). A step does nothing once this collector
//! knows it no longer leads, and routing and flushing check the leadership fence inside their
//! write transactions. Should two workers still overlap (a leader losing its lock mid-step,
//! before it learns of it), routing and flushing re-read inside their write transactions and
//! each message is claimed with a lease before it is sent ([`outbox::claim`]), so nothing is
//! routed, grouped or sent twice.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use spotcheck_protocol::UnixMillis;
use tracing::{info, warn};

use super::channels::{self, OutMessage, Recipients, SendError};
use super::config::{ChannelType, NotifyConfig, Route, Rules};
use super::grouping::{backoff, Timing};
use super::outbox::{self, NewMessage, Outcome};
use super::render;
use super::routing;
use super::scan::{self, ScanSettings};
use super::NotifyError;
use crate::rulebook::Rulebook;
use crate::store::db::{self, args, Conn, DbError, DbUrl, Mode, Sql};
use crate::store::leader::Lead;

/// A claim on a message being sent lasts three times its channel's timeout and this much
/// more, so it outlasts the attempt it covers; a worker killed mid-send leaves the message
/// to be sent again when the claim ends.
pub const LEASE_MARGIN_MS: i64 = 10_000;

/// What one step did (for tests and the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Time-driven events added.
    pub scanned: usize,
    /// Events routed.
    pub routed: usize,
    /// Messages persisted.
    pub flushed: usize,
    /// Messages delivered.
    pub sent: usize,
    /// Attempts that failed.
    pub failed_attempts: usize,
}

/// The worker's state.
pub struct Worker {
    conn: Conn,
    /// Names this worker's claims (process id and a random part).
    owner: String,
    settings: NotifyConfig,
    file_rules: Rules,
    rules: Rules,
    rules_version: Option<i64>,
    scan: ScanSettings,
    last_scan: Option<i64>,
    sent: HashMap<String, VecDeque<i64>>,
    rulebook: Option<Rulebook>,
    /// Whether this collector leads (always, unless started with [`Worker::led_by`]).
    lead: Lead,
}

impl Worker {
    /// A worker over the SQLite store at `db`.
    pub fn open(
        db: &Path,
        settings: NotifyConfig,
        scan: ScanSettings,
    ) -> Result<Worker, NotifyError> {
        Worker::connect(&DbUrl::Sqlite(db.to_owned()), settings, scan)
    }

    /// A worker over the store at `url`, on a connection of its own.
    pub fn connect(
        url: &DbUrl,
        settings: NotifyConfig,
        scan: ScanSettings,
    ) -> Result<Worker, NotifyError> {
        let conn = db::connect(url, Mode::Write)?;
        let file_rules = settings.rules();
        Ok(Worker {
            conn,
            owner: format!(
                "{}-{}",
                std::process::id(),
                &crate::users::random_secret()[..8]
            ),
            rules: file_rules.clone(),
            file_rules,
            settings,
            rules_version: None,
            scan,
            last_scan: None,
            sent: HashMap::new(),
            rulebook: None,
            lead: Lead::sole(),
        })
    }

    /// Works only while `lead` leads, and checks its fence inside routing's and flushing's
    /// transactions.
    pub fn led_by(mut self, lead: Lead) -> Worker {
        self.lead = lead;
        self
    }

    /// Names rules in messages by the Chinese titles of `rulebook`'s active packs (without
    /// one, by their keys).
    pub fn with_rulebook(mut self, rulebook: Rulebook) -> Worker {
        self.rulebook = Some(rulebook);
        self
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The worker's connection (tests look at what it wrote).
    pub fn connection(&self) -> &Conn {
        &self.conn
    }

    /// How this worker names itself in its claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn reload_rules(&mut self) -> Result<(), NotifyError> {
        let saved = outbox::saved_rules(&self.conn)?;
        let version = saved.as_ref().map(|(id, _)| *id);
        if version == self.rules_version {
            return Ok(());
        }
        self.rules = match saved {
            None => self.file_rules.clone(),
            Some((id, body)) => match serde_json::from_str::<Rules>(&body) {
                Ok(r) => r,
                Err(e) => {
                    warn!(message = "Saved notification rules are unreadable; keeping the previous ones.", id, error = %e);
                    self.rules.clone()
                }
            },
        };
        self.rules_version = version;
        Ok(())
    }

    /// One step at `now`; nothing when this collector does not lead.
    pub fn step(&mut self, now: UnixMillis) -> Result<StepReport, NotifyError> {
        if !self.lead.is_leader() {
            return Ok(StepReport::default());
        }
        self.reload_rules()?;
        let mut report = StepReport::default();
        let scan_ms = self.settings.scan_s as i64 * 1000;
        if self.last_scan.is_none_or(|t| now.0 - t >= scan_ms) {
            report.scanned = scan::scan(&self.conn, &self.settings, self.scan, now)?;
            self.last_scan = Some(now.0);
        }
        report.routed = self.route(now)?;
        report.flushed = self.flush(now)?;
        let (sent, failed) = self.send_due(now)?;
        report.sent = sent;
        report.failed_attempts = failed;
        Ok(report)
    }

    /// Routes new outbox events into their groups.
    pub fn route(&mut self, now: UnixMillis) -> Result<usize, NotifyError> {
        self.reload_rules()?;
        // A look without the write lock first: most steps find nothing.
        if outbox::unrouted(&self.conn, 1)?.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        if !self.lead.fence(&tx)? {
            return Ok(0);
        }
        // Read again under the lock: another worker may have routed them meanwhile.
        let events = outbox::unrouted(&tx, 1000)?;
        for e in &events {
            let mut placed = Vec::new();
            for t in routing::route(&self.rules, e) {
                let repeat = self
                    .rules
                    .routes
                    .iter()
                    .find(|r| r.name == t.route)
                    .map(|r| Timing::of(r, &self.settings).repeat_interval)
                    .unwrap_or_default();
                let since = now.0 - i64::try_from(repeat.as_millis()).unwrap_or(i64::MAX);
                let told = outbox::told_since(&tx, &t, since)?;
                placed.push((t, told));
            }
            outbox::place(&tx, e.id, &placed)?;
        }
        tx.commit()?;
        Ok(events.len())
    }

    /// Turns the groups that are due into persisted messages.
    pub fn flush(&mut self, now: UnixMillis) -> Result<usize, NotifyError> {
        let mut n = 0;
        for g in outbox::open_groups(&self.conn)? {
            // A route removed after routing: its waiting events are told with the defaults.
            let route = self.rules.routes.iter().find(|r| r.name == g.route);
            let timing = match route {
                Some(r) => Timing::of(r, &self.settings),
                None => Timing::of(&Route::defaults(&g.route), &self.settings),
            };
            if !timing.due(g.first_ms, g.last_sent_ms, now.0) {
                continue;
            }
            // The group's events are read under the write lock they are tied to their message
            // in: another worker cannot tell them meanwhile.
            let tx = self.conn.transaction()?;
            if !self.lead.fence(&tx)? {
                return Ok(n);
            }
            let events = outbox::waiting(&tx, &g)?;
            if events.is_empty() {
                continue;
            }
            let suppressed = outbox::suppressed_since(&tx, &g, g.last_sent_ms.unwrap_or(0))?;
            let rules = self.rulebook.as_ref().map(Rulebook::rules);
            let titles = |key: &str| {
                let rules = rules.as_deref()?;
                crate::views::evidence::rule_of(rules, key)
                    .map(|(_, r)| r.chinese_title().to_owned())
            };
            let (title, text) =
                render::message(&events, suppressed, &self.settings.console_url, &titles);
            let mut recipients = Recipients::default();
            if route.is_some_and(|r| r.liaisons) {
                let departments: std::collections::BTreeSet<&str> = events
                    .iter()
                    .filter_map(|e| e.department.as_deref())
                    .collect();
                for d in departments {
                    for c in crate::contacts::current(&tx, Some(d))? {
                        recipients.names.push(c.name);
                        recipients.emails.extend(c.email);
                        recipients.mobiles.extend(c.phone);
                    }
                }
            }
            let id = outbox::flush(
                &tx,
                &g,
                &events,
                &NewMessage {
                    title,
                    text,
                    recipients,
                },
                now.0,
            )?;
            tx.commit()?;
            info!(message = "Notification persisted.", id, route = %g.route, channel = %g.channel, events = events.len());
            n += 1;
        }
        Ok(n)
    }

    /// Sends the due messages; returns (delivered, failed attempts).
    pub fn send_due(&mut self, now: UnixMillis) -> Result<(usize, usize), NotifyError> {
        let (mut ok, mut failed) = (0, 0);
        // A channel that failed in this step is not tried again until the next one, so a dead
        // channel costs each step one timeout, not one per waiting message.
        let mut down = std::collections::HashSet::new();
        for m in outbox::due(&self.conn, now.0, 100)? {
            if down.contains(&m.channel) {
                continue;
            }
            let Some(channel) = self
                .rules
                .channels
                .iter()
                .find(|c| c.name == m.channel)
                .cloned()
            else {
                if outbox::claim(
                    &self.conn,
                    m.id,
                    &self.owner,
                    now.0,
                    now.0 + LEASE_MARGIN_MS,
                )? {
                    outbox::record(
                        &self.conn,
                        m.id,
                        &self.owner,
                        &m.channel,
                        now.0,
                        &Outcome::Failed,
                        "the channel no longer exists in the rules",
                    )?;
                    failed += 1;
                }
                continue;
            };
            // Rate limit: at most max_per_minute per channel; the rest wait for a later step.
            let window = self.sent.entry(channel.name.clone()).or_default();
            while window.front().is_some_and(|&t| now.0 - t >= 60_000) {
                window.pop_front();
            }
            if window.len() >= channel.max_per_minute as usize {
                continue;
            }
            // Claimed for longer than the attempt can take; another worker that got here
            // first has it, and this one goes on to the next.
            let lease = i64::try_from(channel.timeout_s)
                .map_or(i64::MAX, |t| t.saturating_mul(3_000))
                .saturating_add(LEASE_MARGIN_MS);
            if !outbox::claim(
                &self.conn,
                m.id,
                &self.owner,
                now.0,
                now.0.saturating_add(lease),
            )? {
                continue;
            }
            window.push_back(now.0);
            let out = OutMessage {
                id: m.id,
                title: m.title.clone(),
                text: m.text.clone(),
                route: m.route.clone(),
                group: m.group_key.clone(),
                recipients: m.recipients.clone(),
            };
            let result = channels::send(&channel, &out);
            let attempt = u32::try_from(m.attempts + 1).unwrap_or(u32::MAX);
            let (outcome, detail) = match result {
                Ok(detail) => {
                    ok += 1;
                    (Outcome::Sent, detail)
                }
                Err(e) => {
                    failed += 1;
                    down.insert(m.channel.clone());
                    let detail = e.to_string();
                    warn!(message = "Notification not delivered.", id = m.id, channel = %m.channel, attempt, error = %detail);
                    if matches!(e, SendError::Config(_)) || attempt >= self.settings.max_attempts {
                        (Outcome::Failed, detail)
                    } else {
                        let wait = backoff(
                            attempt,
                            Duration::from_millis(self.settings.retry_base_ms),
                            Duration::from_secs(self.settings.retry_max_s),
                        );
                        let at = now.0 + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                        (Outcome::Retry(at), detail)
                    }
                }
            };
            outbox::record(
                &self.conn,
                m.id,
                &self.owner,
                &m.channel,
                now.0,
                &outcome,
                &detail,
            )?;
        }
        Ok((ok, failed))
    }
}

/// Sends one test message through `channel` of `rules` at once; the answer or the error. The
/// caller logs the attempt ([`outbox::log`]) on its own connection: no transaction is open
/// while the channel is waited for.
pub fn test_message(
    rules: &Rules,
    channel: &str,
    to: Option<String>,
) -> Result<Result<String, String>, NotifyError> {
    let Some(c) = rules.channels.iter().find(|c| c.name == channel) else {
        return Err(NotifyError::UnknownChannel(channel.to_owned()));
    };
    let mut recipients = Recipients::default();
    if c.kind == ChannelType::Email {
        recipients.emails.extend(to);
    }
    let msg = OutMessage {
        id: 0,
        title: "【Spotcheck】测试消息".into(),
        text: format!("### 测试消息\n\n这是通道 {channel} 的测试消息；收到即说明通道可用。\n"),
        route: "test".into(),
        group: "test".into(),
        recipients,
    };
    Ok(channels::send(c, &msg).map_err(|e| e.to_string()))
}

/// [`test_message`], then logs the attempt in `conn`'s delivery log.
pub fn test_send(
    conn: &(impl Sql + ?Sized),
    rules: &Rules,
    channel: &str,
    to: Option<String>,
) -> Result<Result<String, String>, NotifyError> {
    let result = test_message(rules, channel, to)?;
    let detail = match &result {
        Ok(d) | Err(d) => d.clone(),
    };
    outbox::log(
        conn,
        None,
        channel,
        UnixMillis::now().0,
        1,
        result.is_ok(),
        &detail,
    )?;
    Ok(result)
}

/// The running worker thread.
pub struct Notifier {
    stop: SyncSender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the worker on its own thread and connection to the store at `url`; messages
    /// name rules by `rulebook`'s titles.
    pub fn start(
        url: &DbUrl,
        settings: NotifyConfig,
        scan: ScanSettings,
        rulebook: Rulebook,
    ) -> Result<Notifier, NotifyError> {
        Notifier::start_led(url, settings, scan, rulebook, Lead::sole())
    }

    /// [`Notifier::start`] for the leader `lead`: its steps do nothing once it no longer
    /// leads (the collector stops it then).
    pub fn start_led(
        url: &DbUrl,
        settings: NotifyConfig,
        scan: ScanSettings,
        rulebook: Rulebook,
        lead: Lead,
    ) -> Result<Notifier, NotifyError> {
        let tick = Duration::from_millis(settings.tick_ms);
        let mut worker = Worker::connect(url, settings, scan)?
            .with_rulebook(rulebook)
            .led_by(lead);
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || loop {
                if let Err(e) = worker.step(UnixMillis::now()) {
                    warn!(message = "Notification step failed; retrying.", error = %e);
                }
                match stopped.recv_timeout(tick) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            })
            .map_err(NotifyError::Thread)?;
        Ok(Notifier {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after its current step.
    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// [`prepare`], then starts the worker.
pub fn start(
    url: &DbUrl,
    settings: NotifyConfig,
    publish_within_days: u32,
    rulebook: Rulebook,
) -> Result<Notifier, NotifyError> {
    prepare(url, &settings)?;
    Notifier::start(
        url,
        settings,
        ScanSettings {
            publish_within_days,
        },
        rulebook,
    )
}

/// Saves the config file's channels and routes when they differ from what the file gave
/// last time (so an edited file wins at start, and rules saved through the API win until
/// the file changes) and warns of departments the store does not know. Every collector does
/// this at start, leader or not: it is its configuration file.
pub fn prepare(url: &DbUrl, settings: &NotifyConfig) -> Result<(), NotifyError> {
    let conn = db::connect(url, Mode::Write)?;
    let rules = settings.rules();
    if let Err(problems) = rules.check(Some(&super::known_departments(&conn)?)) {
        for p in problems {
            warn!(message = "Notification rule problem (the store does not know this yet, or it is wrong).", problem = %p);
        }
    }
    // Under the write lock: collectors starting together save the file's rules once.
    let tx = conn.transaction()?;
    save_file_rules(&tx, &rules, UnixMillis::now())?;
    tx.commit()?;
    Ok(())
}

/// Records the file's rules as a new version if they differ from the file's last.
pub fn save_file_rules(
    conn: &(impl Sql + ?Sized),
    rules: &Rules,
    now: UnixMillis,
) -> Result<bool, DbError> {
    let body = serde_json::to_string(rules).expect("rules serialise");
    let last: Option<String> = conn.query_opt(
        "SELECT body FROM notify_config WHERE saved_by = 'config' ORDER BY id DESC LIMIT 1",
        args![],
        |r| r.get(0),
    )?;
    if last.as_deref() == Some(body.as_str()) || (last.is_none() && rules == &Rules::default()) {
        return Ok(false);
    }
    outbox::save_rules(conn, &body, now.0, "config")?;
    Ok(true)
}

//! Rule packs: TOML files with a `[pack]` header and `[[rule]]` entries, parsed into typed rules
//! that cannot hold an illegal state (a band with min above max, a clear band outside the
//! allowed band, a predicate on the wrong record kind, a metric with the wrong unit).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spotcheck_protocol::{Domain, Metric, Unit};
use toml::Spanned;

use super::duration::{parse_duration, Span};
use super::predicate::{Cap, EventKind, MinorPlay, Predicate, SpendingCaps, WeekdayName};

/// The default pool pack, embedded in the binary.
pub const DEFAULT_POOL: &str = include_str!("../../rules/pool.toml");
/// The default game pack, embedded in the binary.
pub const DEFAULT_GAME: &str = include_str!("../../rules/game.toml");
/// The default hospital pack, embedded in the binary.
pub const DEFAULT_HOSPITAL: &str = include_str!("../../rules/hospital.toml");

/// A pack's version: the SHA-256 of the file's bytes, in lower-case hex. Every verdict and
/// anomaly records it, so the exact text that produced it can be looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackHash(String);

impl PackHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> PackHash {
        PackHash(hex::encode(Sha256::digest(bytes)))
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A rule's stable name across pack versions: `"{pack id}/{rule id}"`. It is the anomaly dedupe
/// key together with the entity, and the key of the persisted engine state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleKey(String);

impl RuleKey {
    /// The key of rule `rule` in pack `pack`.
    pub fn new(pack: &str, rule: &str) -> RuleKey {
        RuleKey(format!("{pack}/{rule}"))
    }

    /// Parses `"pack/rule"`; `None` without exactly one `/` between two non-empty parts.
    pub fn parse(s: &str) -> Option<RuleKey> {
        let (pack, rule) = s.split_once('/')?;
        (!pack.is_empty() && !rule.is_empty() && !rule.contains('/')).then(|| RuleKey(s.to_owned()))
    }

    /// The pack id part.
    pub fn pack(&self) -> &str {
        self.0.split_once('/').map_or("", |(p, _)| p)
    }

    /// The whole key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How serious a breach is; anomaly tasks carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Needs follow-up.
    Medium,
    /// Needs prompt action.
    High,
    /// A legal red line (e.g. a controlled drug prescribed online).
    Critical,
}

impl Severity {
    /// The pack spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A closed interval with optional ends; at least one end is set and min ≤ max.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Lowest allowed value, inclusive.
    pub min: Option<f64>,
    /// Highest allowed value, inclusive.
    pub max: Option<f64>,
}

impl Band {
    /// Whether `v` lies in the band (ends included: exactly 0.3 and 1.0 are inside 0.3–1.0).
    #[inline]
    pub fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    /// "0.3–1.0", "≤ 0.4", "≥ 650".
    pub fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("{a:?}–{b:?}"),
            (None, Some(b)) => format!("≤ {b:?}"),
            (Some(a), None) => format!("≥ {a:?}"),
            (None, None) => "any".into(),
        }
    }
}

/// A threshold on one metric, with an opening delay and a separate clear condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeRule {
    /// The metric watched.
    pub metric: Metric,
    /// Its unit (checked against [`Metric::expected_unit`]).
    pub unit: Unit,
    /// The allowed band; a value outside it is a breach.
    pub allowed: Band,
    /// How long a breach must last (first to latest breaching reading) before it opens.
    pub open_after: Span,
    /// The clear band (inside `allowed`): an active breach clears once values are back in it…
    pub clear: Band,
    /// …for at least this long.
    pub clear_after: Span,
}

/// A limit on how fast one metric may change between consecutive readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateRule {
    /// The metric watched.
    pub metric: Metric,
    /// Its unit.
    pub unit: Unit,
    /// The largest allowed absolute change per minute. Intervals shorter than a minute count
    /// as a minute, so that a sensor sampling every second does not turn noise into a slope.
    pub max_change_per_minute: f64,
}

/// Silence from an entity expected to report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InactivityRule {
    /// How long without any data (by receive time) before it opens.
    pub after: Span,
}

/// The share of event records that violate a predicate, over a rolling window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioRule {
    /// The records counted.
    pub event: EventKind,
    /// What makes a record a violation.
    pub predicate: Predicate,
    /// The rolling window.
    pub window: Span,
    /// Opens when violations / records exceeds this share; 0 means any violation counts.
    pub max_share: f64,
    /// Fewest records in the window before a share is judged (at least 1).
    pub min_events: u32,
    /// Clears when the share falls to this (≤ `max_share`) or no violation is left.
    pub clear_share: f64,
}

/// What a rule checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// A threshold on one metric.
    Range(RangeRule),
    /// A rate-of-change limit on one metric.
    Rate(RateRule),
    /// No data for too long.
    Inactivity(InactivityRule),
    /// A share of violating event records.
    Ratio(RatioRule),
}

impl RuleKind {
    /// The pack spelling of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Range(_) => "range",
            RuleKind::Rate(_) => "rate",
            RuleKind::Inactivity(_) => "inactivity",
            RuleKind::Ratio(_) => "ratio",
        }
    }

    /// The metric a range or rate rule watches.
    pub fn metric(&self) -> Option<&Metric> {
        match self {
            RuleKind::Range(r) => Some(&r.metric),
            RuleKind::Rate(r) => Some(&r.metric),
            RuleKind::Inactivity(_) | RuleKind::Ratio(_) => None,
        }
    }
}

/// One rule of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `"{pack}/{rule}"`.
    pub key: RuleKey,
    /// The rule's id inside its pack.
    pub id: String,
    /// A short human title.
    pub title: String,
    /// How serious a breach is.
    pub severity: Severity,
    /// The clause the rule comes from.
    pub source: String,
    /// What it checks.
    pub kind: RuleKind,
}

/// How a remote check judges whether there is enough data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompletenessPolicy {
    /// How often data is expected: a reading per metric (readings packs) or any record
    /// (event packs) at least this often.
    pub expected_interval: Span,
    /// A gap longer than `expected_interval × gap_tolerance` counts as missing data.
    pub gap_tolerance: f64,
    /// Below this share of covered time a remote check cannot verify anything.
    pub min_completeness: f64,
}

/// A validated rule pack, with its original text so the caller can store it.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePack {
    /// The pack id (`"pool"`); the first part of every rule key.
    pub id: String,
    /// The domain it applies to.
    pub domain: Domain,
    /// A human title.
    pub title: String,
    /// The standards and notices the rules come from.
    pub sources: Vec<String>,
    /// A gap in one metric's readings longer than this resets a pending breach.
    pub max_gap: Span,
    /// Completeness policy for remote checks.
    pub completeness: CompletenessPolicy,
    /// Minors' spending caps (game packs).
    pub caps: SpendingCaps,
    /// Minors' play window (game packs).
    pub minor_play: MinorPlay,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    hash: PackHash,
    origin: String,
    text: String,
}

impl RulePack {
    /// SHA-256 of the file's bytes: the pack's version.
    pub fn hash(&self) -> &PackHash {
        &self.hash
    }

    /// Where the pack came from (a path, or `rules/pool.toml` for an embedded default).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The file's text, byte for byte as hashed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The rule with key `key`.
    pub fn rule(&self, key: &RuleKey) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.key == key)
    }
}

/// Why a rule pack or calendar file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    /// The file could not be read.
    #[error("{origin}: cannot read the file: {source}; check the path and its permissions")]
    Io {
        /// The path.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid: a syntax error, an unknown field or a value that breaks a rule.
    #[error("{origin}:{line}:{column}: {reason}")]
    Invalid {
        /// The path or name of the file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// A rule pack that could not be loaded.
pub type RulePackError = RuleFileError;

impl RuleFileError {
    pub(crate) fn at(text: &str, origin: &str, offset: usize, reason: String) -> RuleFileError {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        RuleFileError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            reason,
        }
    }

    pub(crate) fn from_toml(text: &str, origin: &str, e: &toml::de::Error) -> RuleFileError {
        let offset = e.span().map_or(0, |s| s.start);
        RuleFileError::at(text, origin, offset, e.message().trim_end().to_owned())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackFile {
    pack: RawHeader,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    spending_cap: Vec<Spanned<RawCap>>,
    #[serde(default)]
    minor_play: Option<RawMinorPlay>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    id: Spanned<String>,
    domain: Spanned<String>,
    title: String,
    sources: Vec<String>,
    max_gap: Option<Spanned<String>>,
    expected_interval: Spanned<String>,
    gap_tolerance: Option<Spanned<f64>>,
    min_completeness: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    age_band: Spanned<String>,
    per_top_up_fen: u64,
    per_month_fen: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMinorPlay {
    weekdays: Vec<Spanned<String>>,
    holidays: bool,
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    title: String,
    severity: Spanned<String>,
    source: String,
    kind: Spanned<String>,
    metric: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    #[serde(rename = "for")]
    open_after: Option<Spanned<String>>,
    clear_min: Option<Spanned<f64>>,
    clear_max: Option<Spanned<f64>>,
    clear_for: Option<Spanned<String>>,
    max_change_per_minute: Option<Spanned<f64>>,
    after: Option<Spanned<String>>,
    event: Option<Spanned<String>>,
    predicate: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    max_share: Option<Spanned<f64>>,
    min_events: Option<Spanned<u32>>,
    clear_share: Option<Spanned<f64>>,
}

/// Builds positioned errors for one file.
struct At<'a> {
    text: &'a str,
    origin: &'a str,
}

impl At<'_> {
    fn err(&self, span: Range<usize>, reason: impl Into<String>) -> RuleFileError {
        RuleFileError::at(self.text, self.origin, span.start, reason.into())
    }

    fn duration(&self, s: &Spanned<String>, what: &str) -> Result<Span, RuleFileError> {
        parse_duration(s.get_ref()).map_err(|e| self.err(s.span(), format!("{what}: {e}")))
    }

    fn finite(&self, v: &Spanned<f64>, what: &str) -> Result<f64, RuleFileError> {
        let x = *v.get_ref();
        if x.is_finite() {
            Ok(x)
        } else {
            Err(self.err(v.span(), format!("{what} must be a finite number")))
        }
    }

    fn share(&self, v: &Spanned<f64>, what: &str) -> Result<f64, RuleFileError> {
        let x = self.finite(v, what)?;
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err(self.err(
                v.span(),
                format!("{what} {x} is not a share; use 0.0 to 1.0"),
            ))
        }
    }
}

/// Parses and validates a rule pack; `origin` names the file in errors and is kept with it.
///
/// Every error names the file, line and column and says what to change, e.g.
/// `rules/pool.toml:14:7: rule "free_chlorine": min 1.2 is above max 1.0`.
pub fn parse_pack(text: &str, origin: &str) -> Result<RulePack, RulePackError> {
    let raw: RawPackFile =
        toml::from_str(text).map_err(|e| RuleFileError::from_toml(text, origin, &e))?;
    let at = At { text, origin };
    let h = &raw.pack;
    let id = h.id.get_ref().clone();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(at.err(
            h.id.span(),
            format!("pack id {id:?} is invalid; use a-z 0-9 _ -"),
        ));
    }
    let domain: Domain = h
        .domain
        .get_ref()
        .parse()
        .map_err(|e| at.err(h.domain.span(), format!("{e}")))?;
    let max_gap = match &h.max_gap {
        Some(s) => at.duration(s, "max_gap")?,
        None => Span::from_millis(30 * 60_000),
    };
    let expected_interval = at.duration(&h.expected_interval, "expected_interval")?;
    if expected_interval == Span::ZERO {
        return Err(at.err(
            h.expected_interval.span(),
            "expected_interval must be longer than 0",
        ));
    }
    let gap_tolerance = match &h.gap_tolerance {
        Some(v) if at.finite(v, "gap_tolerance")? < 1.0 => return Err(at.err(
            v.span(),
            "gap_tolerance must be at least 1.0 (a gap of exactly the expected interval is normal)",
        )),
        Some(v) => *v.get_ref(),
        None => 1.5,
    };
    let min_completeness = match &h.min_completeness {
        Some(v) => at.share(v, "min_completeness")?,
        None => 0.8,
    };

    let mut caps = SpendingCaps::default();
    for c in &raw.spending_cap {
        let c = c.get_ref();
        let cap = Cap {
            per_top_up_fen: c.per_top_up_fen,
            per_month_fen: c.per_month_fen,
        };
        let slot = match c.age_band.get_ref().as_str() {
            "under_8" => &mut caps.under_8,
            "8_to_16" => &mut caps.from_8_to_16,
            "16_to_18" => &mut caps.from_16_to_18,
            other => {
                return Err(at.err(c.age_band.span(), format!("spending cap for {other:?}: use one of under_8, 8_to_16, 16_to_18 (adults have no cap)")))
            }
        };
        if slot.replace(cap).is_some() {
            return Err(at.err(
                c.age_band.span(),
                "this age band's spending cap is given twice",
            ));
        }
    }
    let minor_play = match &raw.minor_play {
        None => MinorPlay::default(),
        Some(m) => {
            let mut weekdays = Vec::new();
            for w in &m.weekdays {
                let day = super::calendar::Weekday::parse(w.get_ref()).ok_or_else(|| {
                    at.err(
                        w.span(),
                        format!(
                            "{:?} is not a weekday; use mon tue wed thu fri sat sun",
                            w.get_ref()
                        ),
                    )
                })?;
                weekdays.push(WeekdayName::from(day));
            }
            let clock = |s: &Spanned<String>| {
                parse_clock(s.get_ref()).ok_or_else(|| {
                    at.err(
                        s.span(),
                        format!(
                            "{:?} is not a time of day; write it as \"20:00\"",
                            s.get_ref()
                        ),
                    )
                })
            };
            let (from_minute, to_minute) = (clock(&m.from)?, clock(&m.to)?);
            if from_minute >= to_minute {
                return Err(at.err(
                    m.to.span(),
                    "the play window must end after it starts, on the same day",
                ));
            }
            MinorPlay {
                weekdays,
                holidays: m.holidays,
                from_minute,
                to_minute,
            }
        }
    };

    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
    for r in &raw.rule {
        let rule = parse_rule(&at, &id, domain, r)?;
        if rules.iter().any(|x| x.id == rule.id) {
            return Err(at.err(
                r.get_ref().id.span(),
                format!("rule id {:?} is used twice in this pack", rule.id),
            ));
        }
        let needs_caps = matches!(&rule.kind, RuleKind::Ratio(q) if matches!(q.predicate, Predicate::MinorOverTopUpCap | Predicate::MinorOverMonthlyCap));
        if needs_caps
            && (caps.under_8.is_none()
                || caps.from_8_to_16.is_none()
                || caps.from_16_to_18.is_none())
        {
            return Err(at.err(
                r.span(),
                format!(
                    "rule {:?} needs [[spending_cap]] entries for under_8, 8_to_16 and 16_to_18",
                    rule.id
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(RulePack {
        id,
        domain,
        title: h.title.clone(),
        sources: h.sources.clone(),
        max_gap,
        completeness: CompletenessPolicy {
            expected_interval,
            gap_tolerance,
            min_completeness,
        },
        caps,
        minor_play,
        rules,
        hash: PackHash::of(text.as_bytes()),
        origin: origin.to_owned(),
        text: text.to_owned(),
    })
}

fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    // "24:00" is allowed as the end of a window that runs to midnight.
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

/// The fields each kind accepts besides id, title, severity, source and kind.
fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "range" => &[
            "metric",
            "unit",
            "min",
            "max",
            "for",
            "clear_min",
            "clear_max",
            "clear_for",
        ],
        "rate" => &["metric", "unit", "max_change_per_minute"],
        "inactivity" => &["after"],
        "ratio" => &[
            "event",
            "predicate",
            "window",
            "max_share",
            "min_events",
            "clear_share",
        ],
        _ => &[],
    }
}

fn parse_rule(
    at: &At<'_>,
    pack: &str,
    domain: Domain,
    spanned: &Spanned<RawRule>,
) -> Result<Rule, RuleFileError> {
    let r = spanned.get_ref();
    let id = r.id.get_ref().clone();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(at.err(
            r.id.span(),
            format!("rule id {id:?} is invalid; use a-z 0-9 _"),
        ));
    }
    let ctx = |reason: String| format!("rule {id:?}: {reason}");
    let severity = Severity::parse(r.severity.get_ref()).ok_or_else(|| {
        at.err(
            r.severity.span(),
            ctx(format!(
                "severity {:?} is unknown; use low, medium, high or critical",
                r.severity.get_ref()
            )),
        )
    })?;
    let kind_name = r.kind.get_ref().as_str();
    if !matches!(kind_name, "range" | "rate" | "inactivity" | "ratio") {
        return Err(at.err(
            r.kind.span(),
            ctx(format!(
                "kind {kind_name:?} is unknown; use range, rate, inactivity or ratio"
            )),
        ));
    }
    // Every optional field with its span, to reject ones that do not belong to the kind.
    let present: [(&str, Option<Range<usize>>); 16] = [
        ("metric", r.metric.as_ref().map(Spanned::span)),
        ("unit", r.unit.as_ref().map(Spanned::span)),
        ("min", r.min.as_ref().map(Spanned::span)),
        ("max", r.max.as_ref().map(Spanned::span)),
        ("for", r.open_after.as_ref().map(Spanned::span)),
        ("clear_min", r.clear_min.as_ref().map(Spanned::span)),
        ("clear_max", r.clear_max.as_ref().map(Spanned::span)),
        ("clear_for", r.clear_for.as_ref().map(Spanned::span)),
        (
            "max_change_per_minute",
            r.max_change_per_minute.as_ref().map(Spanned::span),
        ),
        ("after", r.after.as_ref().map(Spanned::span)),
        ("event", r.event.as_ref().map(Spanned::span)),
        ("predicate", r.predicate.as_ref().map(Spanned::span)),
        ("window", r.window.as_ref().map(Spanned::span)),
        ("max_share", r.max_share.as_ref().map(Spanned::span)),
        ("min_events", r.min_events.as_ref().map(Spanned::span)),
        ("clear_share", r.clear_share.as_ref().map(Spanned::span)),
    ];
    let allowed = allowed_fields(kind_name);
    for (name, span) in &present {
        if let Some(span) = span {
            if !allowed.contains(name) {
                return Err(at.err(
                    span.clone(),
                    ctx(format!(
                        "field `{name}` does not apply to kind {kind_name}; it takes {}",
                        allowed.join(", ")
                    )),
                ));
            }
        }
    }
    let missing = |name: &str| {
        at.err(
            spanned.span(),
            ctx(format!("kind {kind_name} needs `{name}`")),
        )
    };

    let kind = match kind_name {
        "range" | "rate" => {
            let m = r.metric.as_ref().ok_or_else(|| missing("metric"))?;
            let metric = Metric::new(m.get_ref().clone())
                .map_err(|e| at.err(m.span(), ctx(e.to_string())))?;
            let u = r.unit.as_ref().ok_or_else(|| missing("unit"))?;
            let unit = parse_unit(u.get_ref()).ok_or_else(|| {
                at.err(
                    u.span(),
                    ctx(format!(
                        "unit {:?} is unknown; use mg/L, pH, NTU, mV, Cel, m3, % or 1",
                        u.get_ref()
                    )),
                )
            })?;
            if let Some(expected) = metric.expected_unit() {
                if expected != unit {
                    return Err(at.err(
                        u.span(),
                        ctx(format!(
                            "metric {metric} is measured in {expected}, not {unit}"
                        )),
                    ));
                }
            }
            if kind_name == "rate" {
                let v = r
                    .max_change_per_minute
                    .as_ref()
                    .ok_or_else(|| missing("max_change_per_minute"))?;
                let x = at.finite(v, &ctx("max_change_per_minute".into()))?;
                if x <= 0.0 {
                    return Err(at.err(
                        v.span(),
                        ctx(format!("max_change_per_minute {x} must be above 0")),
                    ));
                }
                RuleKind::Rate(RateRule {
                    metric,
                    unit,
                    max_change_per_minute: x,
                })
            } else {
                parse_range(at, r, metric, unit, &ctx, missing)?
            }
        }
        "inactivity" => {
            let a = r.after.as_ref().ok_or_else(|| missing("after"))?;
            let after = at.duration(a, &ctx("after".into()))?;
            if after == Span::ZERO {
                return Err(at.err(a.span(), ctx("after must be longer than 0".into())));
            }
            RuleKind::Inactivity(InactivityRule { after })
        }
        _ => {
            let e = r.event.as_ref().ok_or_else(|| missing("event"))?;
            let event = EventKind::parse(e.get_ref()).ok_or_else(|| {
                at.err(e.span(), ctx(format!("event {:?} is unknown; use game_session, game_payment, consultation or prescription", e.get_ref())))
            })?;
            if event.domain() != domain {
                return Err(at.err(
                    e.span(),
                    ctx(format!(
                        "{event} records belong to the {} domain, not {domain}",
                        event.domain()
                    )),
                ));
            }
            let p = r.predicate.as_ref().ok_or_else(|| missing("predicate"))?;
            let predicate = Predicate::parse(p.get_ref()).ok_or_else(|| {
                let names: Vec<&str> = Predicate::ALL
                    .iter()
                    .filter(|q| q.event_kind() == event)
                    .map(|q| q.as_str())
                    .collect();
                at.err(
                    p.span(),
                    ctx(format!(
                        "predicate {:?} is unknown; for {event} use one of {}",
                        p.get_ref(),
                        names.join(", ")
                    )),
                )
            })?;
            if predicate.event_kind() != event {
                return Err(at.err(
                    p.span(),
                    ctx(format!(
                        "predicate {predicate} applies to {} records, not {event}",
                        predicate.event_kind()
                    )),
                ));
            }
            let w = r.window.as_ref().ok_or_else(|| missing("window"))?;
            let window = at.duration(w, &ctx("window".into()))?;
            if window.millis < 60_000 {
                return Err(at.err(w.span(), ctx("window must be at least 1m".into())));
            }
            let ms = r.max_share.as_ref().ok_or_else(|| missing("max_share"))?;
            let max_share = at.share(ms, &ctx("max_share".into()))?;
            let min_events = match &r.min_events {
                Some(v) if *v.get_ref() == 0 => {
                    return Err(at.err(v.span(), ctx("min_events must be at least 1".into())))
                }
                Some(v) => *v.get_ref(),
                None => 1,
            };
            let clear_share = match &r.clear_share {
                Some(v) => {
                    let c = at.share(v, &ctx("clear_share".into()))?;
                    if c > max_share {
                        return Err(at.err(v.span(), ctx(format!("clear_share {c:?} is above max_share {max_share:?}; it must not be, or a breach would clear while still open"))));
                    }
                    c
                }
                None => max_share,
            };
            RuleKind::Ratio(RatioRule {
                event,
                predicate,
                window,
                max_share,
                min_events,
                clear_share,
            })
        }
    };
    Ok(Rule {
        key: RuleKey::new(pack, &id),
        id,
        title: r.title.clone(),
        severity,
        source: r.source.clone(),
        kind,
    })
}

fn parse_range(
    at: &At<'_>,
    r: &RawRule,
    metric: Metric,
    unit: Unit,
    ctx: &dyn Fn(String) -> String,
    missing: impl Fn(&str) -> RuleFileError,
) -> Result<RuleKind, RuleFileError> {
    let num = |v: &Option<Spanned<f64>>, name: &str| {
        v.as_ref()
            .map(|v| at.finite(v, &ctx(name.into())))
            .transpose()
    };
    let (min, max) = (num(&r.min, "min")?, num(&r.max, "max")?);
    if min.is_none() && max.is_none() {
        return Err(missing("min` or `max"));
    }
    if let (Some(a), Some(b), Some(s)) = (min, max, &r.min) {
        if a > b {
            return Err(at.err(s.span(), ctx(format!("min {a:?} is above max {b:?}"))));
        }
    }
    let (clear_min, clear_max) = (
        num(&r.clear_min, "clear_min")?,
        num(&r.clear_max, "clear_max")?,
    );
    if let (Some(c), Some(s)) = (clear_min, &r.clear_min) {
        match min {
            None => {
                return Err(at.err(
                    s.span(),
                    ctx("clear_min is given but the rule has no min".into()),
                ))
            }
            Some(m) if c < m => {
                return Err(at.err(
                    s.span(),
                    ctx(format!(
                        "clear_min {c} lies outside the allowed band {}; it must be inside",
                        Band { min, max }.describe()
                    )),
                ))
            }
            _ if max.is_some_and(|x| c > x) => {
                return Err(at.err(
                    s.span(),
                    ctx(format!(
                        "clear_min {c} lies outside the allowed band {}; it must be inside",
                        Band { min, max }.describe()
                    )),
                ))
            }
            _ => {}
        }
    }
    if let (Some(c), Some(s)) = (clear_max, &r.clear_max) {
        match max {
            None => {
                return Err(at.err(
                    s.span(),
                    ctx("clear_max is given but the rule has no max".into()),
                ))
            }
            Some(m) if c > m => {
                return Err(at.err(
                    s.span(),
                    ctx(format!(
                        "clear_max {c} lies outside the allowed band {}; it must be inside",
                        Band { min, max }.describe()
                    )),
                ))
            }
            _ if min.is_some_and(|x| c < x) => {
                return Err(at.err(
                    s.span(),
                    ctx(format!(
                        "clear_max {c} lies outside the allowed band {}; it must be inside",
                        Band { min, max }.describe()
                    )),
                ))
            }
            _ => {}
        }
    }
    let clear = Band {
        min: clear_min.or(min),
        max: clear_max.or(max),
    };
    if let (Some(a), Some(b), Some(s)) = (clear.min, clear.max, &r.clear_max) {
        if a > b {
            return Err(at.err(
                s.span(),
                ctx(format!("clear_min {a:?} is above clear_max {b:?}")),
            ));
        }
    }
    let dur = |v: &Option<Spanned<String>>, name: &str| {
        v.as_ref()
            .map(|s| at.duration(s, &ctx(name.into())))
            .transpose()
    };
    Ok(RuleKind::Range(RangeRule {
        metric,
        unit,
        allowed: Band { min, max },
        open_after: dur(&r.open_after, "for")?.unwrap_or(Span::ZERO),
        clear,
        clear_after: dur(&r.clear_for, "clear_for")?.unwrap_or(Span::ZERO),
    }))
}

fn parse_unit(s: &str) -> Option<Unit> {
    [
        Unit::MilligramPerLitre,
        Unit::Ph,
        Unit::Ntu,
        Unit::Millivolt,
        Unit::Celsius,
        Unit::CubicMetre,
        Unit::Percent,
        Unit::Count,
    ]
    .into_iter()
    .find(|u| u.as_str() == s)
}

/// Reads and parses a rule pack file.
pub fn load_pack(path: &Path) -> Result<RulePack, RulePackError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Io {
        origin: origin.clone(),
        source,
    })?;
    parse_pack(&text, &origin)
}

/// The active packs, at most one per domain.
///
/// Replacing a pack builds a new set ([`RuleSet::with_pack`]); a caller that fails to load a
/// new pack simply keeps using the set it has, so a bad file never leaves a domain unguarded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSet {
    packs: BTreeMap<Domain, RulePack>,
}

impl RuleSet {
    /// The embedded default packs for all three domains.
    pub fn defaults() -> RuleSet {
        let parse = |text, origin| {
            parse_pack(text, origin).expect("embedded default packs are valid (tested)")
        };
        RuleSet::default()
            .with_pack(parse(DEFAULT_POOL, "rules/pool.toml"))
            .with_pack(parse(DEFAULT_GAME, "rules/game.toml"))
            .with_pack(parse(DEFAULT_HOSPITAL, "rules/hospital.toml"))
    }

    /// This set with `pack` as its domain's pack (replacing any previous one).
    pub fn with_pack(mut self, pack: RulePack) -> RuleSet {
        self.packs.insert(pack.domain, pack);
        self
    }

    /// The pack for `domain`, if any. A domain (or an inspection item) without a pack is not
    /// remotely checkable.
    pub fn get(&self, domain: Domain) -> Option<&RulePack> {
        self.packs.get(&domain)
    }

    /// The pack whose id is `id`.
    pub fn by_id(&self, id: &str) -> Option<&RulePack> {
        self.packs.values().find(|p| p.id == id)
    }

    /// All packs, by domain.
    pub fn packs(&self) -> impl Iterator<Item = &RulePack> {
        self.packs.values()
    }
}

#[cfg(test)]
mod tests;

//! Rule packs: TOML files with a `[pack]` header and `[[rule]]` entries, parsed into typed rules
//! that cannot hold an illegal state (a band with min above max, a clear band outside the
//! allowed band, a predicate on the wrong record kind, a metric with the wrong unit).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spotcheck_protocol::{Domain, Metric, Unit};

use super::duration::Span;
use super::predicate::{EventKind, MinorPlay, Predicate, SpendingCaps};

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

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Severity, String> {
        Severity::parse(s)
            .ok_or_else(|| format!("{s:?} is not a severity; use low, medium, high or critical"))
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
    /// A short human title, in English.
    pub title: String,
    /// The same title in Chinese, if the pack gives one (`title_zh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_zh: Option<String>,
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
    /// A human title, in English.
    pub title: String,
    /// The same title in Chinese, if the pack gives one (`title_zh`).
    pub title_zh: Option<String>,
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

impl Rule {
    /// The Chinese title, or the English one when the pack has none.
    pub fn chinese_title(&self) -> &str {
        self.title_zh.as_deref().unwrap_or(&self.title)
    }
}

impl RulePack {
    /// The Chinese title, or the English one when the pack has none.
    pub fn chinese_title(&self) -> &str {
        self.title_zh.as_deref().unwrap_or(&self.title)
    }

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

mod parse;

pub use parse::{load_pack, parse_pack};

#[cfg(test)]
mod tests;

//! Rules: rule packs as data, the streaming engine that turns readings and records into anomaly
//! transitions, and the window evaluation behind remote checks. Pure logic: the only I/O is
//! reading a pack or calendar file when asked to.
//!
//! In the order a reading meets them:
//!
//! - [`pack`]: the TOML rule packs (`collector/rules/{pool,game,hospital}.toml`, embedded as
//!   defaults), parsed into typed rules with file:line:column errors; [`RuleSet`] holds the
//!   active pack per domain; [`PackHash`] is a pack's version.
//! - [`duration`]: `"10m"`-style durations as whole milliseconds ([`Span`]).
//! - [`calendar`]: China time and the statutory holiday calendar (`calendar-cn.toml`).
//! - [`predicate`]: the fixed vocabulary of violation predicates over event records, with
//!   the minors' play window; [`spending`]: spending caps by age band and monthly sums.
//! - [`engine`]: the streaming [`Engine`] run on the ingest commit thread: range, rate,
//!   inactivity and ratio rules, with open delays, hysteresis, dedupe and persisted state.
//! - [`window`]: [`evaluate`] a pack over a window of stored data for a remote check, with
//!   completeness: too little data is "cannot be verified remotely", never "compliant".
//!
//! An inspection item whose domain has no pack, or whose checks need laboratory samples (urea,
//! bacteria), has no remote rule and is not remotely checkable. The format is described in
//! `docs/rules.md`.

pub mod calendar;
pub mod duration;
pub mod engine;
pub mod pack;
pub mod predicate;
pub mod spending;
pub mod window;

pub use calendar::{load_calendar, parse_calendar, Calendar, ChinaDay};
pub use duration::{parse_duration, DurationError, Span};
pub use engine::{Engine, StateError, Transition};
pub use pack::{
    load_pack, parse_pack, Band, PackHash, Rule, RuleFileError, RuleKey, RuleKind, RulePack,
    RulePackError, RuleSet, Severity,
};
pub use predicate::{EventKind, Predicate};
pub use window::{
    evaluate, Completeness, Evidence, Outcome, RuleEvidence, SeriesData, ViolationInterval, Window,
};

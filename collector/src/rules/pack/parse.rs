//! Parsing and validating pack files: serde structs that mirror the TOML with spans, then
//! checks that turn them into [`RulePack`]s or an error naming file, line and column.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use spotcheck_protocol::{Domain, Metric, Unit};
use toml::Spanned;

use super::{
    Band, CompletenessPolicy, InactivityRule, PackHash, RangeRule, RateRule, RatioRule, Rule,
    RuleFileError, RuleKey, RuleKind, RulePack, RulePackError, Severity,
};
use crate::rules::duration::{parse_duration, Span};
use crate::rules::predicate::{Cap, EventKind, MinorPlay, Predicate, SpendingCaps, WeekdayName};

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
    title_zh: Option<Spanned<String>>,
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
    title_zh: Option<Spanned<String>>,
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

    /// An optional Chinese title: trimmed, and refused when given but blank.
    fn title_zh(
        &self,
        v: &Option<Spanned<String>>,
        what: &str,
    ) -> Result<Option<String>, RuleFileError> {
        match v {
            None => Ok(None),
            Some(s) if s.get_ref().trim().is_empty() => Err(self.err(
                s.span(),
                format!("{what}title_zh is empty; give the Chinese title or leave the key out (the English title is then shown)"),
            )),
            Some(s) => Ok(Some(s.get_ref().trim().to_owned())),
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
    let title_zh = at.title_zh(&h.title_zh, "pack ")?;

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
                let day = crate::rules::calendar::Weekday::parse(w.get_ref()).ok_or_else(|| {
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
        title_zh,
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

/// The fields each kind accepts besides id, title, title_zh, severity, source and kind.
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
    let title_zh = at.title_zh(&r.title_zh, &ctx(String::new()))?;
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
        title_zh,
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

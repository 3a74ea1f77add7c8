//! China time and the statutory holiday calendar behind the minors' game-time rule.
//!
//! China Standard Time is UTC+8 all year (no daylight saving), so a China-time calendar day is
//! a plain division of Unix milliseconds. Which days are holidays and which weekend days are
//! make-up working days (调休) is decided each year by a State Council notice; that list is data
//! (`collector/rules/calendar-cn.toml`), loaded and checked like a rule pack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use spotcheck_protocol::UnixMillis;
use toml::Spanned;

use super::pack::{PackHash, RuleFileError};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// China Standard Time is UTC+8 all year.
pub const CHINA_OFFSET_MS: i64 = 8 * HOUR_MS;

/// The default calendar, embedded in the binary.
pub const DEFAULT_CALENDAR: &str = include_str!("../../rules/calendar-cn.toml");

/// A calendar day in China time, counted in days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChinaDay(pub i64);

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Parses the three-letter lower-case English abbreviation (`"fri"`).
    pub fn parse(s: &str) -> Option<Weekday> {
        Some(match s {
            "mon" => Weekday::Mon,
            "tue" => Weekday::Tue,
            "wed" => Weekday::Wed,
            "thu" => Weekday::Thu,
            "fri" => Weekday::Fri,
            "sat" => Weekday::Sat,
            "sun" => Weekday::Sun,
            _ => return None,
        })
    }
}

impl ChinaDay {
    /// The China-time day that `ts` falls on.
    pub fn of(ts: UnixMillis) -> ChinaDay {
        ChinaDay((ts.0 + CHINA_OFFSET_MS).div_euclid(DAY_MS))
    }

    /// The day of a civil date, or `None` if the date does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<ChinaDay> {
        let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
        let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
        Some(ChinaDay(
            i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY,
        ))
    }

    /// A `YYYY-MM-DD` date, or `None` if it is not one.
    pub fn parse(s: &str) -> Option<ChinaDay> {
        let date =
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        ChinaDay::from_ymd(
            date.year(),
            u8::from(date.month()).into(),
            date.day().into(),
        )
    }

    /// The civil date (year, month, day).
    pub fn ymd(self) -> (i32, u32, u32) {
        let julian = i32::try_from(self.0 + UNIX_EPOCH_JULIAN_DAY).unwrap_or(i32::MAX);
        match time::Date::from_julian_day(julian) {
            Ok(d) => (d.year(), u8::from(d.month()).into(), d.day().into()),
            // Beyond the time crate's ±9999 years: clamp, no real timestamp gets here.
            Err(_) => (9999, 12, 31),
        }
    }

    /// The calendar month as one number (`year * 12 + month - 1`), for monthly sums.
    pub fn month_index(self) -> i32 {
        let (y, m, _) = self.ymd();
        y * 12 + m as i32 - 1
    }

    /// The day of the week.
    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (self.0 + 3).rem_euclid(7) {
            0 => Weekday::Mon,
            1 => Weekday::Tue,
            2 => Weekday::Wed,
            3 => Weekday::Thu,
            4 => Weekday::Fri,
            5 => Weekday::Sat,
            _ => Weekday::Sun,
        }
    }

    /// The instant this day starts, plus `offset_ms` (China time).
    pub fn at(self, offset_ms: i64) -> UnixMillis {
        UnixMillis(self.0 * DAY_MS - CHINA_OFFSET_MS + offset_ms)
    }
}

impl std::fmt::Display for ChinaDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// How many days before the calendar's last day the collector starts warning.
pub const COVERAGE_WARNING_DAYS: i64 = 60;

const ADD_A_YEAR: &str = "copy collector/rules/calendar-cn.toml into rules.dir, add the year there and restart (see README, \"Holiday calendar\")";

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// What the calendar file says about one year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarYear {
    /// The State Council notice the year's dates come from.
    pub source: String,
    /// Whether the dates were checked against the notice's text (`false` marks a year to
    /// re-check before relying on it).
    pub confirmed: bool,
}

/// Statutory holidays and make-up working days, by China-time day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<ChinaDay>,
    workdays: BTreeSet<ChinaDay>,
    years: BTreeMap<i32, CalendarYear>,
    hash: PackHash,
    origin: String,
    text: String,
}

impl Calendar {
    /// The embedded default calendar (`collector/rules/calendar-cn.toml`).
    pub fn china_default() -> Calendar {
        parse_calendar(DEFAULT_CALENDAR, "rules/calendar-cn.toml")
            .expect("the embedded calendar is valid (tested)")
    }

    /// A calendar without any holidays: only the weekday rule applies. For tests.
    pub fn empty() -> Calendar {
        Calendar {
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
            years: BTreeMap::new(),
            hash: PackHash::of(b""),
            origin: "<empty>".into(),
            text: String::new(),
        }
    }

    /// Whether `day` is a statutory holiday (a day off in a holiday block).
    pub fn is_holiday(&self, day: ChinaDay) -> bool {
        self.holidays.contains(&day)
    }

    /// Whether `day` is a make-up working day (调休), a weekend day worked instead.
    pub fn is_makeup_workday(&self, day: ChinaDay) -> bool {
        self.workdays.contains(&day)
    }

    /// Whether the calendar lists the year of `day`. Outside the listed years only the weekday
    /// rule can be applied, which misses holidays and make-up days: add the year's notice.
    pub fn covers(&self, day: ChinaDay) -> bool {
        self.years.contains_key(&day.ymd().0)
    }

    /// The last day the calendar covers (31 December of its last listed year).
    pub fn last_day(&self) -> Option<ChinaDay> {
        let (&year, _) = self.years.last_key_value()?;
        ChinaDay::from_ymd(year, 12, 31)
    }

    /// A warning for the operators when the calendar ends within [`COVERAGE_WARNING_DAYS`] of
    /// `today` or has already ended: past its last year, rules that need it cannot judge.
    pub fn coverage_warning(&self, today: ChinaDay) -> Option<String> {
        let Some(last) = self.last_day() else {
            return Some(format!(
                "the holiday calendar {} lists no year: the minors' play-time rule cannot be judged; {ADD_A_YEAR}",
                self.origin
            ));
        };
        let left = last.0 - today.0;
        let next = last.ymd().0 + 1;
        if left < 0 {
            Some(format!(
                "the holiday calendar {} ended on {last}: days from {next} on cannot be judged by the minors' play-time rule (no violation is found, remote checks answer that an on-site check is needed); {ADD_A_YEAR}",
                self.origin
            ))
        } else if left <= COVERAGE_WARNING_DAYS {
            Some(format!(
                "the holiday calendar {} ends in {left} day(s), on {last}: add {next} from the State Council's notice before then; {ADD_A_YEAR}",
                self.origin
            ))
        } else {
            None
        }
    }

    /// The years listed, with their sources.
    pub fn years(&self) -> &BTreeMap<i32, CalendarYear> {
        &self.years
    }

    /// SHA-256 of the file's bytes.
    pub fn hash(&self) -> &PackHash {
        &self.hash
    }

    /// Where the calendar was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The file's text, as loaded.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    // Required so every calendar file names its sources; not used by the code.
    #[allow(dead_code)]
    calendar: RawHeader,
    #[serde(default)]
    year: Vec<Spanned<RawYear>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    #[allow(dead_code)]
    title: String,
    // Checked (not blank if given), not otherwise used: the calendar is not shown.
    title_zh: Option<Spanned<String>>,
    #[allow(dead_code)]
    sources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: Spanned<i32>,
    source: String,
    #[serde(default = "yes")]
    confirmed: bool,
    #[serde(default)]
    holidays: Vec<Spanned<RawHoliday>>,
    #[serde(default)]
    workdays: Vec<Spanned<toml::value::Datetime>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    #[allow(dead_code)] // the festival's name, for readers of the file
    name: String,
    from: Spanned<toml::value::Datetime>,
    to: Spanned<toml::value::Datetime>,
}

/// Parses a holiday calendar; `origin` names the file in error messages.
///
/// Checks: every date is a plain date inside its year's entry, ranges run forward, a make-up
/// working day is a Saturday or Sunday and not also a holiday, and no year is listed twice.
pub fn parse_calendar(text: &str, origin: &str) -> Result<Calendar, RuleFileError> {
    let raw: RawCalendar =
        toml::from_str(text).map_err(|e| RuleFileError::from_toml(text, origin, &e))?;
    let at = |span: std::ops::Range<usize>, reason: String| {
        RuleFileError::at(text, origin, span.start, reason)
    };
    if let Some(t) = raw.calendar.title_zh.as_ref() {
        if t.get_ref().trim().is_empty() {
            return Err(at(
                t.span(),
                "calendar title_zh is empty; give the Chinese title or leave the key out".into(),
            ));
        }
    }
    let mut cal = Calendar {
        holidays: BTreeSet::new(),
        workdays: BTreeSet::new(),
        years: BTreeMap::new(),
        hash: PackHash::of(text.as_bytes()),
        origin: origin.to_owned(),
        text: text.to_owned(),
    };
    for y in raw.year {
        let span = y.span();
        let y = y.into_inner();
        let year = *y.year.get_ref();
        let day_of = |d: &Spanned<toml::value::Datetime>| -> Result<ChinaDay, RuleFileError> {
            let dt = d.get_ref();
            let day = match (dt.date, dt.time, dt.offset) {
                (Some(date), None, None) => {
                    ChinaDay::from_ymd(i32::from(date.year), date.month.into(), date.day.into())
                }
                _ => None,
            };
            let day = day.ok_or_else(|| {
                at(
                    d.span(),
                    format!("{dt} is not a plain date; write it as 2024-02-10"),
                )
            })?;
            if day.ymd().0 != year {
                return Err(at(
                    d.span(),
                    format!("{day} lies outside year {year}; list it under its own year"),
                ));
            }
            Ok(day)
        };
        for h in &y.holidays {
            let h = h.get_ref();
            let (from, to) = (day_of(&h.from)?, day_of(&h.to)?);
            if from > to {
                return Err(at(
                    h.to.span(),
                    format!("holiday ends ({to}) before it starts ({from})"),
                ));
            }
            cal.holidays.extend((from.0..=to.0).map(ChinaDay));
        }
        for w in &y.workdays {
            let day = day_of(w)?;
            if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                return Err(at(
                    w.span(),
                    format!(
                        "make-up working day {day} is not a Saturday or Sunday; check the notice"
                    ),
                ));
            }
            if cal.holidays.contains(&day) {
                return Err(at(
                    w.span(),
                    format!("{day} is listed both as a holiday and as a make-up working day"),
                ));
            }
            cal.workdays.insert(day);
        }
        let entry = CalendarYear {
            source: y.source,
            confirmed: y.confirmed,
        };
        if cal.years.insert(year, entry).is_some() {
            return Err(at(span, format!("year {year} is listed twice")));
        }
    }
    Ok(cal)
}

/// Reads and parses a calendar file.
pub fn load_calendar(path: &Path) -> Result<Calendar, RuleFileError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Io {
        origin: origin.clone(),
        source,
    })?;
    parse_calendar(&text, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_know_their_weekdays() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2023, 1, 28),
            (2026, 11, 27),
            (1969, 12, 31),
        ] {
            let day = ChinaDay::from_ymd(y, m, d).unwrap();
            assert_eq!(day.ymd(), (y, m, d));
        }
        assert_eq!(ChinaDay::from_ymd(1970, 1, 1), Some(ChinaDay(0)));
        assert_eq!(
            ChinaDay::from_ymd(2023, 1, 28).unwrap().weekday(),
            Weekday::Sat
        );
        assert_eq!(
            ChinaDay::from_ymd(2026, 11, 27).unwrap().weekday(),
            Weekday::Fri
        );
        assert_eq!(ChinaDay::from_ymd(2023, 2, 29), None);
    }

    #[test]
    fn china_days_start_at_midnight_utc_plus_eight() {
        let day = ChinaDay::from_ymd(2026, 11, 27).unwrap();
        // 2026-11-26 16:00 UTC is midnight in Beijing.
        assert_eq!(ChinaDay::of(day.at(0)), day);
        assert_eq!(
            ChinaDay::of(UnixMillis(day.at(0).0 - 1)),
            ChinaDay(day.0 - 1)
        );
        assert_eq!(day.at(20 * HOUR_MS), UnixMillis(1_795_780_800_000));
    }

    #[test]
    fn the_default_calendar_knows_2023_to_2026() {
        let cal = Calendar::china_default();
        for year in 2023..=2026 {
            assert!(cal.years().contains_key(&year), "{year}");
        }
        let d = |y, m, d| ChinaDay::from_ymd(y, m, d).unwrap();
        assert!(cal.is_holiday(d(2023, 1, 23)));
        assert!(cal.is_makeup_workday(d(2023, 1, 28)));
        assert!(cal.is_makeup_workday(d(2023, 1, 29)));
        assert!(cal.is_holiday(d(2026, 2, 17)));
        assert!(cal.is_makeup_workday(d(2026, 2, 14)));
        assert!(!cal.covers(d(2027, 1, 1)));
    }

    #[test]
    fn the_calendar_warns_sixty_days_before_its_last_year_ends_and_after() {
        let cal = Calendar::china_default();
        let d = |y, m, d| ChinaDay::from_ymd(y, m, d).unwrap();
        let last = cal.last_day().unwrap();
        assert_eq!(last, d(2026, 12, 31));
        assert_eq!(cal.coverage_warning(ChinaDay(last.0 - 61)), None);
        let soon = cal.coverage_warning(ChinaDay(last.0 - 60)).unwrap();
        assert!(
            soon.contains("ends in 60 day(s)") && soon.contains("add 2027"),
            "{soon}"
        );
        let after = cal.coverage_warning(d(2027, 1, 2)).unwrap();
        assert!(after.contains("ended on 2026-12-31"), "{after}");
        assert!(Calendar::empty().coverage_warning(d(2026, 1, 1)).is_some());
    }

    #[test]
    fn a_makeup_day_on_a_weekday_is_rejected_with_its_line() {
        let text = "[calendar]\ntitle = \"t\"\nsources = []\n\n[[year]]\nyear = 2023\nsource = \"s\"\nworkdays = [2023-01-27]\n";
        let err = parse_calendar(text, "cal.toml").unwrap_err().to_string();
        assert!(err.starts_with("cal.toml:8:13:"), "{err}");
        assert!(err.contains("not a Saturday or Sunday"), "{err}");
    }

    #[test]
    fn an_empty_chinese_title_is_rejected() {
        let text = "[calendar]\ntitle = \"t\"\ntitle_zh = \"\"\nsources = []\n";
        let err = parse_calendar(text, "cal.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("cal.toml:3:12: calendar title_zh is empty"),
            "{err}"
        );
        let text = "[calendar]\ntitle = \"t\"\ntitle_zh = \"节假日\"\nsources = []\n";
        assert!(parse_calendar(text, "cal.toml").is_ok());
    }

    #[test]
    fn a_date_outside_its_year_is_rejected() {
        let text = "[calendar]\ntitle = \"t\"\nsources = []\n[[year]]\nyear = 2024\nsource = \"s\"\nholidays = [{ name = \"x\", from = 2023-12-30, to = 2024-01-01 }]\n";
        let err = parse_calendar(text, "cal.toml").unwrap_err().to_string();
        assert!(err.contains("outside year 2024"), "{err}");
    }
}

//! Reports for the joint-meeting office, per department and period: planned vs drawn vs
//! checked vs published; the joint-inspection share against the quota; overdue
//! publications; anomaly tasks opened and the median and p90 time to acknowledge and to
//! resolve; remote-check coverage. As JSON and CSV (`api/reports.rs`) and as a scheduled
//! notification (`notify::scan`). Every figure comes from one read-only query in [`query`].

pub mod query;

use serde::Serialize;
use spotcheck_protocol::UnixMillis;

use crate::results::deadline::DAY_MS;
use crate::rules::ChinaDay;
use crate::store::db::{DbError, Sql};
use query::Range;

/// A report period: China days `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: ChinaDay,
    /// The day after the last.
    pub to: ChinaDay,
}

impl Period {
    /// From `from` up to, not including, `to`.
    pub fn days(from: ChinaDay, to: ChinaDay) -> Period {
        Period { from, to }
    }

    /// The period in milliseconds.
    pub fn range(&self) -> Range {
        Range {
            from_ms: self.from.at(0).0,
            to_ms: self.to.at(0).0,
        }
    }

    /// Days in the period.
    pub fn len_days(&self) -> i64 {
        (self.to.0 - self.from.0).max(0)
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error("report: database: {0}")]
    Db(#[from] DbError),
    /// A task could not be read.
    #[error("report: {0}")]
    Task(#[from] crate::tasks::TaskError),
    /// The plans could not be read.
    #[error("report: {0}")]
    Plans(String),
}

/// Percentiles of a duration, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Durations {
    /// How many.
    pub n: usize,
    /// Median (nearest rank), minutes.
    pub median_min: Option<f64>,
    /// 90th percentile (nearest rank), minutes.
    pub p90_min: Option<f64>,
}

impl Durations {
    /// The nearest-rank median and p90 of `ms`.
    pub fn of(mut ms: Vec<i64>) -> Durations {
        ms.sort_unstable();
        let rank = |p: f64| -> Option<f64> {
            if ms.is_empty() {
                return None;
            }
            let k = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            Some(ms[k - 1] as f64 / 60_000.0)
        };
        Durations {
            n: ms.len(),
            median_min: rank(0.5),
            p90_min: rank(0.9),
        }
    }
}

/// One department's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepartmentReport {
    /// The department.
    pub department: String,
    /// Entities its annual plans for the period's year(s) draw over the year.
    pub planned: u64,
    /// Tasks drawn in the period.
    pub drawn: u64,
    /// Tasks remotely checked in the period.
    pub checked: u64,
    /// Results published in the period.
    pub published: u64,
    /// Drawn tasks in the period's (first) year: the quota's base.
    pub random_tasks_year: u64,
    /// Joint tasks among them.
    pub joint_tasks_year: u64,
    /// joint / random.
    pub joint_share: Option<f64>,
    /// The least number of joint tasks the source document asks for.
    pub joint_required: u64,
    /// Whether the quota is met.
    pub joint_met: bool,
    /// Results past their publication deadline and still unpublished, now.
    pub overdue_publications: u64,
    /// Results published in the period after their deadline.
    pub published_late: u64,
    /// Anomaly tasks opened in the period.
    pub anomalies_opened: u64,
    /// Time to acknowledge them.
    pub time_to_acknowledge: Durations,
    /// Time to resolve them.
    pub time_to_resolve: Durations,
    /// Library entities in the department's domains.
    pub entities: u64,
    /// Of those, with any data in the period.
    pub live_feed: u64,
    /// live_feed / entities.
    pub coverage: Option<f64>,
    /// Mean share of the period's days with data, over the live entities.
    pub completeness: Option<f64>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// First day.
    pub from: String,
    /// The day after the last.
    pub to: String,
    /// When it was made.
    pub generated_ms: i64,
    /// Per department.
    pub departments: Vec<DepartmentReport>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The report over `period` for every department (or the ones given).
pub fn build(
    conn: &(impl Sql + ?Sized),
    period: &Period,
    publish_within_days: u32,
    now: UnixMillis,
) -> Result<Report, ReportError> {
    build_for(conn, period, publish_within_days, now, None)
}

/// The report over `period` for `only` (None: every department).
pub fn build_for(
    conn: &(impl Sql + ?Sized),
    period: &Period,
    publish_within_days: u32,
    now: UnixMillis,
    only: Option<&str>,
) -> Result<Report, ReportError> {
    let r = period.range();
    let within = i64::from(publish_within_days) * DAY_MS;
    let plans = crate::plan::store::plans(conn).map_err(|e| ReportError::Plans(e.to_string()))?;
    let library =
        crate::registry::store::entities(conn).map_err(|e| ReportError::Plans(e.to_string()))?;
    let (y0, _, _) = period.from.ymd();
    let (y1, _, _) = ChinaDay(period.to.0 - 1).ymd();
    let quotas =
        crate::joint::year_quotas(&query::drawn_tasks(conn)?, u16::try_from(y0).unwrap_or(0));
    let mut out = Vec::new();
    for d in query::departments(conn)? {
        if only.is_some_and(|o| o != d) {
            continue;
        }
        let planned = plans
            .iter()
            .filter(|p| p.department.as_str() == d && (y0..=y1).contains(&i32::from(p.year)))
            .map(|p| crate::plan::store::planned_entities(p, &library))
            .sum();
        let quota = quotas.iter().find(|q| q.department.as_str() == d);
        let entities = query::supervised_entities(conn, &d)?;
        let mut live = 0u64;
        let mut days = 0u64;
        for e in &entities {
            let n = query::days_with_data(conn, e, r)?;
            if n > 0 {
                live += 1;
                days += n;
            }
        }
        let random = quota.map_or(0, |q| q.random_tasks);
        let joint = quota.map_or(0, |q| q.joint_tasks);
        out.push(DepartmentReport {
            planned,
            drawn: query::drawn(conn, &d, r)?,
            checked: query::checked(conn, &d, r)?,
            published: query::published(conn, &d, r)?,
            random_tasks_year: random,
            joint_tasks_year: joint,
            joint_share: ratio(joint, random),
            joint_required: quota.map_or(0, |q| q.required),
            joint_met: quota.is_none_or(|q| q.met),
            overdue_publications: query::overdue_now(conn, &d, within, now.0)?,
            published_late: query::published_late(conn, &d, r, within)?,
            anomalies_opened: query::anomalies_opened(conn, &d, r)?,
            time_to_acknowledge: Durations::of(query::ack_times(conn, &d, r)?),
            time_to_resolve: Durations::of(query::resolve_times(conn, &d, r)?),
            entities: entities.len() as u64,
            live_feed: live,
            coverage: ratio(live, entities.len() as u64),
            completeness: (live > 0 && period.len_days() > 0)
                .then(|| days as f64 / (live as f64 * period.len_days() as f64)),
            department: d,
        });
    }
    Ok(Report {
        from: period.from.to_string(),
        to: period.to.to_string(),
        generated_ms: now.0,
        departments: out,
    })
}

/// The CSV header.
pub const CSV_HEADER: [&str; 24] = [
    "department",
    "from",
    "to",
    "planned",
    "drawn",
    "checked",
    "published",
    "random_tasks_year",
    "joint_tasks_year",
    "joint_share",
    "joint_required",
    "joint_met",
    "overdue_publications",
    "published_late",
    "anomalies_opened",
    "ack_median_min",
    "ack_p90_min",
    "resolve_median_min",
    "resolve_p90_min",
    "entities",
    "live_feed",
    "coverage",
    "completeness",
    "generated_ms",
];

/// The report as CSV, one row per department.
pub fn to_csv(report: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CSV_HEADER);
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    for d in &report.departments {
        let _ = w.write_record([
            d.department.clone(),
            report.from.clone(),
            report.to.clone(),
            d.planned.to_string(),
            d.drawn.to_string(),
            d.checked.to_string(),
            d.published.to_string(),
            d.random_tasks_year.to_string(),
            d.joint_tasks_year.to_string(),
            f(d.joint_share),
            d.joint_required.to_string(),
            d.joint_met.to_string(),
            d.overdue_publications.to_string(),
            d.published_late.to_string(),
            d.anomalies_opened.to_string(),
            f(d.time_to_acknowledge.median_min),
            f(d.time_to_acknowledge.p90_min),
            f(d.time_to_resolve.median_min),
            f(d.time_to_resolve.p90_min),
            d.entities.to_string(),
            d.live_feed.to_string(),
            f(d.coverage),
            f(d.completeness),
            report.generated_ms.to_string(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A department's figures as a short Chinese text, for the scheduled message.
pub fn summary_zh(d: &DepartmentReport, p: &Period) -> String {
    let pct = |v: Option<f64>| v.map_or("—".to_owned(), |x| format!("{:.0}%", x * 100.0));
    let min = |v: Option<f64>| v.map_or("—".to_owned(), |x| format!("{x:.0} 分钟"));
    format!(
        "{} 至 {}：计划 {}，已抽取 {}，已检查 {}，已公示 {}；联合抽查 {}/{}（要求 ≥ {}）；逾期未公示 {}；异常任务 {}，确认用时中位数 {}、P90 {}，处置用时中位数 {}、P90 {}；远程覆盖 {}，数据完整度 {}",
        p.from,
        ChinaDay(p.to.0 - 1),
        d.planned,
        d.drawn,
        d.checked,
        d.published,
        d.joint_tasks_year,
        d.random_tasks_year,
        d.joint_required,
        d.overdue_publications,
        d.anomalies_opened,
        min(d.time_to_acknowledge.median_min),
        min(d.time_to_acknowledge.p90_min),
        min(d.time_to_resolve.median_min),
        min(d.time_to_resolve.p90_min),
        pct(d.coverage),
        pct(d.completeness),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Durations::of((1..=10).map(|m| m * 60_000).collect());
        assert_eq!(d.median_min, Some(5.0));
        assert_eq!(d.p90_min, Some(9.0));
        assert_eq!(Durations::of(vec![]).median_min, None);
        assert_eq!(Durations::of(vec![120_000]).p90_min, Some(2.0));
    }
}

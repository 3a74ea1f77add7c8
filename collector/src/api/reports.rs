//! Report routes for the joint-meeting office (staff): per department and period, as JSON
//! or CSV. `from` and `to` are China dates, both included.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{authorize, read_db, ApiError, AppState};
use crate::report::{self, Period, Report};
use crate::rules::ChinaDay;
use spotcheck_protocol::UnixMillis;

/// The report routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports", get(json_report))
        .route("/api/v1/reports/csv", get(csv_report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    from: String,
    to: String,
    department: Option<String>,
}

impl ReportParams {
    fn period(&self) -> Result<Period, ApiError> {
        let day = |what: &str, v: &str| {
            ChinaDay::parse(v)
                .ok_or_else(|| ApiError::BadRequest(format!("{what} {v:?}: use YYYY-MM-DD")))
        };
        let (from, to) = (day("from", &self.from)?, day("to", &self.to)?);
        if to.0 < from.0 {
            return Err(ApiError::BadRequest(format!(
                "to {} is before from {}",
                self.to, self.from
            )));
        }
        if to.0 - from.0 > 3660 {
            return Err(ApiError::BadRequest(
                "a report covers at most ten years".into(),
            ));
        }
        Ok(Period::days(from, ChinaDay(to.0 + 1)))
    }
}

async fn make(s: &AppState, p: ReportParams) -> Result<Report, ApiError> {
    let period = p.period()?;
    let within = s.publish_within_days;
    read_db(s, move |c| {
        report::build_for(
            c,
            &period,
            within,
            UnixMillis::now(),
            p.department.as_deref(),
        )
        .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
}

async fn json_report(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<ReportParams>,
) -> Result<Json<Report>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(make(&s, p).await?))
}

async fn csv_report(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<ReportParams>,
) -> Result<Response, ApiError> {
    authorize(&s, &h)?;
    let name = format!("spotcheck-report-{}-{}.csv", p.from, p.to);
    let r = make(&s, p).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        report::to_csv(&r),
    )
        .into_response())
}

//! Public reads for the console's visitor pages (no login): published results searched by
//! the entity's name or credit code, as JSON pages or the whole match as CSV.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{read_db, ApiError, AppState};
use crate::results::{self, PublicFilter, PublicResult};

/// The public search route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/public/results/search", get(search))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: Option<String>,
    domain: Option<String>,
    format: Option<String>,
    offset: Option<u32>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct SearchPage {
    results: Vec<PublicResult>,
    total: usize,
    offset: u32,
    limit: u32,
}

/// Whether `r` matches the search text: part of the registered name, or a credit code that
/// begins with it (case-insensitive).
pub fn matches(r: &PublicResult, q: &str) -> bool {
    let q = q.trim();
    q.is_empty()
        || r.entity_name.contains(q)
        || r.entity_code
            .to_ascii_uppercase()
            .starts_with(&q.to_ascii_uppercase())
}

async fn search(
    State(s): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected ?q=NAME_OR_CODE&domain=&format=json|csv&offset=N&limit=N"
        ))
    })?;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not offered; use json or csv"
            )))
        }
    };
    let filter = PublicFilter {
        domain: p.domain.filter(|d| !d.is_empty()),
        ..PublicFilter::default()
    };
    let all = read_db(&s, move |c| {
        results::public_results(c, &filter).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    let q = p.q.unwrap_or_default();
    let found: Vec<PublicResult> = all.into_iter().filter(|r| matches(r, &q)).collect();
    if csv {
        let body = results::to_csv(&found).map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"spotcheck-results.csv\"",
                ),
            ],
            body,
        )
            .into_response());
    }
    let (offset, limit) = (p.offset.unwrap_or(0), p.limit.unwrap_or(50).clamp(1, 500));
    let total = found.len();
    let results = found
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(Json(SearchPage {
        results,
        total,
        offset,
        limit,
    })
    .into_response())
}

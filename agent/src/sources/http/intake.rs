//! The intake router: auth, body limit, parsing, spooling, and one JSON error shape.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use spotcheck_protocol::{AgentId, Domain, UnixMillis};

use crate::sources::record::{self, RecordError};
use crate::sources::{AppendError, SpoolQueue};
use crate::telemetry;

/// How long a request may wait for room in the spool queue before it gets 503.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Debug)]
pub struct Intake {
    pub(super) name: String,
    pub(super) token: String,
    pub(super) agent: AgentId,
    pub(super) domain: Domain,
    pub(super) out: SpoolQueue,
    pub(super) max_body_bytes: usize,
}

/// Why a request was refused; maps to a status and `{"error", "reason"}`.
#[derive(Debug)]
enum IntakeError {
    Unauthorized(&'static str),
    TooLarge(usize),
    Record(RecordError),
    Unavailable(String),
    BadBody(String),
}

impl IntakeError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            IntakeError::Unauthorized(why) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("{why}; send Authorization: Bearer <the token in the agent's config>"),
            ),
            IntakeError::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {max} bytes; send fewer records per request"),
            ),
            IntakeError::Record(e @ RecordError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, e.code(), e.to_string())
            }
            IntakeError::Record(e @ RecordError::Invalid(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
            }
            IntakeError::Unavailable(why) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", why.clone())
            }
            IntakeError::BadBody(why) => (StatusCode::BAD_REQUEST, "bad_body", why.clone()),
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let (status, code, reason) = self.parts();
        (status, Json(json!({ "error": code, "reason": reason }))).into_response()
    }
}

/// The intake's routes: `POST /v1/records` behind the bearer token and the body limit.
pub fn router(intake: Intake) -> Router {
    let limit = intake.max_body_bytes;
    let state = Arc::new(intake);
    Router::new()
        .route("/v1/records", post(post_records))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(intake): State<Arc<Intake>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(""));
    let refused = match given {
        None => Some("no Authorization header"),
        Some(t) if !same(t.as_bytes(), intake.token.as_bytes()) => Some("wrong bearer token"),
        Some(_) => None,
    };
    if let Some(why) = refused {
        let e = IntakeError::Unauthorized(why);
        telemetry::record_rejected(&intake.name, "unauthorized", why);
        return e.into_response();
    }
    next.run(request).await
}

async fn post_records(
    State(intake): State<Arc<Intake>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match accept(&intake, body).await {
        Ok(response) => response,
        Err(e) => {
            let (_, code, reason) = e.parts();
            telemetry::record_rejected(&intake.name, code, &reason);
            e.into_response()
        }
    }
}

async fn accept(
    intake: &Intake,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, IntakeError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            IntakeError::TooLarge(intake.max_body_bytes)
        } else {
            IntakeError::BadBody(r.body_text())
        }
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| IntakeError::Record(RecordError::Malformed(e.to_string())))?;
    let items = match value {
        serde_json::Value::Array(values) => values
            .into_iter()
            .enumerate()
            .map(|(i, v)| record::parse_value(v, &format!("records[{i}]")))
            .collect::<Result<Vec<_>, _>>(),
        v => record::parse_value(v, "record").map(|item| vec![item]),
    }
    .map_err(IntakeError::Record)?;
    let n = items.len();
    let batch = record::batch_of(&intake.agent, intake.domain, items, UnixMillis::now())
        .map_err(IntakeError::Record)?;
    let seq = match tokio::time::timeout(QUEUE_WAIT, intake.out.append(batch)).await {
        Ok(Ok(seq)) => seq,
        Ok(Err(e @ AppendError::Closed)) => return Err(IntakeError::Unavailable(e.to_string())),
        Ok(Err(e @ AppendError::Refused(_))) => {
            return Err(IntakeError::Unavailable(e.to_string()))
        }
        Err(_) => {
            return Err(IntakeError::Unavailable(
                "the spool queue stayed full; retry later".into(),
            ))
        }
    };
    telemetry::records_accepted(n);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": n, "seq": seq.0 })),
    )
        .into_response())
}

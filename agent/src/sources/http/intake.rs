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

/// The request header that makes a POST safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest idempotency key accepted, in bytes.
const MAX_KEY_LEN: usize = 128;

/// What the handlers share.
#[derive(Debug)]
pub struct Intake {
    pub(super) name: String,
    pub(super) token: String,
    pub(super) agent: AgentId,
    pub(super) domain: Domain,
    pub(super) out: SpoolQueue,
    pub(super) max_body_bytes: usize,
    /// Answers already given, by idempotency key (at most the spool's `KEYED_MARKS`).
    pub(super) answered: tokio::sync::Mutex<Answered>,
}

/// The 202s given to requests with an idempotency key: key → (seq, records accepted). Kept in
/// the spool as keyed marks (`{group}#{key}`), written with the batch itself, so a retry after
/// an agent crash gets the original answer and the records are spooled once.
#[derive(Debug, Default)]
pub struct Answered {
    by_key: std::collections::HashMap<String, (u64, usize)>,
    by_seq: std::collections::BTreeMap<u64, String>,
}

impl Answered {
    /// The answers kept in the spool's marks for `group`.
    pub fn from_marks(group: &str, marks: &crate::sources::Marks) -> Answered {
        let mut a = Answered::default();
        let prefix = format!("{group}#");
        for (k, (seq, state)) in marks {
            if let (Some(key), Ok(n)) = (k.strip_prefix(&prefix), state.parse::<usize>()) {
                a.insert(key.to_owned(), seq.0, n);
            }
        }
        a
    }

    fn insert(&mut self, key: String, seq: u64, n: usize) {
        self.by_seq.insert(seq, key.clone());
        self.by_key.insert(key, (seq, n));
        while self.by_key.len() > crate::spool::KEYED_MARKS {
            if let Some((_, old)) = self.by_seq.pop_first() {
                self.by_key.remove(&old);
            }
        }
    }
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

/// The group of an intake's keyed marks in the spool.
pub fn mark_group(source: &str) -> String {
    format!("http:{source}")
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
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let key = match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_KEY_LEN && !k.contains('#') => {
            Some(k.to_owned())
        }
        Some(_) => {
            let e = IntakeError::BadBody(format!(
                "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters without '#'"
            ));
            let (_, code, reason) = e.parts();
            telemetry::record_rejected(&intake.name, code, &reason);
            return e.into_response();
        }
    };
    match accept(&intake, body, key).await {
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
    key: Option<String>,
) -> Result<Response, IntakeError> {
    // One keyed request at a time, so that two retries of one request cannot both spool it.
    let mut answered = match &key {
        Some(k) => {
            let guard = intake.answered.lock().await;
            if let Some(&(seq, n)) = guard.by_key.get(k) {
                return Ok((
                    StatusCode::ACCEPTED,
                    [("idempotent-replayed", "true")],
                    Json(json!({ "accepted": n, "seq": seq })),
                )
                    .into_response());
            }
            Some(guard)
        }
        None => None,
    };
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
    let mark = key
        .as_ref()
        .map(|k| (format!("{}#{k}", mark_group(&intake.name)), n.to_string()));
    let seq = match tokio::time::timeout(QUEUE_WAIT, intake.out.append_marked(batch, mark)).await {
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
    if let (Some(answered), Some(k)) = (answered.as_mut(), key) {
        answered.insert(k, seq.0, n);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": n, "seq": seq.0 })),
    )
        .into_response())
}

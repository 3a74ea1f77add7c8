//! The one error shape of the HTTP API: `{"error": {"code": "...", "message": "..."}}`.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Everything an API handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No, a wrong, an expired or a revoked credential.
    #[error("this endpoint needs a login: the console's session, or an API token as `Authorization: Bearer <token>` (the bootstrap admin's is in DATA_DIR/admin.token); expired and revoked tokens are refused")]
    Unauthorized,
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed logins for this user name or client address; try again in {0} s")]
    TooManyRequests(u64),
    /// A query parameter or path segment is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The request is wrong in ways a client can show one by one: the message, and members
    /// added to the error object beside `code` and `message` (e.g. an import's `problems`).
    #[error("{0}")]
    BadRequestWith(String, serde_json::Map<String, serde_json::Value>),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (wrong status, already decided).
    #[error("{0}")]
    Conflict(String),
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// The store failed; details go to the log, not to the client.
    #[error("internal error; see the collector's log")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::BadRequest(_) | ApiError::BadRequestWith(..) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(message = "API request failed.", error = %detail);
        }
        let (status, code) = self.parts();
        let mut error = serde_json::Map::new();
        error.insert("code".into(), code.into());
        error.insert("message".into(), self.to_string().into());
        if let ApiError::BadRequestWith(_, details) = &self {
            for (k, v) in details {
                error.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if let ApiError::TooManyRequests(s) = &self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, (*s).into());
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::store::db::DbError> for ApiError {
    fn from(e: crate::store::db::DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// Largest error body [`json_errors`] reads back to wrap; axum's rejections are far smaller.
const MAX_REJECTION_BYTES: usize = 64 * 1024;

/// Middleware: gives the errors that axum itself answers with — a path parameter that does
/// not parse, a JSON body that does not deserialize, a missing content type, an unknown route,
/// a wrong method — the one error shape, keeping their status and their text as the message.
/// Responses that are already JSON pass untouched.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

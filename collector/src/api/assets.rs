//! The console's files, embedded in the binary: `/` is the page, `/assets/{name}` its ES
//! modules and style sheet. Each answer carries an `ETag` (the build's content hash), so a
//! reload asks with `If-None-Match` and gets a bodiless 304.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::console;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

fn answer(headers: &HeaderMap, file: &console::Asset) -> Response {
    let etag = console::etag(file);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(file.mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::ETAG,
                HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            ),
        ],
        file.body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    answer(&headers, &console::INDEX)
}

async fn asset(headers: HeaderMap, Path(name): Path<String>) -> Response {
    match console::asset(&name) {
        Some(file) => answer(&headers, file),
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

//! Live updates for an open console: `GET /api/v1/live`, a server-sent event stream of the
//! tasks that changed (as `TaskRow`s, only those the caller may see) and of the open-task
//! counts, so that the console never re-reads its lists. A stream opens with `ready` and the
//! counts. When nothing happens it sends a
//! comment line every [`KEEP_ALIVE`]: a few hundred bytes an hour.
//!
//! Without `Accept: text/event-stream` it answers the counts once, as JSON.
//!
//! The stream looks at the store's change [`Marker`](crate::views::changes::Marker) every
//! [`TICK`]; it ends after [`LIFETIME`] (the console reconnects, and is authenticated again).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::AsyncWriteExt;

use super::console_views::{rows, scope_of};
use super::{auth, read_db, ApiError, AppState};
use crate::views::{changes, queue};

/// How often the store is looked at.
pub const TICK: Duration = Duration::from_secs(2);
/// How often an idle stream sends a comment, so that proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// How long one stream lasts before the console reconnects.
pub const LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The live route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/live", get(live))
}

async fn live(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let scope = scope_of(&who);
    let streams = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !streams {
        // A plain GET: the counts now, as the stream's `counts` event would carry them.
        let counts = read_db(&s, move |c| Ok(queue::counts(c, &scope)?)).await?;
        return Ok(axum::Json(counts).into_response());
    }
    let scope1 = scope.clone();
    let (mut last, counts) = read_db(&s, move |c| {
        Ok((changes::marker(c)?, queue::counts(c, &scope1)?))
    })
    .await?;
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut quiet = Duration::ZERO;
        // The first event tells the console the stream is up; the counts as of the marker
        // follow, so that a console that reconnected is current without re-reading.
        let first = format!(
            "event: ready\ndata: {{}}\n\nevent: counts\ndata: {}\n\n",
            serde_json::json!(counts)
        );
        if tx.write_all(first.as_bytes()).await.is_err() {
            return;
        }
        while started.elapsed() < LIFETIME {
            tokio::time::sleep(TICK).await;
            let (since, rules, scope2) = (last, s.rulebook.rules(), scope.clone());
            let now = match read_db(&s, |c| Ok(changes::marker(c)?)).await {
                Ok(m) => m,
                Err(_) => break,
            };
            if now == since {
                quiet += TICK;
                if quiet >= KEEP_ALIVE {
                    quiet = Duration::ZERO;
                    if tx.write_all(b":\n\n").await.is_err() {
                        return;
                    }
                }
                continue;
            }
            quiet = Duration::ZERO;
            last = now;
            let found = read_db(&s, move |c| {
                let ids = changes::changed(c, &since)?;
                let counts = queue::counts(c, &scope2)?;
                Ok((rows(c, &rules, &ids)?, counts, ids.len()))
            })
            .await;
            let Ok((rows, counts, n)) = found else {
                break;
            };
            let visible: Vec<_> = rows.into_iter().filter(|r| who.sees(&r.task)).collect();
            let mut msg = String::new();
            if !visible.is_empty() || n as u32 >= changes::MAX_CHANGED {
                msg += &format!(
                    "event: tasks\ndata: {}\n\n",
                    serde_json::json!({"tasks": visible, "more": n as u32 >= changes::MAX_CHANGED})
                );
            }
            msg += &format!("event: counts\ndata: {}\n\n", serde_json::json!(counts));
            if tx.write_all(msg.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = tx.write_all(b"event: bye\ndata: {}\n\n").await;
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(rx)),
    )
        .into_response())
}

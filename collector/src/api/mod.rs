//! The HTTP side: `/healthz`, `/metrics`, the JSON API under `/api/v1`, and the console at `/`.

pub mod agent_credentials;
pub mod assets;
pub mod auth;
pub mod console_views;
pub mod draws;
pub mod error;
pub mod live;
pub mod notify;
pub mod people;
pub mod public;
pub mod registry;
pub mod reports;
pub mod tasks;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::health::{Part, PartState};
use crate::registry::{Bindings, Presence};
use crate::store::{self, query};
use crate::telemetry::{Stats, StatsSnapshot};
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Counters.
    pub stats: Stats,
    /// Agent bindings.
    pub bindings: Bindings,
    /// Agent presence.
    pub presence: Presence,
    /// The store (SQLite file or PostgreSQL).
    pub store: crate::store::db::DbUrl,
    /// The data directory (published draw records, the admin token).
    pub data_dir: PathBuf,
    /// Users' logins: the rate limit and the session settings.
    pub people: Arc<people::People>,
    /// The active rule packs and calendar.
    pub rulebook: crate::rulebook::Rulebook,
    /// Days within which a result must be published.
    pub publish_within_days: u32,
    /// What each running part reports (`/healthz`).
    pub health: crate::health::Health,
    /// The agents' credentials (live table).
    pub credentials: crate::registry::credentials::Credentials,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/entities", get(entities))
        .route("/api/v1/entities/{entity}/readings", get(readings))
        .route("/api/v1/dead-letters", get(dead_letters))
        .merge(
            draws::routes()
                .merge(people::routes())
                .merge(registry::routes())
                .merge(tasks::routes())
                .merge(agent_credentials::routes())
                .merge(notify::routes())
                .merge(reports::routes())
                .merge(assets::routes())
                .merge(console_views::routes())
                .merge(live::routes())
                .merge(public::routes()),
        )
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(auth::layer))
        .with_state(state)
}

/// The OpenAPI document of every route (kept beside the code; a test checks it against the
/// routes).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// `/healthz`: each part and its state; 200 when none is failing or down, else 503.
#[derive(Serialize)]
struct HealthView {
    status: &'static str,
    parts: Vec<PartView>,
    /// Things an operator must see to before they become faults (they do not make it 503).
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct PartView {
    part: Part,
    #[serde(flatten)]
    state: PartState,
}

async fn healthz(State(s): State<AppState>) -> Response {
    // The store as a reader sees it: a quick query on a fresh read-only connection.
    let url = s.store.clone();
    let probe = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use store::db::Sql as _;
        let conn = store::db::connect(&url, store::db::Mode::Read).map_err(|e| e.to_string())?;
        conn.query_row("SELECT 1", store::db::args![], |r| r.get::<i64>(0))
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let store_state = match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(Ok(()))) => PartState::Up,
        Ok(Ok(Err(reason))) => PartState::Failing { reason },
        Ok(Err(e)) => PartState::Failing {
            reason: e.to_string(),
        },
        Err(_) => PartState::Failing {
            reason: "the store did not answer within 2 s".into(),
        },
    };
    s.health.report(Part::Store, store_state);
    let parts: Vec<PartView> = s
        .health
        .parts()
        .into_iter()
        .map(|(part, state)| PartView { part, state })
        .collect();
    let healthy = parts.iter().all(|p| !p.state.is_fault());
    let today = crate::rules::ChinaDay::of(spotcheck_protocol::UnixMillis::now());
    let view = HealthView {
        status: if healthy { "ok" } else { "unhealthy" },
        parts,
        warnings: s
            .rulebook
            .calendar()
            .coverage_warning(today)
            .into_iter()
            .collect(),
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(view)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let calendar = s.rulebook.calendar();
    let today = crate::rules::ChinaDay::of(spotcheck_protocol::UnixMillis::now());
    s.stats
        .calendar_days_left
        .set(calendar.last_day().map_or(-1, |last| last.0 - today.0));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.stats.render(),
    )
        .into_response()
}

async fn stats(State(s): State<AppState>) -> Json<StatsSnapshot> {
    Json(s.stats.snapshot())
}

/// The bureau's staff (admin, auditor, supervisors): the data beyond tasks.
fn authorize(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    auth::staff(s, headers).map(drop)
}

/// Runs a query on a blocking thread with a connection of the read pool
/// ([`store::access`]), on either engine.
async fn read_db<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&store::db::Conn) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let access = store::access::of_url(&s.store);
    tokio::task::spawn_blocking(move || -> Result<T, ApiError> { access.read_db(f)? })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

#[derive(Serialize)]
struct AgentView {
    id: String,
    entity: Option<String>,
    domain: Option<String>,
    state: Option<spotcheck_protocol::AgentState>,
}

async fn agents(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    authorize(&s, &headers)?;
    let presence: std::collections::HashMap<_, _> = s.presence.all().into_iter().collect();
    let mut ids: Vec<_> = presence.keys().cloned().collect();
    ids.extend(s.bindings.ids());
    ids.sort();
    ids.dedup();
    Ok(Json(
        ids.into_iter()
            .map(|id| {
                let b = s.bindings.get(&id);
                AgentView {
                    entity: b.map(|b| b.entity.to_string()),
                    domain: b.map(|b| b.domain.to_string()),
                    state: presence.get(&id).copied(),
                    id: id.to_string(),
                }
            })
            .collect(),
    ))
}

async fn entities(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<query::EntitySummary>>, ApiError> {
    authorize(&s, &headers)?;
    Ok(Json(read_db(&s, |c| Ok(query::entities(c)?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesParams {
    metric: String,
    since_ms: Option<i64>,
    limit: Option<u32>,
}

async fn readings(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(entity): Path<String>,
    params: Result<Query<SeriesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<query::Point>>, ApiError> {
    authorize(&s, &headers)?;
    let Query(p) = params.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected ?metric=NAME[&since_ms=UNIX_MS][&limit=N]"
        ))
    })?;
    let since = p
        .since_ms
        .unwrap_or(spotcheck_protocol::UnixMillis::now().0 - 3_600_000);
    let limit = p.limit.unwrap_or(10_000).min(100_000);
    Ok(Json(
        read_db(&s, move |c| {
            Ok(query::series(c, &entity, &p.metric, since, limit)?)
        })
        .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitParams {
    limit: Option<u32>,
}

async fn dead_letters(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<LimitParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<query::DeadLetterRow>>, ApiError> {
    authorize(&s, &headers)?;
    let Query(p) = params.map_err(|e| ApiError::BadRequest(format!("{e}; expected ?limit=N")))?;
    let limit = p.limit.unwrap_or(100).min(10_000);
    Ok(Json(
        read_db(&s, move |c| Ok(query::dead_letters(c, limit)?)).await?,
    ))
}

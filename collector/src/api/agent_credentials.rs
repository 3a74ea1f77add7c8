//! Agent credential routes (admin): issue, rotate, revoke, list. Issuing and rotating answer
//! with the secret once (the credential file's text); nothing else ever shows it.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use spotcheck_protocol::{AgentId, UnixMillis};

use super::draws::write_db;
use super::{auth, read_db, ApiError, AppState};
use crate::registry::credentials::{self, CredentialError, CredentialInfo, Issued};
use crate::store::db::Conn;

/// The credential routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agent-credentials", get(list))
        .route(
            "/api/v1/agents/{agent}/credential",
            post(add).delete(revoke),
        )
        .route("/api/v1/agents/{agent}/credential/rotate", post(rotate))
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Exists(_) | CredentialError::AlreadyRevoked(_) => {
                ApiError::Conflict(e.to_string())
            }
            CredentialError::Missing(_) => ApiError::NotFound(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A new credential, shown once.
#[derive(Serialize)]
struct IssuedView {
    agent: String,
    generation: u32,
    key: String,
    password: String,
    /// The same as a credential file for the agent (`agent.credential_file`).
    file: String,
}

impl From<Issued> for IssuedView {
    fn from(i: Issued) -> Self {
        IssuedView {
            agent: i.agent.to_string(),
            generation: i.key.generation().0,
            key: i.key.to_hex(),
            password: i.password.clone(),
            file: i.to_file_text(),
        }
    }
}

fn agent_id(raw: &str) -> Result<AgentId, ApiError> {
    AgentId::new(raw).map_err(|e| ApiError::BadRequest(format!("agent id {raw:?}: {e}")))
}

/// Reloads the live table after a change, so it takes effect at once.
async fn refresh(s: &AppState) -> Result<(), ApiError> {
    let table = s.credentials.clone();
    read_db(s, move |c| Ok(table.reload(c)?)).await?;
    Ok(())
}

async fn list(
    State(s): State<AppState>,
    h: HeaderMap,
) -> Result<Json<Vec<CredentialInfo>>, ApiError> {
    auth::admin(&s, &h)?;
    Ok(Json(read_db(&s, |c| Ok(credentials::list(c)?)).await?))
}

async fn add(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(agent): Path<String>,
) -> Result<Json<IssuedView>, ApiError> {
    issue(&s, &h, &agent, credentials::add).await
}

async fn rotate(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(agent): Path<String>,
) -> Result<Json<IssuedView>, ApiError> {
    issue(&s, &h, &agent, credentials::rotate).await
}

/// Issues a credential with `op` (first or next generation), then refreshes the live table so
/// the broker and ingest use it at once.
async fn issue(
    s: &AppState,
    h: &HeaderMap,
    agent: &str,
    op: fn(&Conn, &AgentId, UnixMillis) -> Result<Issued, CredentialError>,
) -> Result<Json<IssuedView>, ApiError> {
    auth::admin(s, h)?;
    let agent = agent_id(agent)?;
    let issued = write_db(s, move |c| Ok(op(c, &agent, UnixMillis::now())?)).await?;
    refresh(s).await?;
    Ok(Json(issued.into()))
}

async fn revoke(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(agent): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    auth::admin(&s, &h)?;
    let agent = agent_id(&agent)?;
    write_db(&s, move |c| {
        Ok(credentials::revoke(c, &agent, UnixMillis::now())?)
    })
    .await?;
    refresh(&s).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

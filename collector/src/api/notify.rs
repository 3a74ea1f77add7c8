//! Notification and contact routes: the channels and routes (read: staff; save: admin,
//! refused with every reason when they cannot work), a test send that answers at once whether
//! a channel works, the persisted messages and the delivery log, and each department's liaison
//! officers with their history.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::draws::write_db;
use super::{authorize, read_db, ApiError, AppState};
use crate::audit::{self, EntryKind};
use crate::contacts::{self, Contact, ContactError, NewContact};
use crate::notify::outbox::{self, Delivery, StoredMessage};
use crate::notify::{self, Rules};
use crate::store::db::{DbError, Sql};
use spotcheck_protocol::UnixMillis;

/// The notification and contact routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/notify/config", get(get_config).put(put_config))
        .route("/api/v1/notify/channels/{name}/test", post(test_channel))
        .route("/api/v1/notify/messages", get(messages))
        .route("/api/v1/notify/deliveries", get(deliveries))
        .route("/api/v1/contacts", get(list_contacts))
        .route("/api/v1/contacts/{department}", put(put_contacts))
        .route(
            "/api/v1/contacts/{department}/history",
            get(contact_history),
        )
}

impl From<ContactError> for ApiError {
    fn from(e: ContactError) -> Self {
        match e {
            ContactError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<notify::NotifyError> for ApiError {
    fn from(e: notify::NotifyError) -> Self {
        match e {
            notify::NotifyError::UnknownChannel(_) => ApiError::NotFound(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The rules in force, secrets hidden.
#[derive(Serialize)]
struct ConfigView {
    /// Version (None: none saved, nothing configured).
    version: Option<i64>,
    rules: Rules,
}

fn current_rules(c: &(impl Sql + ?Sized)) -> Result<(Option<i64>, Rules), DbError> {
    Ok(match outbox::saved_rules(c)? {
        Some((id, body)) => (Some(id), serde_json::from_str(&body).unwrap_or_default()),
        None => (None, Rules::default()),
    })
}

async fn get_config(State(s): State<AppState>, h: HeaderMap) -> Result<Json<ConfigView>, ApiError> {
    authorize(&s, &h)?;
    let (version, rules) = read_db(&s, |c| Ok(current_rules(c)?)).await?;
    Ok(Json(ConfigView {
        version,
        rules: Rules {
            channels: rules.channels.iter().map(|c| c.redacted()).collect(),
            routes: rules.routes,
        },
    }))
}

/// Saves new rules after checking them against the store's departments; the worker picks
/// them up at its next step.
async fn put_config(
    State(s): State<AppState>,
    h: HeaderMap,
    body: String,
) -> Result<Json<ConfigView>, ApiError> {
    let caller = super::auth::admin(&s, &h)?;
    let rules: Rules = serde_json::from_str(&body)
        .map_err(|e| ApiError::BadRequest(format!("notification rules: {e}")))?;
    let by = caller.actor();
    write_db(&s, move |c| {
        let known = notify::known_departments(c)?;
        rules.check(Some(&known)).map_err(|problems| {
            ApiError::BadRequest(format!(
                "{} problem(s); nothing was saved: {}",
                problems.len(),
                problems.join("; ")
            ))
        })?;
        let now = UnixMillis::now();
        let tx = c.transaction()?;
        let body = serde_json::to_string(&rules).expect("rules serialise");
        let id = outbox::save_rules(&tx, &body, now.0, &by)?;
        audit::append(
            &tx,
            EntryKind::RegistryChanged,
            "notify:config",
            &json!({"what": "notification_rules", "version": id,
                    "channels": rules.channels.len(), "routes": rules.routes.len()}),
            now,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        tx.commit()?;
        Ok(ConfigView {
            version: Some(id),
            rules: Rules {
                channels: rules.channels.iter().map(|c| c.redacted()).collect(),
                routes: rules.routes,
            },
        })
    })
    .await
    .map(Json)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestBody {
    /// E-mail channels: an extra recipient for the test.
    #[serde(default)]
    to: Option<String>,
}

/// The answer of a test send.
#[derive(Serialize)]
struct TestResult {
    channel: String,
    ok: bool,
    detail: String,
    elapsed_ms: u128,
}

async fn test_channel(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<TestResult>, ApiError> {
    super::auth::admin(&s, &h)?;
    let t: TestBody = if body.trim().is_empty() {
        TestBody::default()
    } else {
        serde_json::from_str(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?
    };
    let started = std::time::Instant::now();
    let (_, rules) = read_db(&s, |c| Ok(current_rules(c)?)).await?;
    // Sent with no connection held (a dead channel takes its whole timeout), then logged.
    let (channel, to) = (name.clone(), t.to);
    let result =
        tokio::task::spawn_blocking(move || notify::worker::test_message(&rules, &channel, to))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    let (channel, logged) = (name.clone(), detail.clone());
    write_db(&s, move |c| {
        let now = UnixMillis::now().0;
        Ok(outbox::log(c, None, &channel, now, 1, ok, &logged)?)
    })
    .await?;
    Ok(Json(TestResult {
        channel: name,
        ok,
        detail,
        elapsed_ms: started.elapsed().as_millis(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageParams {
    status: Option<String>,
    limit: Option<u32>,
}

async fn messages(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<MessageParams>,
) -> Result<Json<Vec<StoredMessage>>, ApiError> {
    authorize(&s, &h)?;
    if let Some(st) = &p.status {
        if !["pending", "sent", "failed"].contains(&st.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "status {st:?}: use pending, sent or failed"
            )));
        }
    }
    let limit = p.limit.unwrap_or(100).min(1000);
    Ok(Json(
        read_db(&s, move |c| {
            Ok(outbox::messages(c, p.status.as_deref(), limit)?)
        })
        .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryParams {
    message: Option<i64>,
    limit: Option<u32>,
}

async fn deliveries(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<DeliveryParams>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    authorize(&s, &h)?;
    let limit = p.limit.unwrap_or(100).min(1000);
    Ok(Json(
        read_db(&s, move |c| Ok(outbox::deliveries(c, p.message, limit)?)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactParams {
    department: Option<String>,
}

async fn list_contacts(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<ContactParams>,
) -> Result<Json<Vec<Contact>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(
        read_db(&s, move |c| {
            Ok(contacts::current(c, p.department.as_deref())?)
        })
        .await?,
    ))
}

async fn contact_history(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(department): Path<String>,
) -> Result<Json<Vec<Contact>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(
        read_db(&s, move |c| Ok(contacts::history(c, &department)?)).await?,
    ))
}

/// Replaces a department's liaison officers (the department must be known).
async fn put_contacts(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(department): Path<String>,
    body: String,
) -> Result<Json<Vec<Contact>>, ApiError> {
    super::auth::admin(&s, &h)?;
    let list: Vec<NewContact> = serde_json::from_str(&body)
        .map_err(|e| ApiError::BadRequest(format!("liaison officers: {e}")))?;
    write_db(&s, move |c| {
        let known = notify::known_departments(c)?;
        if !known.contains(&department) {
            return Err(ApiError::BadRequest(format!(
                "unknown department {department:?}; known: {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(contacts::replace(c, &department, &list, UnixMillis::now())?)
    })
    .await
    .map(Json)
}

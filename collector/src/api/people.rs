//! People routes: console login, who-am-I and logout (`/api/v1/session`), API tokens
//! (`/api/v1/tokens`: one issues only one's own; the admin lists and revokes anyone's) and users (`/api/v1/users`, admin;
//! the auditor reads).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use super::auth::{self, Caller, SessionSettings, Via, SESSION_COOKIE};
use super::draws::write_db;
use super::{read_db, ApiError, AppState};
use crate::audit;
use crate::registry::model::InspectorId;
use crate::store::db::{args, Conn, Sql};
use crate::users::limit::LoginLimiter;
use crate::users::store::{self as user_store, NewUser, User};
use crate::users::{secrets, Role, TokenId, TokenInfo, UserId};

/// What the people routes share: the login rate limit and how sessions are made.
#[derive(Default)]
pub struct People {
    /// Failed logins per user name and client address.
    pub limiter: LoginLimiter,
    /// Cookie flags and lifetime.
    pub sessions: SessionSettings,
}

impl People {
    /// With these session settings and the default rate limit.
    pub fn new(sessions: SessionSettings) -> Arc<People> {
        Arc::new(People {
            limiter: LoginLimiter::default(),
            sessions,
        })
    }
}

/// The people routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/session", post(login).get(whoami).delete(logout))
        .route("/api/v1/tokens", get(list_tokens).post(issue_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{id}/disable", post(disable_user))
        .route("/api/v1/users/{id}/enable", post(enable_user))
        .route("/api/v1/users/{id}/password", put(set_password))
        .route(
            "/api/v1/registry/inspectors/{id}/login",
            post(inspector_login),
        )
}

/// Runs `f` with the workflow writer on a blocking thread, acting as `actor` (a login and a
/// logout act as the user before the request has an authenticated caller).
async fn as_actor<T: Send + 'static>(
    s: &AppState,
    actor: String,
    f: impl FnOnce(&Conn) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let access = crate::store::access::of_url(&s.store);
    tokio::task::spawn_blocking(move || {
        access.write_db(|conn| audit::acting_as(&actor, || f(conn)))?
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

/// Who is logged in, as the console sees it.
#[derive(Serialize)]
struct SessionView {
    user: User,
    /// Only for a cookie session: the token to send as `X-CSRF-Token` with every write.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_ms: Option<i64>,
    via: &'static str,
}

fn client_addr(ext: &axum::http::Extensions) -> String {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn session_cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("a cookie of hex and ASCII is a header value")
}

async fn login(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(l) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected {{\"user\": NAME, \"password\": TEXT}}"
        ))
    })?;
    let addr = client_addr(&ext);
    if let Err(wait) = s.people.limiter.check(&l.user, &addr) {
        s.stats.login_failures.inc();
        return Err(ApiError::TooManyRequests(wait.as_secs().max(1)));
    }
    let (name, pw) = (l.user.clone(), l.password);
    let user = read_db(&s, move |c| Ok(user_store::check_password(c, &name, &pw)?)).await?;
    let Some(user) = user else {
        s.people.limiter.fail(&l.user, &addr);
        s.stats.login_failures.inc();
        tracing::info!(message = "Login refused.", client = %addr);
        return Err(ApiError::Unauthorized);
    };
    let settings = s.people.sessions;
    let ttl_ms = i64::try_from(settings.ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let id = user.id;
    let (secret, session) = as_actor(&s, id.actor(), move |c| {
        Ok(secrets::open_session(c, id, ttl_ms, UnixMillis::now())?)
    })
    .await?;
    let mut response = Json(SessionView {
        user,
        csrf_token: Some(session.csrf_token),
        expires_ms: Some(session.expires_ms),
        via: "session",
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&secret, settings.ttl.as_secs(), settings.secure_cookies),
    );
    Ok(response)
}

async fn whoami(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    let c = auth::caller(&s, &headers)?;
    let (csrf_token, expires_ms, via) = match c.via {
        Via::Session => {
            let secret = auth::cookie(&headers, SESSION_COOKIE)
                .unwrap_or_default()
                .to_owned();
            let found = read_db(&s, move |conn| {
                Ok(secrets::session(conn, &secret, UnixMillis::now())?)
            })
            .await?;
            let session = found.ok_or(ApiError::Unauthorized)?.1;
            (
                Some(session.csrf_token),
                Some(session.expires_ms),
                "session",
            )
        }
        Via::Token(_) => (None, None, "token"),
    };
    Ok(Json(SessionView {
        user: c.user,
        csrf_token,
        expires_ms,
        via,
    }))
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = auth::caller(&s, &headers)?;
    if c.via != Via::Session {
        return Err(ApiError::BadRequest(
            "logout ends a console session; this request used an API token (revoke it with DELETE /api/v1/tokens/ID)".into(),
        ));
    }
    let secret = auth::cookie(&headers, SESSION_COOKIE)
        .unwrap_or_default()
        .to_owned();
    as_actor(&s, c.actor(), move |conn| {
        Ok(secrets::close_session(conn, &secret, UnixMillis::now())?)
    })
    .await?;
    let mut response = Json(json!({"logged_out": true})).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, s.people.sessions.secure_cookies),
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenParams {
    user: Option<i64>,
}

/// The user whose tokens `c` addresses: their own, or (admin) anyone's.
fn owner(c: &Caller, user: Option<i64>) -> Result<UserId, ApiError> {
    match user.map(UserId) {
        None => Ok(c.user.id),
        Some(u) if u == c.user.id => Ok(u),
        Some(u) if matches!(c.role(), Role::Admin | Role::Auditor) => Ok(u),
        Some(_) => Err(ApiError::Forbidden(
            "only the admin manages other users' tokens".into(),
        )),
    }
}

async fn list_tokens(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<TokenParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let c = auth::caller(&s, &headers)?;
    let Query(p) = params.map_err(|e| ApiError::BadRequest(format!("{e}; expected ?user=ID")))?;
    let user = owner(&c, p.user)?;
    Ok(Json(
        read_db(&s, move |conn| Ok(secrets::tokens(conn, Some(user))?)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    user: Option<i64>,
}

async fn issue_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = auth::caller(&s, &headers)?;
    let Json(t) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected {{\"name\": TEXT[, \"days\": N][, \"user\": USER_ID]}}"
        ))
    })?;
    // A token acts as its owner, so issuing one for someone else would let the issuer act as
    // them: nobody may, the admin included. A user without a token logs in and issues their own.
    let user = match t.user.map(UserId) {
        None => c.user.id,
        Some(u) if u == c.user.id => u,
        Some(u) => {
            return Err(ApiError::Forbidden(format!(
                "a token acts as its owner, so only user {u} can issue one for themselves \
                 (log in as them, or run `spotcheck-collector tokens issue` on the server)"
            )))
        }
    };
    let days = t.days.unwrap_or(90);
    let (info, secret) = write_db(&s, move |conn| {
        let tx = conn.transaction()?;
        let issued = secrets::issue(&tx, user, &t.name, days, UnixMillis::now())?;
        tx.commit()?;
        Ok(issued)
    })
    .await?;
    Ok(Json(json!({"token": secret, "info": info})))
}

async fn revoke_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<TokenInfo>, ApiError> {
    let c = auth::caller(&s, &headers)?;
    let id = TokenId(id);
    let t = read_db(&s, move |conn| Ok(secrets::token(conn, id)?)).await?;
    if t.user != c.user.id && c.role() != Role::Admin {
        // Someone else's token: as if it did not exist.
        return Err(ApiError::NotFound(format!("no token {id}")));
    }
    Ok(Json(
        write_db(&s, move |conn| {
            Ok(secrets::revoke(conn, id, UnixMillis::now())?)
        })
        .await?,
    ))
}

async fn list_users(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<User>>, ApiError> {
    auth::oversight(&s, &headers)?;
    Ok(Json(read_db(&s, |c| Ok(user_store::list(c)?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    role: Role,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    inspector: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

async fn create_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    auth::admin(&s, &headers)?;
    let Json(u) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected {{\"name\", \"role\": admin|supervisor|inspector|auditor[, \"department\"][, \"inspector\"][, \"password\"]}}"
        ))
    })?;
    Ok(Json(
        write_db(&s, move |c| {
            let now = UnixMillis::now();
            let tx = c.transaction()?;
            let user = user_store::create_in(
                &tx,
                &NewUser {
                    name: &u.name,
                    role: Some(u.role),
                    department: u.department.as_deref(),
                    inspector: u.inspector.as_deref(),
                    password: None,
                },
                now,
            )?;
            // The admin chose it, so it is temporary (see `set_temporary_password`).
            if let Some(pw) = &u.password {
                user_store::set_password_in(&tx, user.id, pw, true, now)?;
            }
            let user = user_store::get(&tx, user.id)?;
            tx.commit()?;
            Ok(user)
        })
        .await?,
    ))
}

async fn set_active(
    s: AppState,
    headers: HeaderMap,
    id: i64,
    active: bool,
) -> Result<Json<User>, ApiError> {
    auth::admin(&s, &headers)?;
    Ok(Json(
        write_db(&s, move |c| {
            Ok(user_store::set_active(
                c,
                UserId(id),
                active,
                UnixMillis::now(),
            )?)
        })
        .await?,
    ))
}

async fn disable_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    set_active(s, headers, id, false).await
}

async fn enable_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    set_active(s, headers, id, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = auth::caller(&s, &headers)?;
    if c.user.id.0 != id && c.role() != Role::Admin {
        return Err(ApiError::Forbidden(
            "you can set your own password; the admin sets others'".into(),
        ));
    }
    let Json(p) =
        body.map_err(|e| ApiError::BadRequest(format!("{e}; expected {{\"password\": TEXT}}")))?;
    let own = c.user.id.0 == id;
    write_db(&s, move |c| {
        // A password the admin sets for someone else is temporary: only its owner's own
        // choice makes a session that can act.
        let set = if own {
            user_store::set_password
        } else {
            user_store::set_temporary_password
        };
        Ok(set(c, UserId(id), &p.password, UnixMillis::now())?)
    })
    .await?;
    Ok(Json(json!({"user": id, "sessions_ended": true})))
}

/// The console login of inspector `id`: their user (created and linked if there is none) gets
/// a new temporary password, shown once. The inspector logs in with it and must choose their
/// own before doing anything, so the admin who asked cannot act as them unseen.
async fn inspector_login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::admin(&s, &headers)?;
    let id = InspectorId::new(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let inspector = id.to_string();
    let password = crate::users::random_secret()[..20].to_owned();
    let pw = password.clone();
    let user = write_db(&s, move |c| {
        let now = UnixMillis::now();
        let tx = c.transaction()?;
        let active: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM registry_inspectors WHERE id = $1 AND active = 1)",
            args![inspector],
            |r| r.get(0),
        )?;
        if !active {
            return Err(ApiError::NotFound(format!(
                "no active inspector {inspector} in the inspector library"
            )));
        }
        let user = user_store::for_inspector(&tx, &inspector, now)?;
        user_store::set_password_in(&tx, user.id, &pw, true, now)?;
        tx.commit()?;
        Ok(user)
    })
    .await?;
    Ok(Json(json!({
        "inspector": id.to_string(),
        "user": user.id,
        "name": user.name,
        "password": password,
        "temporary": true,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_httponly_strict_and_secure_when_configured() {
        let plain = session_cookie("abc", 60, false);
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("spotcheck_session=abc;"), "{plain}");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"] {
            assert!(plain.contains(flag), "{plain}");
        }
        assert!(!plain.contains("Secure"), "{plain}");
        let secure = session_cookie("abc", 60, true);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}

//! Who is calling, and what they may do. Public routes need nobody.
//!
//! A caller is a [`User`] (see [`crate::users`]) who proves it with either
//! - an API token, `Authorization: Bearer spt_…` (named, expiring, revocable), or
//! - the console's session cookie ([`SESSION_COOKIE`]: HttpOnly, SameSite=Strict, `Secure`
//!   when configured) from `POST /api/v1/session`. A write (any method but GET, HEAD and
//!   OPTIONS) with the cookie must also carry the session's synchronizer token in
//!   [`CSRF_HEADER`]; bearer requests need none, since a browser never adds them by itself.
//!
//! [`layer`] runs around every request: it notes whether the method writes, and
//! [`caller`] records the authenticated user there, so that [`acting_user`] can name them in
//! the audit log of whatever the handler writes. An auditor is refused every write here, and
//! an inspector whose inspector is not active in the registry is refused everything.
//!
//! The lookups are single indexed reads made on the request's thread (SQLite), or off the
//! async runtime where the PostgreSQL client needs it.

use std::cell::RefCell;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use spotcheck_protocol::UnixMillis;

use super::{ApiError, AppState};
use crate::audit::Actor;
use crate::store;
use crate::store::db::Sql;
use crate::tasks::Task;
use crate::users::{self, secrets, Role, TokenId, User};

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "spotcheck_session";

/// The header that carries a session's synchronizer token on writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How console sessions are made.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// Mark the cookie `Secure` (the console is served over TLS).
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub ttl: Duration,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            secure_cookies: false,
            ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API token.
    Token(TokenId),
    /// The console's session cookie.
    Session,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub user: User,
    /// With what.
    pub via: Via,
}

impl Caller {
    /// The role.
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// How the audit log names them: `user:ID`.
    pub fn actor(&self) -> String {
        self.user.id.actor()
    }

    /// Whether they may see `task`: admin and auditor all, a supervisor their department's,
    /// an inspector the ones assigned to them.
    pub fn sees(&self, task: &Task) -> bool {
        match self.user.role {
            Role::Admin | Role::Auditor => true,
            Role::Supervisor => self.user.department.as_deref() == Some(task.department.as_str()),
            Role::Inspector => self
                .user
                .inspector
                .as_ref()
                .is_some_and(|i| task.inspectors.iter().any(|t| t.as_str() == i)),
        }
    }

    /// Whether they manage `task` (acknowledge, resolve, assign, publish): the admin, or a
    /// supervisor of its department.
    pub fn manages(&self, task: &Task) -> bool {
        match self.user.role {
            Role::Admin => true,
            Role::Supervisor => self.sees(task),
            Role::Inspector | Role::Auditor => false,
        }
    }

    /// The inspector they are, if they are one.
    pub fn inspector(&self) -> Option<&str> {
        match self.user.role {
            Role::Inspector => self.user.inspector.as_deref(),
            _ => None,
        }
    }
}

struct RequestCtx {
    writes: bool,
    /// `METHOD /path`, for what a session with a temporary password may do.
    route: String,
    actor: RefCell<Option<Actor>>,
}

tokio::task_local! {
    static REQUEST: RequestCtx;
}

/// The middleware around every route (see the module docs).
pub async fn layer(req: Request, next: Next) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let ctx = RequestCtx {
        writes,
        route: format!("{} {}", req.method(), req.uri().path()),
        actor: RefCell::new(None),
    };
    REQUEST.scope(ctx, next.run(req)).await
}

/// Whether this request's `METHOD /path` passes `f` (outside [`layer`]: no).
fn route_is(f: impl FnOnce(&str) -> bool) -> bool {
    REQUEST.try_with(|r| f(&r.route)).unwrap_or(false)
}

/// Writes that change only the caller's own account (their password, their tokens, their
/// session), which even the read-only auditor makes.
fn own_account(user: users::UserId) -> bool {
    let password = format!("PUT /api/v1/users/{}/password", user.0);
    route_is(|r| {
        r == password
            || r == "POST /api/v1/tokens"
            || r == "DELETE /api/v1/session"
            || r.starts_with("DELETE /api/v1/tokens/")
    })
}

/// Whether this request writes (outside [`layer`]: assume it does).
fn writes() -> bool {
    REQUEST.try_with(|r| r.writes).unwrap_or(true)
}

/// The authenticated user of this request (and the token they used) as the audit log names
/// them, for a write.
pub fn acting_user() -> Result<Actor, ApiError> {
    REQUEST
        .try_with(|r| r.actor.borrow().clone())
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::Internal("a write without an authenticated caller".into()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without an early exit, so timing does not reveal a matching prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y))
        == 0
}

/// The caller, or why not: 401 without valid credentials; 403 for a cookie write without
/// the CSRF token, an auditor's write, or an inspector who is no longer active.
pub fn caller(s: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let now = UnixMillis::now();
    let access = store::access::of_url(&s.store);
    let postgres = matches!(access.url(), store::db::DbUrl::Postgres(_));
    let (proof, inspector_active) = store::db::off_the_runtime(postgres, || {
        access.read_db(|conn| lookup(conn, headers, now))
    })??;
    identify(proof, inspector_active, headers)
}

/// What the store says of the credential a request carries.
enum Proof {
    /// A live API token of an active user.
    Token(User, TokenId),
    /// A live console session of an active user.
    Session(User, users::Session),
}

/// The store's part of [`caller`]: the user behind the token or cookie, and for an inspector
/// whether their inspector is active in the registry.
fn lookup(
    conn: &store::db::Conn,
    headers: &HeaderMap,
    now: UnixMillis,
) -> Result<(Proof, Option<bool>), ApiError> {
    let proof = if let Some(token) = bearer(headers) {
        let (user, id) = secrets::authenticate(conn, token, now)
            .map_err(user_error)?
            .ok_or(ApiError::Unauthorized)?;
        Proof::Token(user, id)
    } else if let Some(secret) = cookie(headers, SESSION_COOKIE) {
        let (user, session) = secrets::session(conn, secret, now)
            .map_err(user_error)?
            .ok_or(ApiError::Unauthorized)?;
        Proof::Session(user, session)
    } else {
        return Err(ApiError::Unauthorized);
    };
    let user = match &proof {
        Proof::Token(u, _) | Proof::Session(u, _) => u,
    };
    let inspector_active = match (user.role, &user.inspector) {
        (Role::Inspector, Some(i)) => Some(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM registry_inspectors WHERE id = $1 AND active = 1)",
            store::db::args![i],
            |r| r.get::<bool>(0),
        )?),
        _ => None,
    };
    Ok((proof, inspector_active))
}

/// The request's part of [`caller`]: what this request may do with that proof; records the
/// caller for the audit log.
fn identify(
    proof: Proof,
    inspector_active: Option<bool>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let caller = match proof {
        Proof::Token(user, id) => Caller {
            user,
            via: Via::Token(id),
        },
        Proof::Session(user, session) => {
            if writes() {
                let given = headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !same(given.as_bytes(), session.csrf_token.as_bytes()) {
                    return Err(ApiError::Forbidden(
                        "a write with the session cookie needs the session's CSRF token in the X-CSRF-Token header (GET /api/v1/session gives it)".into(),
                    ));
                }
            }
            if user.must_change_password {
                let own = format!("PUT /api/v1/users/{}/password", user.id.0);
                let allowed = route_is(|r| {
                    r == own || r == "GET /api/v1/session" || r == "DELETE /api/v1/session"
                });
                if !allowed {
                    return Err(ApiError::Forbidden(format!(
                        "your password was set by the admin: choose your own first ({own} with {{\"password\": TEXT}}), then log in again"
                    )));
                }
            }
            Caller {
                user,
                via: Via::Session,
            }
        }
    };
    if let (Some(i), Some(false)) = (caller.inspector(), inspector_active) {
        return Err(ApiError::Forbidden(format!(
            "inspector {i} is not active in the inspector library; ask the bureau"
        )));
    }
    if writes() && caller.role() == Role::Auditor && !own_account(caller.user.id) {
        return Err(ApiError::Forbidden(
            "the auditor role is read-only: it can read everything and change nothing".into(),
        ));
    }
    let actor = Actor {
        by: caller.actor(),
        token: match caller.via {
            Via::Token(id) => Some(id.0),
            Via::Session => None,
        },
    };
    let _ = REQUEST.try_with(|r| *r.actor.borrow_mut() = Some(actor));
    Ok(caller)
}

/// The caller if their role is one of `roles`, else 403 naming who may.
pub fn one_of(s: &AppState, headers: &HeaderMap, roles: &[Role]) -> Result<Caller, ApiError> {
    let c = caller(s, headers)?;
    if roles.contains(&c.role()) {
        Ok(c)
    } else {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "this endpoint is for the role(s) {}; you are {}",
            names.join(", "),
            c.role()
        )))
    }
}

/// The admin only.
pub fn admin(s: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    one_of(s, headers, &[Role::Admin])
}

/// The bureau's staff, for data beyond tasks (agents, readings, the registry, plans): admin,
/// auditor, supervisors.
pub fn staff(s: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    one_of(s, headers, &[Role::Admin, Role::Auditor, Role::Supervisor])
}

/// Oversight: the audit log and the full draw records (admin and auditor).
pub fn oversight(s: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    one_of(s, headers, &[Role::Admin, Role::Auditor])
}

/// Maps the users module's errors to the API's.
pub fn user_error(e: users::UserError) -> ApiError {
    match e {
        users::UserError::Invalid(_) => ApiError::BadRequest(e.to_string()),
        users::UserError::NotFound(_) => ApiError::NotFound(e.to_string()),
        users::UserError::Conflict(_) => ApiError::Conflict(e.to_string()),
        users::UserError::Hash(_) | users::UserError::Db(_) | users::UserError::Audit(_) => {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<users::UserError> for ApiError {
    fn from(e: users::UserError) -> Self {
        user_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::off_the_runtime;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; spotcheck_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    /// What the synchronous PostgreSQL client does: a runtime of its own, blocked on.
    fn own_runtime() -> u32 {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { 7 })
    }

    #[test]
    fn a_lookup_that_blocks_on_a_runtime_of_its_own_runs_from_either_kind_of_runtime() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            current.block_on(async { off_the_runtime(true, own_runtime) }),
            7
        );
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let got = multi.block_on(async {
            tokio::spawn(async { off_the_runtime(true, own_runtime) })
                .await
                .unwrap()
        });
        assert_eq!(got, 7);
        // Outside any runtime it simply runs.
        assert_eq!(off_the_runtime(true, own_runtime), 7);
    }

    #[test]
    fn comparison_needs_equal_length_and_bytes() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}

//! API tokens and console sessions. Both are random 256-bit secrets handed out once and
//! stored only as their SHA-256; both expire. Tokens are named and revocable; a session ends
//! at logout, at its expiry, or when its user is disabled or changes password.

use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use super::store::{self, User};
use super::{random_secret, secret_hash, UserError, UserId};
use crate::audit::{self, EntryKind};
use crate::store::db::{args, Conn, DbError, Row, Sql};

/// What every API token starts with, so that one found in a log or a paste is recognisable.
pub const TOKEN_PREFIX: &str = "spt_";

/// The longest lifetime a token can be given.
pub const MAX_TOKEN_DAYS: i64 = 3650;

/// A token's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(pub i64);

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Row id.
    pub id: TokenId,
    /// Whose.
    pub user: UserId,
    /// What it is for.
    pub name: String,
    /// When issued, Unix ms.
    pub created_ms: i64,
    /// When it stops working, Unix ms.
    pub expires_ms: i64,
    /// When revoked, if it was.
    pub revoked_ms: Option<i64>,
    /// Who issued it (`user:ID`, `cli`, `system`).
    pub created_by: String,
}

fn token_row(r: &Row<'_>) -> Result<TokenInfo, DbError> {
    Ok(TokenInfo {
        id: TokenId(r.get(0)?),
        user: UserId(r.get(1)?),
        name: r.get(2)?,
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
        revoked_ms: r.get(5)?,
        created_by: r.get(6)?,
    })
}

/// `user` is quoted: a reserved word in PostgreSQL (SQLite accepts the quotes too).
const TOKEN_COLUMNS: &str = "id, \"user\", name, created_ms, expires_ms, revoked_ms, created_by";

/// Whether a token with this secret was ever stored.
pub fn known(conn: &(impl Sql + ?Sized), secret: &str) -> Result<bool, UserError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE hash = $1)",
        args![secret_hash(secret)],
        |r| r.get(0),
    )?)
}

fn valid_token_name(name: &str) -> Result<(), UserError> {
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(UserError::Invalid(
            "a token needs a name (what it is for): 1 to 100 characters, no control characters"
                .into(),
        ));
    }
    Ok(())
}

/// Issues a new token for `user` valid for `days`, audited (`token_issued`). The secret is
/// returned once and never stored.
pub fn issue(
    tx: &(impl Sql + ?Sized),
    user: UserId,
    name: &str,
    days: i64,
    now: UnixMillis,
) -> Result<(TokenInfo, String), UserError> {
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(UserError::Invalid(format!(
            "a token lives 1 to {MAX_TOKEN_DAYS} days, not {days}"
        )));
    }
    let owner = store::get(tx, user)?;
    if !owner.active {
        return Err(UserError::Conflict(format!(
            "user {} is disabled; enable it before issuing tokens",
            owner.name
        )));
    }
    let secret = format!("{TOKEN_PREFIX}{}", random_secret());
    let info = import_token(tx, user, name, &secret, now.0 + days * 86_400_000, now)?;
    Ok((info, secret))
}

/// Stores `secret` as a token of `user` (the bootstrap's `admin.token`), audited.
pub fn import_token(
    tx: &(impl Sql + ?Sized),
    user: UserId,
    name: &str,
    secret: &str,
    expires_ms: i64,
    now: UnixMillis,
) -> Result<TokenInfo, UserError> {
    valid_token_name(name)?;
    let by = audit::current_actor();
    let id = TokenId(tx.query_row(
        "INSERT INTO api_tokens (\"user\", name, hash, created_ms, expires_ms, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        args![user.0, name, secret_hash(secret), now.0, expires_ms, by],
        |r| r.get(0),
    )?);
    audit::append(
        tx,
        EntryKind::TokenIssued,
        &format!("token:{id}"),
        &json!({"token": id.0, "user": user.0, "expires_ms": expires_ms}),
        now,
    )?;
    token(tx, id)
}

/// One token.
pub fn token(conn: &(impl Sql + ?Sized), id: TokenId) -> Result<TokenInfo, UserError> {
    conn.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
        args![id.0],
        token_row,
    )?
    .ok_or_else(|| UserError::NotFound(format!("no token {id}")))
}

/// Tokens, newest first: of one user, or of everyone.
pub fn tokens(
    conn: &(impl Sql + ?Sized),
    user: Option<UserId>,
) -> Result<Vec<TokenInfo>, UserError> {
    Ok(conn.query(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens
             WHERE CAST($1 AS BIGINT) IS NULL OR \"user\" = $1 ORDER BY id DESC"
        ),
        args![user.map(|u| u.0)],
        token_row,
    )?)
}

/// Revokes a token, audited (`token_revoked`). Revoking a revoked token is a conflict.
pub fn revoke(conn: &Conn, id: TokenId, now: UnixMillis) -> Result<TokenInfo, UserError> {
    let tx = conn.transaction()?;
    let t = token(&tx, id)?;
    if t.revoked_ms.is_some() {
        return Err(UserError::Conflict(format!(
            "token {id} is already revoked"
        )));
    }
    revoke_in(&tx, id, now)?;
    let t = token(&tx, id)?;
    tx.commit()?;
    Ok(t)
}

fn revoke_in(tx: &(impl Sql + ?Sized), id: TokenId, now: UnixMillis) -> Result<(), UserError> {
    tx.execute(
        "UPDATE api_tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
        args![id.0, now.0],
    )?;
    audit::append(
        tx,
        EntryKind::TokenRevoked,
        &format!("token:{id}"),
        &json!({"token": id.0}),
        now,
    )?;
    Ok(())
}

/// Revokes every live token of `user` (audited one by one); returns their ids.
pub fn revoke_all_in(
    tx: &(impl Sql + ?Sized),
    user: UserId,
    now: UnixMillis,
) -> Result<Vec<i64>, UserError> {
    let ids: Vec<i64> = tx.query(
        "SELECT id FROM api_tokens WHERE \"user\" = $1 AND revoked_ms IS NULL ORDER BY id",
        args![user.0],
        |r| r.get(0),
    )?;
    for &id in &ids {
        revoke_in(tx, TokenId(id), now)?;
    }
    Ok(ids)
}

/// The user and token behind a bearer secret: known, not revoked, not expired, user active.
pub fn authenticate(
    conn: &(impl Sql + ?Sized),
    secret: &str,
    now: UnixMillis,
) -> Result<Option<(User, TokenId)>, UserError> {
    let found: Option<(i64, i64)> = conn.query_opt(
        "SELECT t.id, t.\"user\" FROM api_tokens t JOIN users u ON u.id = t.\"user\"
         WHERE t.hash = $1 AND t.revoked_ms IS NULL AND t.expires_ms > $2 AND u.active = 1",
        args![secret_hash(secret), now.0],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match found {
        Some((token, user)) => Ok(Some((store::get(conn, UserId(user))?, TokenId(token)))),
        None => Ok(None),
    }
}

/// A console session, as its holder sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// The synchronizer token the console sends as `X-CSRF-Token` with every write.
    pub csrf_token: String,
    /// When it ends, Unix ms.
    pub expires_ms: i64,
}

/// Opens a session for `user` (a successful login), audited (`session_opened`); returns the
/// cookie secret and the session. Expired sessions are purged on the way.
pub fn open_session(
    conn: &Conn,
    user: UserId,
    ttl_ms: i64,
    now: UnixMillis,
) -> Result<(String, Session), UserError> {
    let secret = random_secret();
    let session = Session {
        csrf_token: random_secret(),
        expires_ms: now.0 + ttl_ms,
    };
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM sessions WHERE expires_ms <= $1", args![now.0])?;
    tx.execute(
        "INSERT INTO sessions (hash, \"user\", csrf, created_ms, expires_ms)
         VALUES ($1, $2, $3, $4, $5)",
        args![
            secret_hash(&secret),
            user.0,
            session.csrf_token,
            now.0,
            session.expires_ms
        ],
    )?;
    audit::append(
        &tx,
        EntryKind::SessionOpened,
        &user.actor(),
        &json!({"user": user.0, "by": user.actor(), "expires_ms": session.expires_ms}),
        now,
    )?;
    tx.commit()?;
    Ok((secret, session))
}

/// The user and session behind a cookie secret: not expired, user active.
pub fn session(
    conn: &(impl Sql + ?Sized),
    secret: &str,
    now: UnixMillis,
) -> Result<Option<(User, Session)>, UserError> {
    let found: Option<(i64, String, i64)> = conn.query_opt(
        "SELECT s.\"user\", s.csrf, s.expires_ms FROM sessions s JOIN users u ON u.id = s.\"user\"
         WHERE s.hash = $1 AND s.expires_ms > $2 AND u.active = 1",
        args![secret_hash(secret), now.0],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    match found {
        Some((user, csrf_token, expires_ms)) => Ok(Some((
            store::get(conn, UserId(user))?,
            Session {
                csrf_token,
                expires_ms,
            },
        ))),
        None => Ok(None),
    }
}

/// Ends the session with this cookie secret (logout), audited (`session_closed`). Returns
/// whether there was one.
pub fn close_session(conn: &Conn, secret: &str, now: UnixMillis) -> Result<bool, UserError> {
    let tx = conn.transaction()?;
    let user: Option<i64> = tx.query_opt(
        "SELECT \"user\" FROM sessions WHERE hash = $1",
        args![secret_hash(secret)],
        |r| r.get(0),
    )?;
    let Some(user) = user else {
        return Ok(false);
    };
    tx.execute(
        "DELETE FROM sessions WHERE hash = $1",
        args![secret_hash(secret)],
    )?;
    let user = UserId(user);
    audit::append(
        &tx,
        EntryKind::SessionClosed,
        &user.actor(),
        &json!({"user": user.0, "by": user.actor()}),
        now,
    )?;
    tx.commit()?;
    Ok(true)
}

/// Ends every session of `user`; returns how many.
pub fn end_sessions(tx: &(impl Sql + ?Sized), user: UserId) -> Result<usize, UserError> {
    let n = tx.execute("DELETE FROM sessions WHERE \"user\" = $1", args![user.0])?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

//! People: named users with roles, their console sessions and API tokens.
//!
//! - [`Role`]: admin; supervisor of one department; inspector linked to an inspector of the
//!   registry; auditor (read-only). The public needs no user.
//! - [`store`]: users in the store (`users`, SQLite or PostgreSQL), passwords hashed with argon2 ([`password`]).
//! - [`secrets`]: API tokens (`api_tokens`) and console sessions (`sessions`): random
//!   256-bit secrets, stored only as their SHA-256, each with an expiry; tokens are named and
//!   revocable, sessions end at logout.
//! - [`limit`]: the login rate limit, per user name and per client address, in bounded memory.
//! - [`cli`]: `spotcheck-collector users …` and `tokens …` on a data directory or a store URL.
//!
//! Who may do what is decided at the HTTP boundary (`api::auth`); every write names its user
//! in the audit log as `user:ID` (ids, never names: the log is handed out).

pub mod cli;
pub mod limit;
pub mod password;
pub mod secrets;
pub mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use secrets::{Session, TokenId, TokenInfo};
pub use store::{bootstrap, User};

/// A user's row id; `user:ID` in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl UserId {
    /// How the audit log names this user: `user:ID`.
    pub fn actor(self) -> String {
        format!("user:{}", self.0)
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The bureau: manages everything, but cannot record an inspector's decision.
    Admin,
    /// Sees and acts on one department's tasks.
    Supervisor,
    /// Sees and decides only the tasks assigned to their inspector.
    Inspector,
    /// Reads everything (the audit log and full draw records included); writes nothing.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Supervisor,
        Role::Inspector,
        Role::Auditor,
    ];

    /// The stable code, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Inspector => "inspector",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UserError;
    fn from_str(s: &str) -> Result<Role, UserError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                UserError::Invalid(format!(
                    "unknown role {s:?}; use admin, supervisor, inspector or auditor"
                ))
            })
    }
}

/// Why a user, token or session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A field is wrong (with what to do instead).
    #[error("{0}")]
    Invalid(String),
    /// No such user or token.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// Hashing the password failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The store failed (either engine).
    #[error("users: database: {0}")]
    Db(#[from] crate::store::db::DbError),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// SHA-256 of a secret, lowercase hex: how tokens and sessions are stored (a random 256-bit
/// secret needs no slow hash).
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A new random 256-bit secret, lowercase hex.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

//! Users in the store (SQLite or PostgreSQL): create, read, change password, enable and
//! disable; the bootstrap admin. Functions named `…_in` and those taking `&impl Sql` run inside
//! the caller's transaction; the others open their own write transaction on a [`Conn`].

use std::path::Path;

use serde::Serialize;
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use super::{password, secrets, Role, UserError, UserId};
use crate::audit::{self, EntryKind};
use crate::store::db::{args, Conn, DbError, Row, Sql};

/// A user, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// A supervisor's department.
    pub department: Option<String>,
    /// An inspector user's inspector id in the registry.
    pub inspector: Option<String>,
    /// Disabled users cannot log in and their tokens do not work.
    pub active: bool,
    /// Whether a password is set (console login).
    pub has_password: bool,
    /// The password was set by someone else (the admin): a session with it can only choose
    /// the user's own password.
    pub must_change_password: bool,
    /// When created, Unix ms.
    pub created_ms: i64,
}

/// What a new user needs.
#[derive(Debug, Clone, Default)]
pub struct NewUser<'a> {
    /// Login name: 1–64 of `a-z 0-9 . _ -`.
    pub name: &'a str,
    /// Role.
    pub role: Option<Role>,
    /// A supervisor's department.
    pub department: Option<&'a str>,
    /// An inspector user's inspector id.
    pub inspector: Option<&'a str>,
    /// A password for console login; none: tokens only.
    pub password: Option<&'a str>,
}

const COLUMNS: &str = "id, name, role, department, inspector, active, password IS NOT NULL, \
     created_ms, password IS NOT NULL AND password_temporary = 1";

fn row(r: &Row<'_>) -> Result<User, DbError> {
    let role: String = r.get(2)?;
    Ok(User {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        role: role.parse().map_err(|e: UserError| DbError::Column {
            column: 2,
            reason: e.to_string(),
        })?,
        department: r.get(3)?,
        inspector: r.get(4)?,
        active: r.get(5)?,
        has_password: r.get(6)?,
        created_ms: r.get(7)?,
        must_change_password: r.get(8)?,
    })
}

fn valid_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "user name {name:?} is invalid: use 1 to 64 of a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

/// Creates a user, audited (`user_created`).
pub fn create(conn: &Conn, new: &NewUser<'_>, now: UnixMillis) -> Result<User, UserError> {
    let tx = conn.transaction()?;
    let user = create_in(&tx, new, now)?;
    tx.commit()?;
    Ok(user)
}

/// [`create`] inside the caller's transaction.
pub fn create_in(
    tx: &(impl Sql + ?Sized),
    new: &NewUser<'_>,
    now: UnixMillis,
) -> Result<User, UserError> {
    valid_name(new.name)?;
    let role = new.role.ok_or_else(|| {
        UserError::Invalid("give a role: admin, supervisor, inspector or auditor".into())
    })?;
    match (role, new.department, new.inspector) {
        (Role::Supervisor, Some(d), None) if !d.trim().is_empty() => {}
        (Role::Supervisor, _, _) => {
            return Err(UserError::Invalid(
                "a supervisor needs a department (and no inspector)".into(),
            ))
        }
        (Role::Inspector, None, Some(i)) => {
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM registry_inspectors WHERE id = $1)",
                args![i],
                |r| r.get(0),
            )?;
            if !known {
                return Err(UserError::NotFound(format!(
                    "no inspector {i} in the inspector library; import it first"
                )));
            }
        }
        (Role::Inspector, _, _) => {
            return Err(UserError::Invalid(
                "an inspector user needs the inspector id of the registry (and no department)"
                    .into(),
            ))
        }
        (_, None, None) => {}
        (r, _, _) => {
            return Err(UserError::Invalid(format!(
                "a user with role {r} has neither a department nor an inspector"
            )))
        }
    }
    let hash = new.password.map(password::hash).transpose()?;
    let taken: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE name = $1)",
        args![new.name],
        |r| r.get(0),
    )?;
    if taken {
        return Err(UserError::Conflict(format!(
            "a user named {} exists",
            new.name
        )));
    }
    if let Some(i) = new.inspector {
        let linked: Option<String> = tx.query_opt(
            "SELECT name FROM users WHERE inspector = $1",
            args![i],
            |r| r.get(0),
        )?;
        if let Some(other) = linked {
            return Err(UserError::Conflict(format!(
                "inspector {i} already has the user {other}"
            )));
        }
    }
    let id = UserId(tx.query_row(
        "INSERT INTO users (name, role, department, inspector, password, active, created_ms)
         VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING id",
        args![
            new.name,
            role.as_str(),
            new.department,
            new.inspector,
            hash,
            now.0
        ],
        |r| r.get(0),
    )?);
    audit::append(
        tx,
        EntryKind::UserCreated,
        &id.actor(),
        &json!({"user": id.0, "role": role.as_str(), "department": new.department, "inspector": new.inspector}),
        now,
    )?;
    get(tx, id)
}

/// One user.
pub fn get(conn: &(impl Sql + ?Sized), id: UserId) -> Result<User, UserError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
        args![id.0],
        row,
    )?
    .ok_or_else(|| UserError::NotFound(format!("no user {id}")))
}

/// The user with this login name.
pub fn by_name(conn: &(impl Sql + ?Sized), name: &str) -> Result<Option<User>, UserError> {
    Ok(conn.query_opt(
        &format!("SELECT {COLUMNS} FROM users WHERE name = $1"),
        args![name],
        row,
    )?)
}

/// Every user, by id.
pub fn list(conn: &(impl Sql + ?Sized)) -> Result<Vec<User>, UserError> {
    Ok(conn.query(
        &format!("SELECT {COLUMNS} FROM users ORDER BY id"),
        args![],
        row,
    )?)
}

/// The user named `name` if `password` is theirs and they are active.
pub fn check_password(
    conn: &(impl Sql + ?Sized),
    name: &str,
    pw: &str,
) -> Result<Option<User>, UserError> {
    let found: Option<(i64, Option<String>)> = conn.query_opt(
        "SELECT id, password FROM users WHERE name = $1 AND active = 1",
        args![name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match found {
        Some((id, Some(phc))) if password::verify(pw, &phc) => Ok(Some(get(conn, UserId(id))?)),
        Some(_) => Ok(None),
        None => {
            // As long as a real check, so that timing does not tell who exists.
            let _ = password::verify(pw, password::dummy());
            Ok(None)
        }
    }
}

/// Sets a user's own password (they chose it, or the operator did on the server), audited
/// (`user_changed`); ends their sessions.
pub fn set_password(conn: &Conn, id: UserId, pw: &str, now: UnixMillis) -> Result<(), UserError> {
    let tx = conn.transaction()?;
    set_password_in(&tx, id, pw, false, now)?;
    tx.commit()?;
    Ok(())
}

/// Sets a password that someone else chose for the user (the admin over the API): it logs in,
/// but its session may only choose the user's own password. So whoever set it cannot act as
/// the user without replacing the password, which is audited and locks the user out, so they
/// notice. Audited (`user_changed`, `"change":"temporary password"`); ends their sessions.
pub fn set_temporary_password(
    conn: &Conn,
    id: UserId,
    pw: &str,
    now: UnixMillis,
) -> Result<(), UserError> {
    let tx = conn.transaction()?;
    set_password_in(&tx, id, pw, true, now)?;
    tx.commit()?;
    Ok(())
}

/// [`set_password`] or [`set_temporary_password`] inside the caller's transaction.
pub fn set_password_in(
    tx: &(impl Sql + ?Sized),
    id: UserId,
    pw: &str,
    temporary: bool,
    now: UnixMillis,
) -> Result<(), UserError> {
    let hash = password::hash(pw)?;
    get(tx, id)?;
    tx.execute(
        "UPDATE users SET password = $2, password_temporary = $3 WHERE id = $1",
        args![id.0, hash, temporary],
    )?;
    let sessions = secrets::end_sessions(tx, id)?;
    let change = if temporary {
        "temporary password"
    } else {
        "password"
    };
    audit::append(
        tx,
        EntryKind::UserChanged,
        &id.actor(),
        &json!({"user": id.0, "change": change, "sessions_ended": sessions}),
        now,
    )?;
    Ok(())
}

/// Enables or disables a user, audited (`user_changed`). Disabling revokes every token and
/// ends every session; enabling revives none of them.
pub fn set_active(
    conn: &Conn,
    id: UserId,
    active: bool,
    now: UnixMillis,
) -> Result<User, UserError> {
    let tx = conn.transaction()?;
    get(&tx, id)?;
    tx.execute(
        "UPDATE users SET active = $2 WHERE id = $1",
        args![id.0, active],
    )?;
    let (tokens, sessions) = if active {
        (Vec::new(), 0)
    } else {
        (
            secrets::revoke_all_in(&tx, id, now)?,
            secrets::end_sessions(&tx, id)?,
        )
    };
    audit::append(
        &tx,
        EntryKind::UserChanged,
        &id.actor(),
        &json!({
            "user": id.0, "change": if active { "enabled" } else { "disabled" },
            "tokens_revoked": tokens, "sessions_ended": sessions,
        }),
        now,
    )?;
    let user = get(&tx, id)?;
    tx.commit()?;
    Ok(user)
}

/// The user of inspector `inspector`, created (role inspector, no password) if there is none.
pub fn for_inspector(
    tx: &(impl Sql + ?Sized),
    inspector: &str,
    now: UnixMillis,
) -> Result<User, UserError> {
    let found: Option<i64> = tx.query_opt(
        "SELECT id FROM users WHERE inspector = $1",
        args![inspector],
        |r| r.get(0),
    )?;
    match found {
        Some(id) => get(tx, UserId(id)),
        None => {
            let name = format!("inspector-{}", inspector.to_ascii_lowercase());
            create_in(
                tx,
                &NewUser {
                    name: &name,
                    role: Some(Role::Inspector),
                    inspector: Some(inspector),
                    ..NewUser::default()
                },
                now,
            )
        }
    }
}

/// How long the bootstrap admin token lives.
pub const BOOTSTRAP_TOKEN_DAYS: i64 = 3650;

/// First start: creates the user `admin` (role admin, no password) if there are no users, and
/// makes `DIR/admin.token` an API token of that user: an existing file (from before users
/// existed) is taken over, a missing one is written (mode 0600). Returns the token.
pub fn bootstrap(conn: &Conn, dir: &Path, now: UnixMillis) -> Result<String, BootstrapError> {
    let path = dir.join("admin.token");
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(BootstrapError::Io { path, source }),
    };
    let token =
        existing.unwrap_or_else(|| format!("{}{}", secrets::TOKEN_PREFIX, super::random_secret()));
    bootstrap_with(conn, &token, now)?;
    if !path.exists() {
        write_secret_file(&path, &token).map_err(|source| BootstrapError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(token)
}

/// Creates the user `admin` if there are no users and makes `token` one of its API tokens
/// (named `admin.token`), unless the token is already known.
pub fn bootstrap_with(conn: &Conn, token: &str, now: UnixMillis) -> Result<UserId, BootstrapError> {
    audit::acting_as("system", || -> Result<UserId, BootstrapError> {
        let tx = conn.transaction()?;
        let any: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM users)", args![], |r| r.get(0))?;
        if !any {
            create_in(
                &tx,
                &NewUser {
                    name: "admin",
                    role: Some(Role::Admin),
                    ..NewUser::default()
                },
                now,
            )?;
        }
        let admin = by_name(&tx, "admin")?
            .filter(|u| u.role == Role::Admin)
            .ok_or(BootstrapError::NoAdmin)?;
        if !secrets::known(&tx, token)? {
            secrets::import_token(
                &tx,
                admin.id,
                "admin.token",
                token,
                now.0 + BOOTSTRAP_TOKEN_DAYS * 86_400_000,
                now,
            )?;
        }
        tx.commit()?;
        Ok(admin.id)
    })
}

fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()
}

/// Why the bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The token file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Users exist but none is the admin the token file belongs to.
    #[error("there are users but no user named admin with role admin; create one with `spotcheck-collector users add admin --role admin`")]
    NoAdmin,
    /// The store refused.
    #[error(transparent)]
    User(#[from] UserError),
    /// The store failed (either engine).
    #[error("users: database: {0}")]
    Db(#[from] DbError),
}

//! Each department's liaison officers (联络员), with their history: a change of person is one
//! edit (replace the department's list), the old rows are kept with `until_ms`, and each
//! change is an audit entry (ids and counts only: the log carries no personal data).
//! Notification routes with `liaisons = true` address whoever is current.

use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use crate::audit::{self, EntryKind};
use crate::store::db::{args, Conn, DbError, Row, Sql};

/// One liaison officer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// Row id.
    pub id: i64,
    /// The department.
    pub department: String,
    /// Name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Mobile number.
    pub phone: Option<String>,
    /// In office since.
    pub since_ms: i64,
    /// Replaced or removed at (None: current).
    pub until_ms: Option<i64>,
}

/// One liaison officer as entered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// Name.
    pub name: String,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number.
    #[serde(default)]
    pub phone: Option<String>,
}

/// Why contacts were refused.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// Entered values that cannot work.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The store failed (either engine).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Every problem of a list at once.
pub fn check(list: &[NewContact]) -> Result<(), ContactError> {
    let mut problems = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let who = format!("contact {} ({:?})", i + 1, c.name);
        if c.name.trim().is_empty() {
            problems.push(format!("contact {}: empty name", i + 1));
        }
        if c.email.is_none() && c.phone.is_none() {
            problems.push(format!(
                "{who}: neither e-mail nor phone: no one could reach them"
            ));
        }
        if let Some(e) = &c.email {
            if e.parse::<lettre::message::Mailbox>().is_err() {
                problems.push(format!("{who}: {e:?} is not an e-mail address"));
            }
        }
        if let Some(p) = &c.phone {
            let digits = p.trim_start_matches('+');
            if digits.len() < 5 || !digits.chars().all(|c| c.is_ascii_digit() || c == '-') {
                problems.push(format!("{who}: {p:?} is not a phone number"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ContactError::Invalid(problems))
    }
}

fn row(r: &Row<'_>) -> Result<Contact, DbError> {
    Ok(Contact {
        id: r.get(0)?,
        department: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        phone: r.get(4)?,
        since_ms: r.get(5)?,
        until_ms: r.get(6)?,
    })
}

const COLUMNS: &str = "id, department, name, email, phone, since_ms, until_ms";

/// The current liaison officers of `department` (every department's with None).
pub fn current(
    conn: &(impl Sql + ?Sized),
    department: Option<&str>,
) -> Result<Vec<Contact>, DbError> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM contacts
             WHERE until_ms IS NULL AND (CAST($1 AS TEXT) IS NULL OR department = $1)
             ORDER BY department, id"
        ),
        args![department],
        row,
    )
}

/// Every row of `department`, past and current, oldest first.
pub fn history(conn: &(impl Sql + ?Sized), department: &str) -> Result<Vec<Contact>, DbError> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM contacts WHERE department = $1 ORDER BY since_ms, id"),
        args![department],
        row,
    )
}

/// Makes `list` the department's liaison officers: those unchanged (same name, e-mail and
/// phone) stay as they are, the others end now and the new ones start now; one audit entry.
pub fn replace(
    conn: &Conn,
    department: &str,
    list: &[NewContact],
    now: UnixMillis,
) -> Result<Vec<Contact>, ContactError> {
    check(list)?;
    let tx = conn.transaction()?;
    let before = current(&tx, Some(department))?;
    let same =
        |c: &Contact, n: &NewContact| c.name == n.name && c.email == n.email && c.phone == n.phone;
    let mut ended = Vec::new();
    for c in &before {
        if !list.iter().any(|n| same(c, n)) {
            tx.execute(
                "UPDATE contacts SET until_ms = $2 WHERE id = $1",
                args![c.id, now.0],
            )?;
            ended.push(c.id);
        }
    }
    let mut added = Vec::new();
    for n in list {
        let repeated = added.iter().any(|(_, m): &(i64, &NewContact)| *m == n);
        if repeated || before.iter().any(|c| same(c, n)) {
            continue;
        }
        let id: i64 = tx.query_row(
            "INSERT INTO contacts (department, name, email, phone, since_ms)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            args![department, n.name, n.email, n.phone, now.0],
            |r| r.get(0),
        )?;
        added.push((id, n));
    }
    if !ended.is_empty() || !added.is_empty() {
        audit::append(
            &tx,
            EntryKind::RegistryChanged,
            &format!("contacts:{department}"),
            &json!({"what": "liaison_officers", "department": department,
                    "ended": ended, "added": added.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                    "current": list.len()}),
            now,
        )?;
    }
    let after = current(&tx, Some(department))?;
    tx.commit()?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, email: &str) -> NewContact {
        NewContact {
            name: name.into(),
            email: Some(email.into()),
            phone: None,
        }
    }

    #[test]
    fn a_change_of_person_ends_the_old_row_keeps_history_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::db::DbUrl::Sqlite(dir.path().join("db"));
        let conn = crate::store::db::connect(&url, crate::store::db::Mode::Write).unwrap();
        let a = replace(
            &conn,
            "health",
            &[c("王芳", "wang@example.cn")],
            UnixMillis(1),
        )
        .unwrap();
        assert_eq!(a.len(), 1);
        let b = replace(
            &conn,
            "health",
            &[c("王芳", "wang@example.cn"), c("李强", "li@example.cn")],
            UnixMillis(2),
        )
        .unwrap();
        assert_eq!(b[0].id, a[0].id, "an unchanged officer keeps their row");
        let d = replace(
            &conn,
            "health",
            &[c("李强", "li@example.cn")],
            UnixMillis(3),
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        let h = history(&conn, "health").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].until_ms, Some(3));
        let entries: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE subject = 'contacts:health'",
                args![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(entries, 3);
        // No personal data in the log.
        let body: String = conn
            .query_row(
                "SELECT body FROM audit_log ORDER BY seq DESC LIMIT 1",
                args![],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !body.contains("李强") && !body.contains("example.cn"),
            "{body}"
        );
    }

    #[test]
    fn an_officer_nobody_can_reach_is_refused_with_the_reason() {
        let err = check(&[NewContact {
            name: "张三".into(),
            email: Some("not-an-address".into()),
            phone: None,
        }])
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an e-mail address"), "{err}");
    }
}

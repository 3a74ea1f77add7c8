//! The database URL: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB?…`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the store is. Its `Display` never shows a password.
#[derive(Clone)]
pub enum DbUrl {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database, as the client parsed it.
    Postgres(Box<::postgres::Config>),
}

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum DbUrlError {
    /// Neither scheme.
    #[error("database URL {0:?}: expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE")]
    Scheme(String),
    /// `sqlite://` with nothing after it.
    #[error("database URL {0:?}: sqlite:// needs a file path, e.g. sqlite:///var/lib/spotcheck/spotcheck.db")]
    NoPath(String),
    /// The PostgreSQL client could not parse it.
    #[error("database URL {url}: {reason}")]
    Postgres {
        /// The URL, password hidden.
        url: String,
        /// The client's reason.
        reason: String,
    },
}

impl FromStr for DbUrl {
    type Err = DbUrlError;

    fn from_str(s: &str) -> Result<DbUrl, DbUrlError> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbUrlError::NoPath(s.to_owned()));
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return ::postgres::Config::from_str(s)
                .map(|mut c| {
                    // As libpq does: a URL without a password takes `PGPASSWORD`, so the
                    // password need not be written into a configuration file.
                    if c.get_password().is_none() {
                        if let Ok(p) = std::env::var("PGPASSWORD") {
                            c.password(p);
                        }
                    }
                    DbUrl::Postgres(Box::new(c))
                })
                .map_err(|e| DbUrlError::Postgres {
                    url: redacted(s),
                    reason: e.to_string(),
                });
        }
        Err(DbUrlError::Scheme(redacted(s)))
    }
}

/// The URL with any password replaced by `***`.
fn redacted(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => s.to_owned(),
        // Unparseable: show only the scheme, the rest may hold a secret.
        Err(_) => match s.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_owned(),
        },
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DbUrl::Postgres(c) => {
                let hosts: Vec<String> = c
                    .get_hosts()
                    .iter()
                    .map(|h| match h {
                        ::postgres::config::Host::Tcp(h) => h.clone(),
                        ::postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .collect();
                let ports: Vec<String> = c.get_ports().iter().map(|p| p.to_string()).collect();
                write!(
                    f,
                    "postgres://{}@{}:{}/{}",
                    c.get_user().unwrap_or(""),
                    hosts.join(","),
                    ports.join(","),
                    c.get_dbname().unwrap_or("")
                )
            }
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_path() {
        let DbUrl::Sqlite(p) = "sqlite:///var/lib/s.db".parse().unwrap() else {
            panic!()
        };
        assert_eq!(p, PathBuf::from("/var/lib/s.db"));
        let DbUrl::Sqlite(p) = "sqlite://data/s.db".parse().unwrap() else {
            panic!()
        };
        assert_eq!(p, PathBuf::from("data/s.db"));
        assert!(matches!(
            "sqlite://".parse::<DbUrl>(),
            Err(DbUrlError::NoPath(_))
        ));
    }

    #[test]
    fn postgres_urls_parse_and_never_show_the_password() {
        let u: DbUrl = "postgres://spot:s3cret@db.example:6432/spotcheck"
            .parse()
            .unwrap();
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.example:6432/spotcheck"), "{shown}");
        let e = "mysql://root:hunter2@x/db".parse::<DbUrl>().unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = "postgres://u:hunter2@x:notaport/db"
            .parse::<DbUrl>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}

//! The active rule packs and holiday calendar, shared by ingest's rule engine (on the commit
//! thread) and the API (remote checks, pack updates).
//!
//! A new pack is parsed and validated completely before it replaces anything; if it fails,
//! the error names the file, line and reason and the previous pack stays active. Every pack
//! ever activated is kept in the `rule_packs` table under its content hash, so the hash in a
//! verdict always resolves to the text that produced it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::json;
use spotcheck_protocol::UnixMillis;

use crate::audit::{self, EntryKind};
use crate::rules::{Calendar, RulePack, RulePackError, RuleSet};
use crate::store::db::{args, Conn, DbError, Sql};

/// Why a rule pack was not activated.
#[derive(Debug, thiserror::Error)]
pub enum RulebookError {
    /// The pack is invalid; the previous one stays active.
    #[error("{0}; the previous pack stays active")]
    Invalid(#[from] RulePackError),
    /// A pack file could not be read.
    #[error("cannot read rule pack {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Recording the pack failed.
    #[error("recording the rule pack: {0}")]
    Db(#[from] DbError),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

/// The shared, replaceable rule set.
#[derive(Clone)]
pub struct Rulebook {
    inner: Arc<Inner>,
}

struct Inner {
    rules: RwLock<Arc<RuleSet>>,
    calendar: Arc<Calendar>,
    version: AtomicU64,
}

impl Rulebook {
    /// A rulebook with `rules` active.
    pub fn new(rules: RuleSet, calendar: Calendar) -> Rulebook {
        Rulebook {
            inner: Arc::new(Inner {
                rules: RwLock::new(Arc::new(rules)),
                calendar: Arc::new(calendar),
                version: AtomicU64::new(0),
            }),
        }
    }

    /// The built-in default packs, then every `*.toml` pack in `dir` (if given), each
    /// replacing the default of its domain; `dir/calendar-cn.toml`, if present, replaces the
    /// built-in holiday calendar (so a bureau adds a year without a new release). Any invalid
    /// file is an error naming it.
    pub fn load(dir: Option<&Path>) -> Result<Rulebook, RulebookError> {
        let mut rules = RuleSet::defaults();
        let mut calendar = Calendar::china_default();
        if let Some(dir) = dir {
            let read = |source| RulebookError::Read {
                path: dir.to_owned(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(read)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter(|p| p.file_name().is_some_and(|n| n != "calendar-cn.toml"))
                .collect();
            files.sort();
            for path in files {
                let pack = crate::rules::load_pack(&path)?;
                rules = rules.with_pack(pack);
            }
            let own = dir.join("calendar-cn.toml");
            if own.exists() {
                calendar = crate::rules::load_calendar(&own)?;
            }
        }
        Ok(Rulebook::new(rules, calendar))
    }

    /// The active rule set.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The holiday calendar.
    pub fn calendar(&self) -> Arc<Calendar> {
        self.inner.calendar.clone()
    }

    /// Bumped on every change, so the commit thread can notice one cheaply.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// Records every active pack in `rule_packs` (at start-up).
    pub fn record_active(&self, conn: &Conn, now: UnixMillis) -> Result<(), RulebookError> {
        let tx = conn.transaction()?;
        for pack in self.rules().packs() {
            // Every start-up loads the same packs: log only a text not seen before.
            record(&tx, pack, now, false)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes a parsed (so valid) pack its domain's active pack, recording and logging it.
    pub fn activate(
        &self,
        conn: &Conn,
        pack: RulePack,
        now: UnixMillis,
    ) -> Result<RulePack, RulebookError> {
        let tx = conn.transaction()?;
        record(&tx, &pack, now, true)?;
        tx.commit()?;
        let mut guard = self.inner.rules.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new((**guard).clone().with_pack(pack.clone()));
        self.inner.version.fetch_add(1, Ordering::AcqRel);
        Ok(pack)
    }
}

/// Keeps the pack's text under its hash and logs its activation: always, or (`always` false)
/// only when the text is new.
fn record(
    tx: &(impl Sql + ?Sized),
    pack: &RulePack,
    now: UnixMillis,
    always: bool,
) -> Result<(), RulebookError> {
    let inserted = tx.execute(
        "INSERT INTO rule_packs (hash, pack, domain, origin, body, loaded_ms)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING",
        args![
            pack.hash().as_str().to_owned(),
            pack.id.clone(),
            pack.domain.as_str(),
            pack.origin(),
            pack.text(),
            now.0
        ],
    )?;
    if always || inserted == 1 {
        audit::append(
            tx,
            EntryKind::RulePackActivated,
            &format!("rule_pack:{}", pack.hash().as_str()),
            &json!({"pack": pack.id.clone(), "hash": pack.hash().as_str().to_owned(), "domain": pack.domain.as_str(), "origin": pack.origin()}),
            now,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ChinaDay;

    #[test]
    fn a_calendar_in_rules_dir_replaces_the_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = crate::rules::calendar::DEFAULT_CALENDAR.to_owned();
        text.push_str(
            "\n[[year]]\nyear = 2027\nsource = \"a bureau's own entry\"\nconfirmed = false\nholidays = [{ name = \"元旦\", from = 2027-01-01, to = 2027-01-01 }]\n",
        );
        std::fs::write(dir.path().join("calendar-cn.toml"), text).unwrap();
        let book = Rulebook::load(Some(dir.path())).unwrap();
        let day = ChinaDay::from_ymd(2027, 1, 1).unwrap();
        assert!(book.calendar().covers(day));
        assert!(book.calendar().is_holiday(day));

        std::fs::write(
            dir.path().join("calendar-cn.toml"),
            "[calendar]\ntitle = \"t\"\nsources = []\n[[year]]\nyear = 2027\n",
        )
        .unwrap();
        let err = Rulebook::load(Some(dir.path())).err().unwrap().to_string();
        assert!(err.contains("calendar-cn.toml:"), "{err}");
    }
}

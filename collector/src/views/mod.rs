//! Read-only views behind the console: the task queue with filters, sorting, counts and
//! paging ([`queue`]); what lies behind a task, the readings and records that breached its
//! rule ([`evidence`]); an entity's feeds and event records with their breaches ([`entity`]);
//! what changed since a cursor, for live updates ([`changes`]).
//!
//! Nothing here writes; each function takes a read-only connection. Tasks are read through
//! `tasks::store::get`, so the task JSON the console gets is the API's.

pub mod changes;
pub mod entity;
pub mod evidence;
pub mod queue;

/// Who is asking, as far as which tasks they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every task (admin, auditor).
    All,
    /// One department's tasks (a supervisor).
    Department(String),
    /// The tasks assigned to one inspector.
    Inspector(String),
}

impl Scope {
    /// The SQL condition on `tasks t` and its argument, if any.
    fn condition(&self) -> Option<(&'static str, String)> {
        match self {
            Scope::All => None,
            Scope::Department(d) => Some(("t.department = ?", d.clone())),
            Scope::Inspector(i) => Some((
                "EXISTS (SELECT 1 FROM task_inspectors ti WHERE ti.task = t.id AND ti.inspector = ?)",
                i.clone(),
            )),
        }
    }
}

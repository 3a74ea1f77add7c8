//! Read-only views behind the console: the task queue with filters, sorting, counts and
//! paging ([`queue`]); what lies behind a task, the readings and records that breached its
//! rule ([`evidence`]); an entity's feeds and event records with their breaches ([`entity`]);
//! what changed since a cursor, for live updates ([`changes`]). The queue and the change
//! feed live in `tasks/` (they read the task tables) and are re-exported here.
//!
//! Nothing here writes; each function takes a read-only connection. Tasks are read through
//! `tasks::store::get`, so the task JSON the console gets is the API's.

pub mod entity;
pub mod evidence;

// The queue and the change feed read the task tables, whose SQL the tasks module owns.
pub use crate::tasks::{changes, queue, Scope};

//! Results and their publication (一公开): the categories publications use, the deadline for
//! publishing, marking results published (with an audit entry each), and the public feed.
//!
//! - [`category`]: the result categories, their labels and codes.
//! - [`deadline`]: publishing within N days of recording the result.
//! - [`store`]: [`publish`], [`pending_publication`] and [`public_results`] over `tasks`.
//! - [`render`]: the public feed as JSON or CSV, in the column order of
//!   `docs/publication.md`.
//!
//! Every function takes a connection of either engine (`store::db`: reads any `Sql`,
//! [`publish`] a `Conn`, as it opens its own write transaction) and returns [`ResultsError`],
//! so an HTTP handler can call it from `spawn_blocking` and map the error.

pub mod category;
pub mod deadline;
pub mod render;
pub mod store;

pub use category::{Category, UnknownCategory};
pub use deadline::{Deadline, Due};
pub use render::{to_csv, to_json, COLUMNS};
pub use store::{
    pending_publication, public_results, publish, PendingPublication, PublicFilter, PublicResult,
    Published, Refusal,
};

use crate::audit::AuditError;

/// Why a results operation failed. A failed [`publish`] changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The store failed.
    #[error("database: {0}")]
    Db(#[from] crate::store::db::DbError),
    /// The audit entry could not be written (nothing was published).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Some of the tasks cannot be published; none was.
    #[error("nothing was published: {}", refusals.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        /// Every task refused, with the reason.
        refusals: Vec<Refusal>,
    },
    /// A stored task's result is not a category (a bug or a hand-edited database).
    #[error("task {task}: stored result is corrupt: {reason}")]
    Corrupt {
        /// The task.
        task: i64,
        /// Why.
        reason: String,
    },
    /// Reading or changing a task failed.
    #[error(transparent)]
    Task(#[from] crate::tasks::TaskError),
    /// Rendering CSV failed.
    #[error("cannot render CSV: {0}")]
    Csv(#[from] csv::Error),
}

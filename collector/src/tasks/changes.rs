//! What changed in the tasks since a cursor, so that an open console learns of changes
//! without re-reading its lists: a [`Marker`] that moves with every task change, and the ids
//! of the tasks that changed after one.

use crate::store::db::{args, DbError, Sql};
use crate::tasks::TaskId;

/// Where the tasks stood: it differs after any task is created, changes status, gets a note
/// or a check, or has its inspectors changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marker {
    /// Newest `updated_ms` of any task.
    pub updated_ms: i64,
    /// Highest task id.
    pub task: i64,
    /// Highest note row.
    pub note: i64,
    /// Highest check id (a check's decision changes its task's status too).
    pub check: i64,
    /// Inspector assignments.
    pub assignments: i64,
}

/// The current marker.
pub fn marker(conn: &(impl Sql + ?Sized)) -> Result<Marker, DbError> {
    conn.query_row(
        "SELECT (SELECT coalesce(max(updated_ms), 0) FROM tasks),
                (SELECT coalesce(max(id), 0) FROM tasks),
                (SELECT coalesce(max(rowid), 0) FROM task_notes),
                (SELECT coalesce(max(id), 0) FROM checks),
                (SELECT count(*) FROM task_inspectors)",
        args![],
        |r| {
            Ok(Marker {
                updated_ms: r.get(0)?,
                task: r.get(1)?,
                note: r.get(2)?,
                check: r.get(3)?,
                assignments: r.get(4)?,
            })
        },
    )
}

/// At most this many changed tasks are reported at once; beyond, the console re-reads.
pub const MAX_CHANGED: u32 = 500;

/// Tasks that changed after `since` (by time, id, note or check), at most [`MAX_CHANGED`].
pub fn changed(conn: &(impl Sql + ?Sized), since: &Marker) -> Result<Vec<TaskId>, DbError> {
    conn.query(
        "SELECT id FROM tasks WHERE updated_ms > $1 OR id > $2
         UNION SELECT task FROM task_notes WHERE rowid > $3
         UNION SELECT task FROM checks WHERE id > $4
         ORDER BY 1 LIMIT $5",
        args![
            since.updated_ms,
            since.task,
            since.note,
            since.check,
            MAX_CHANGED
        ],
        |r| Ok(TaskId(r.get(0)?)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    #[test]
    fn a_status_change_or_a_note_moves_the_marker_and_names_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::db_path(dir.path());
        let conn = crate::store::open_for_writing(&db, Synchronous::Normal).unwrap();
        let insert = |id: i64, updated: i64| {
            conn.execute(
                "INSERT INTO tasks (id, kind, entity, department, item, window_start, window_end,
                 status, updated_ms) VALUES (?1, 'anomaly', 'E', 'd', 'i', 'x', 'x', 'open', ?2)",
                [id, updated],
            )
            .unwrap();
        };
        insert(1, 10);
        insert(2, 20);
        let m0 = marker(&conn).unwrap();
        assert_eq!(marker(&conn).unwrap(), m0, "nothing happened");
        assert!(changed(&conn, &m0).unwrap().is_empty());
        conn.execute(
            "UPDATE tasks SET status = 'acknowledged', updated_ms = 30 WHERE id = 1",
            [],
        )
        .unwrap();
        let m1 = marker(&conn).unwrap();
        assert_ne!(m1, m0);
        assert_eq!(changed(&conn, &m0).unwrap(), vec![TaskId(1)]);
        conn.execute(
            "INSERT INTO task_notes (task, ts_ms, kind, text) VALUES (2, 5, 'cleared', 'ok')",
            [],
        )
        .unwrap();
        assert_eq!(changed(&conn, &m1).unwrap(), vec![TaskId(2)]);
        insert(3, 1);
        assert_eq!(changed(&conn, &m1).unwrap(), vec![TaskId(2), TaskId(3)]);
    }
}

//! An entity file imported on two threads: one reads and checks the rows, the caller's writes
//! the valid ones into the open transaction (the connection stays on its thread). Each takes
//! about half the work of a million-row import (BENCHMARKS.md).
//!
//! The rows travel in chunks, each row's columns copied as text into the chunk's one buffer,
//! and the writer sends every chunk back emptied for the reader to fill again: neither thread
//! frees what the other allocated (an earlier try that handed over records one by one spent
//! the writer's time freeing the reader's allocations). The queue is bounded both ways.

use std::sync::mpsc;

use super::import::{Checker, ReadError, RecordRef, RowSource};
use super::model::EntityRef;
use super::store::{ImportError, RegistryStoreError, Writer};
use crate::store::db::Sql;

/// Rows per chunk.
const CHUNK_ROWS: usize = 1024;
/// Chunks on their way to the writer at most (and as many on their way back).
const IN_FLIGHT: usize = 4;

/// Valid entity rows, their columns' text in one buffer.
#[derive(Debug, Default)]
pub struct Chunk {
    text: String,
    /// Per row, where each of its columns ends in `text` (each starts where the one before
    /// ends, the first where the previous row's last ends).
    ends: Vec<[usize; COLUMNS]>,
    /// Scratch space for the agents' JSON array.
    json: Vec<u8>,
}

/// An entity row's columns, in the order of [`Writer::entity_columns`].
pub const COLUMNS: usize = 8;

impl Chunk {
    /// Appends `e`'s columns.
    pub fn push(&mut self, e: &EntityRef<'_>) {
        let columns = e.columns(&mut self.json);
        let mut ends = [0; COLUMNS];
        for (end, c) in ends.iter_mut().zip(columns) {
            self.text.push_str(c);
            *end = self.text.len();
        }
        self.ends.push(ends);
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each row's columns.
    pub fn rows(&self) -> impl Iterator<Item = [&str; COLUMNS]> {
        let mut start = 0;
        self.ends.iter().map(move |ends| {
            ends.map(|end| {
                let c = &self.text[start..end];
                start = end;
                c
            })
        })
    }

    /// Empties it, keeping its buffers.
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// Why the reading thread stopped early.
enum Stop {
    Read(ReadError),
    /// The writer failed and hung up.
    WriterGone,
}

impl From<ReadError> for Stop {
    fn from(e: ReadError) -> Stop {
        Stop::Read(e)
    }
}

/// Checks every row of `rows` on a second thread while this one writes the valid entities
/// with `writer`; after the first bad row nothing more is handed over (the caller rolls back).
pub fn import_entities<S: Sql + ?Sized>(
    rows: impl RowSource + Send,
    checker: &mut Checker<'_>,
    writer: &mut Writer<'_, S>,
) -> Result<(), ImportError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Chunk>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Chunk>(IN_FLIGHT);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(), Stop> {
            let mut chunk = Chunk::default();
            rows.each_row(|row| -> Result<(), Stop> {
                let record = checker.check_view(&row);
                if let (Some(RecordRef::Entity(e)), true) = (record, checker.is_clean()) {
                    chunk.push(&e);
                    if chunk.len() == CHUNK_ROWS {
                        let next = empty_rx.try_recv().unwrap_or_default();
                        full_tx
                            .send(std::mem::replace(&mut chunk, next))
                            .map_err(|_| Stop::WriterGone)?;
                    }
                }
                Ok(())
            })?;
            if checker.is_clean() && !chunk.is_empty() {
                full_tx.send(chunk).map_err(|_| Stop::WriterGone)?;
            }
            Ok(())
        });
        let mut written: Result<(), RegistryStoreError> = Ok(());
        for mut chunk in &full_rx {
            written = chunk.rows().try_for_each(|c| writer.entity_columns(c));
            if written.is_err() {
                break;
            }
            chunk.clear();
            // The reader makes a new chunk when none is back yet; one too many is dropped.
            let _ = empty_tx.try_send(chunk);
        }
        // A failed writer hangs up, which stops the reader at its next chunk.
        drop(full_rx);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        written?;
        match read {
            Ok(()) => Ok(()),
            Err(Stop::Read(e)) => Err(e.into()),
            Err(Stop::WriterGone) => unreachable!("the writer hangs up only when it failed"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::import::open_file;
    use crate::registry::model::Entity;
    use crate::registry::parse::Kind;
    use crate::registry::store::{entities, import, Imported};
    use crate::store::db::{connect, DbUrl, Mode};

    /// A valid entity row for number `n`, its agent `agent-{n}`.
    fn row(n: usize) -> String {
        let mut first17 = *b"91440300000000000";
        let mut v = n;
        for c in first17[8..].iter_mut().rev() {
            *c = crate::registry::credit_code::ALPHABET[v % 31];
            v /= 31;
        }
        let code =
            crate::registry::CreditCode::complete(std::str::from_utf8(&first17).unwrap()).unwrap();
        format!("{code},单位{n},pool,福田区,地址 {n},,B,agent-{n};spare-{n}")
    }

    #[test]
    fn a_file_of_several_chunks_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(
            &DbUrl::Sqlite(crate::store::db_path(dir.path())),
            Mode::Write,
        )
        .unwrap();
        let file = dir.path().join("entities.csv");
        let header = "code,name,domain,district,address,contact,risk,agents";
        let n = 2 * CHUNK_ROWS + 7;
        let cache = |c: &crate::store::db::Conn| -> i64 {
            c.as_sqlite()
                .unwrap()
                .query_row("PRAGMA cache_size", [], |r| r.get(0))
                .unwrap()
        };
        let cache_before = cache(&conn);
        let good: Vec<String> = (0..n).map(row).collect();

        // A bad row after two full chunks were handed over: nothing is written.
        let bad = format!(
            "{header}\n{}\n{}\n",
            good.join("\n"),
            row(1).replace("agent-1;", "AGENT-1;")
        );
        std::fs::write(&file, bad).unwrap();
        match import(Some(&conn), None, Kind::Entities, open_file(&file).unwrap()).unwrap() {
            Imported::Refused {
                rows,
                accepted,
                errors,
            } => {
                assert_eq!((rows, accepted), (n + 1, n));
                let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
                assert_eq!(got, [
                    format!("line {}: code: {} is already used on line 3; each must be unique", n + 2, row(1).split(',').next().unwrap()),
                    format!("line {}: agents: AGENT-1 is already used on line 3; each must be unique", n + 2),
                    format!("line {}: agents: spare-1 is already used on line 3; each must be unique", n + 2),
                ]);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(entities(&conn).unwrap().is_empty());

        std::fs::write(&file, format!("{header}\n{}\n", good.join("\n"))).unwrap();
        assert!(matches!(
            import(Some(&conn), None, Kind::Entities, open_file(&file).unwrap()).unwrap(),
            Imported::Rows(r) if r == n
        ));
        let stored = entities(&conn).unwrap();
        assert_eq!(stored.len(), n);
        let last = stored
            .iter()
            .find(|e| e.name == format!("单位{}", n - 1))
            .unwrap();
        assert_eq!(last.address, format!("地址 {}", n - 1));
        assert_eq!(
            last.agents.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            [format!("agent-{}", n - 1), format!("spare-{}", n - 1)]
        );
        assert_eq!(last.contact, "");
        assert_eq!(
            cache(&conn),
            cache_before,
            "the import's page cache is given back"
        );
    }

    #[test]
    fn a_chunk_gives_back_each_rows_columns_as_pushed() {
        let mut entity = Entity {
            code: crate::registry::CreditCode::parse("9144030071526726XG").unwrap(),
            name: "腾讯".into(),
            domain: spotcheck_protocol::Domain::Game,
            district: "南山区".into(),
            address: String::new(),
            contact: "张三".into(),
            risk: crate::registry::model::RiskClass::new("B").unwrap(),
            agents: vec![
                spotcheck_protocol::AgentId::new("game-agent-01").unwrap(),
                spotcheck_protocol::AgentId::new("x").unwrap(),
            ],
        };
        let mut chunk = Chunk::default();
        chunk.push(&(&entity).into());
        entity.agents.clear();
        entity.name = "华为".into();
        chunk.push(&(&entity).into());
        let rows: Vec<[&str; COLUMNS]> = chunk.rows().collect();
        assert_eq!(
            rows,
            [
                [
                    "9144030071526726XG",
                    "腾讯",
                    "game",
                    "南山区",
                    "",
                    "张三",
                    "B",
                    r#"["game-agent-01","x"]"#
                ],
                [
                    "9144030071526726XG",
                    "华为",
                    "game",
                    "南山区",
                    "",
                    "张三",
                    "B",
                    "[]"
                ]
            ]
        );
        chunk.clear();
        assert!(chunk.is_empty());
        assert_eq!(chunk.rows().count(), 0);
    }
}

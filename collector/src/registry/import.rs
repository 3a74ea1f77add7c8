//! Importing the libraries from CSV or JSON: read the file into raw rows that remember their
//! line, turn every row into a typed record (collecting every problem, not just the first),
//! and only then write — all rows in one transaction, or none.
//!
//! CSV: a header row with the field names; list fields (`agents`, `fields`, `conflicts`) are
//! separated by `;`. JSON: an array of objects with the same names; list fields may be arrays
//! or `;`-separated strings. Field names and formats: `docs/registry-import.md`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::credit_code;
pub use super::csv_file::{CsvFile, CsvRecord};
use super::model::{Entity, EntityRef, Inspector, Item, ListRef};
use super::parse::{self, FieldValue, Kind, RowFields};
use super::CreditCode;

mod json;
pub use json::{read_json, JsonRows};

/// One field's value as the file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    /// A scalar (JSON numbers and booleans are turned into their text).
    Text(String),
    /// A JSON array of scalars.
    List(Vec<String>),
}

/// A row of the file with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// 1-based line number.
    pub line: u64,
    /// Field name → value.
    pub fields: BTreeMap<String, RawValue>,
    /// What is wrong with the row's shape (a CSV row with the wrong number of fields).
    pub problems: Vec<RowError>,
}

/// One problem with one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line number in the file.
    pub line: u64,
    /// The field, or `-` for the row as a whole.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.reason)
    }
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// I/O.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The extension says neither CSV nor JSON.
    #[error("{0}: the file name must end in .csv or .json")]
    Format(String),
    /// Broken CSV or JSON syntax.
    #[error("{path}: line {line}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The line.
        line: u64,
        /// What the parser said.
        reason: String,
    },
}

/// The typed rows of one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Records {
    /// Items.
    Items(Vec<Item>),
    /// Entities.
    Entities(Vec<Entity>),
    /// Inspectors.
    Inspectors(Vec<Inspector>),
}

impl Records {
    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            Records::Items(v) => v.len(),
            Records::Entities(v) => v.len(),
            Records::Inspectors(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where an import's rows come from: each row handed to a function as it is read, so that a
/// reader may lend a row it reads in place (a file of a million rows is never held as rows).
/// Any iterator of [`RawRow`]s is one; so are a [`CsvFile`] and a file [`open_file`] opens.
pub trait RowSource {
    /// Hands every row to `each`, in order, until the end of the rows, a row that cannot be
    /// read (broken CSV or JSON), or an error of `each`.
    fn each_row<E: From<ReadError>>(
        self,
        each: impl FnMut(RowView<'_>) -> Result<(), E>,
    ) -> Result<(), E>;

    /// The rows as a file [`open_file`] opened (which can be read on another thread), or
    /// themselves.
    fn into_rows(self) -> Result<Rows, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

/// One row as a [`RowSource`] lends it.
pub enum RowView<'a> {
    /// A row read into its own map of fields.
    Raw(&'a RawRow),
    /// A CSV record read in place.
    Csv(CsvRecord<'a>),
}

impl<I: Iterator<Item = Result<RawRow, ReadError>>> RowSource for I {
    fn each_row<E: From<ReadError>>(
        self,
        mut each: impl FnMut(RowView<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for row in self {
            each(RowView::Raw(&row?))?;
        }
        Ok(())
    }
}

/// The rows of a file [`open_file`] opened.
pub enum Rows {
    /// A CSV file, streamed.
    Csv(CsvFile<std::io::BufReader<std::fs::File>>),
    /// A JSON file, held as text and parsed one element at a time.
    Json(JsonRows<String>),
}

impl RowSource for Rows {
    fn into_rows(self) -> Result<Rows, Self> {
        Ok(self)
    }

    fn each_row<E: From<ReadError>>(
        self,
        each: impl FnMut(RowView<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Rows::Csv(c) => c.each_row(each),
            Rows::Json(j) => j.each_row(each),
        }
    }
}

/// Reads `path` (by its extension) into raw rows.
pub fn read_file(path: &Path) -> Result<Vec<RawRow>, ReadError> {
    let mut rows = Vec::new();
    open_file(path)?.each_row(|row| {
        rows.push(match row {
            RowView::Raw(r) => r.clone(),
            RowView::Csv(r) => r.to_raw(),
        });
        Ok::<_, ReadError>(())
    })?;
    Ok(rows)
}

/// The rows of `path` (by its extension), read as they are asked for. A CSV file is streamed;
/// a JSON file is read whole (its text), its elements one by one.
pub fn open_file(path: &Path) -> Result<Rows, ReadError> {
    let name = path.display().to_string();
    let io = |source| ReadError::Io {
        path: name.clone(),
        source,
    };
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "csv" => {
            let file = std::fs::File::open(path).map_err(io)?;
            Ok(Rows::Csv(CsvFile::new(
                std::io::BufReader::with_capacity(1 << 16, file),
                name.clone(),
            )?))
        }
        Some(e) if e == "json" => {
            let text = std::fs::read_to_string(path).map_err(io)?;
            Ok(Rows::Json(JsonRows::new(text, name.clone())?))
        }
        _ => Err(ReadError::Format(name)),
    }
}

/// CSV with a header row.
pub fn read_csv(text: &str, name: &str) -> Result<Vec<RawRow>, ReadError> {
    CsvRows::new(text.as_bytes(), name.to_owned())?.collect()
}

/// CSV rows, streamed from a reader.
pub struct CsvRows<R: std::io::Read> {
    reader: csv::Reader<R>,
    headers: Vec<String>,
    record: csv::StringRecord,
    name: String,
    done: bool,
}

impl<R: std::io::Read> CsvRows<R> {
    /// Reads the header row.
    pub fn new(input: R, name: String) -> Result<CsvRows<R>, ReadError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(input);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| csv_syntax(&name, e))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_owned())
            .collect();
        Ok(CsvRows {
            reader,
            headers,
            record: csv::StringRecord::new(),
            name,
            done: false,
        })
    }
}

pub(super) fn csv_syntax(name: &str, e: csv::Error) -> ReadError {
    ReadError::Syntax {
        path: name.to_owned(),
        line: e.position().map_or(0, |p| p.line()),
        reason: e.to_string(),
    }
}

impl<R: std::io::Read> Iterator for CsvRows<R> {
    type Item = Result<RawRow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(csv_syntax(&self.name, e)));
            }
        }
        let record = &self.record;
        let line = record.position().map_or(0, |p| p.line());
        let fields = self
            .headers
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, v)| (h.clone(), RawValue::Text(v.to_owned())))
            .collect();
        let mut problems = Vec::new();
        if record.len() != self.headers.len() {
            problems.push(RowError {
                line,
                field: "-".into(),
                reason: format!(
                    "the row has {} fields but the header has {}: check for a missing or extra comma, or quote the value",
                    record.len(),
                    self.headers.len()
                ),
            });
        }
        Some(Ok(RawRow {
            line,
            fields,
            problems,
        }))
    }
}

/// One typed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An item.
    Item(Item),
    /// An entity.
    Entity(Entity),
    /// An inspector.
    Inspector(Inspector),
}

/// One typed row, an entity's text borrowed from the row it was read from.
#[derive(Debug, Clone)]
pub enum RecordRef<'a> {
    /// An item.
    Item(Item),
    /// An entity.
    Entity(EntityRef<'a>),
    /// An inspector.
    Inspector(Inspector),
}

impl RecordRef<'_> {
    /// The record, owned.
    pub fn to_record(self) -> Record {
        match self {
            RecordRef::Item(i) => Record::Item(i),
            RecordRef::Entity(e) => Record::Entity(e.to_entity()),
            RecordRef::Inspector(i) => Record::Inspector(i),
        }
    }
}

/// Checks rows one at a time: each row's own problems, keys used twice in the file (even on
/// rows that are otherwise invalid), and inspectors' conflicts against the entity library.
/// Holds only the keys seen, so a file of any length can be checked as it streams.
pub struct Checker<'k> {
    kind: Kind,
    known_entities: &'k HashSet<CreditCode>,
    /// Per key field: each value (trimmed, upper-cased) and the line it was first seen on.
    seen: Vec<(&'static str, Seen)>,
    errors: Vec<RowError>,
    rows: usize,
}

impl<'k> Checker<'k> {
    /// A checker for a file of `kind`. `known_entities` are the credit codes already in the
    /// library (inspectors' conflicts must name one of them; other kinds need none).
    pub fn new(kind: Kind, known_entities: &'k HashSet<CreditCode>) -> Checker<'k> {
        let keys: &[&'static str] = match kind {
            Kind::Items => &["id"],
            Kind::Entities => &["code", "agents"],
            Kind::Inspectors => &["id", "certificate"],
        };
        Checker {
            kind,
            known_entities,
            seen: keys.iter().map(|&k| (k, Seen::default())).collect(),
            errors: Vec::new(),
            rows: 0,
        }
    }

    /// Whether every row so far was valid.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many rows were checked so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Checks one row: its typed record if it is valid; its problems are kept.
    pub fn check(&mut self, row: &RawRow) -> Option<Record> {
        self.check_fields(row).map(RecordRef::to_record)
    }

    /// [`Checker::check`] for a row however it is held; an entity borrows the row's text.
    pub fn check_fields<'r, R: RowFields + ?Sized>(&mut self, row: &'r R) -> Option<RecordRef<'r>> {
        self.rows += 1;
        let before = self.errors.len();
        self.errors.extend(row.problems().iter().cloned());
        self.unique_keys(row);
        let record = match self.kind {
            Kind::Items => collect(parse::item(row), &mut self.errors).map(RecordRef::Item),
            Kind::Entities => {
                collect(parse::entity_ref(row), &mut self.errors).map(RecordRef::Entity)
            }
            Kind::Inspectors => collect(parse::inspector(row), &mut self.errors).and_then(|i| {
                let unknown: Vec<&CreditCode> = i
                    .conflicts
                    .iter()
                    .filter(|c| !self.known_entities.contains(*c))
                    .collect();
                for c in &unknown {
                    self.errors.push(RowError {
                        line: row.line(),
                        field: "conflicts".into(),
                        reason: format!(
                            "{c} is not in the entity library; import the entities first"
                        ),
                    });
                }
                unknown.is_empty().then_some(RecordRef::Inspector(i))
            }),
        };
        record.filter(|_| self.errors.len() == before)
    }

    /// [`Checker::check_fields`] for a row a [`RowSource`] lent.
    pub fn check_view<'r>(&mut self, row: &'r RowView<'_>) -> Option<RecordRef<'r>> {
        match row {
            RowView::Raw(r) => self.check_fields(*r),
            RowView::Csv(r) => self.check_fields(r),
        }
    }

    /// How many rows were checked, or every problem found, by line.
    pub fn finish(mut self) -> Result<usize, Vec<RowError>> {
        if self.errors.is_empty() {
            Ok(self.rows)
        } else {
            self.errors.sort_by_key(|e| e.line);
            Err(self.errors)
        }
    }

    /// Reports every value of a key field used twice in the file.
    fn unique_keys<R: RowFields + ?Sized>(&mut self, row: &R) {
        let line = row.line();
        for (field, seen) in &mut self.seen {
            let list = match row.get(field) {
                Some(FieldValue::Text(s)) => ListRef::Text(s),
                Some(FieldValue::List(v)) => ListRef::List(v),
                None => continue,
            };
            for v in list.iter() {
                if let Some(first) = seen.first(v, line) {
                    self.errors.push(RowError {
                        line,
                        field: (*field).into(),
                        reason: format!("{v} is already used on line {first}; each must be unique"),
                    });
                }
            }
        }
    }
}

/// The values of one key field seen so far (compared trimmed and upper-cased), with the line
/// each was first seen on. A million keys in boxed strings cost a million allocations and
/// 32 bytes each besides the table (BENCHMARKS.md); most keys fit in 16 bytes instead: a
/// credit code in base 31, a short id as its bytes.
#[derive(Default)]
pub struct Seen {
    packed: foldhash::HashMap<[u64; 2], u64>,
    other: foldhash::HashMap<Box<str>, u64>,
}

impl Seen {
    /// Records `v` (trimmed, not empty) as seen on `line`; the line it was seen on first, if
    /// it was.
    pub fn first(&mut self, v: &str, line: u64) -> Option<u64> {
        match pack(v) {
            Some(key) => match self.packed.entry(key) {
                Entry::Occupied(e) => Some(*e.get()),
                Entry::Vacant(e) => {
                    e.insert(line);
                    None
                }
            },
            None => {
                let key = v.to_ascii_uppercase().into_boxed_str();
                match self.other.entry(key) {
                    Entry::Occupied(e) => Some(*e.get()),
                    Entry::Vacant(e) => {
                        e.insert(line);
                        None
                    }
                }
            }
        }
    }
}

/// `v` upper-cased (ASCII) in 16 bytes, if it fits: a value of 18 characters of the credit
/// code alphabet as its number in base 31 (below 31^18 < 2^90) with 0xFF in the last byte;
/// any other value of at most 15 bytes as those bytes with its length in the last byte
/// (0..=15). The two forms never meet, and each is one value's alone.
pub fn pack(v: &str) -> Option<[u64; 2]> {
    let b = v.as_bytes();
    let n: u128 = if b.len() == 18 {
        let mut n = 0u128;
        for &c in b {
            let d = credit_code::ALPHABET
                .iter()
                .position(|&a| a == c.to_ascii_uppercase())?;
            n = n * 31 + d as u128;
        }
        n | 0xFF << 120
    } else if b.len() <= 15 {
        let mut bytes = [0u8; 16];
        for (slot, c) in bytes.iter_mut().zip(b) {
            *slot = c.to_ascii_uppercase();
        }
        bytes[15] = b.len() as u8;
        u128::from_le_bytes(bytes)
    } else {
        return None;
    };
    Some([n as u64, (n >> 64) as u64])
}

/// Turns raw rows into typed records, or reports every bad row. `known_entities` are the
/// credit codes already in the library (inspectors' conflicts must name one of them).
pub fn parse_rows(
    kind: Kind,
    rows: &[RawRow],
    known_entities: &HashSet<CreditCode>,
) -> Result<Records, Vec<RowError>> {
    let mut checker = Checker::new(kind, known_entities);
    let mut records = match kind {
        Kind::Items => Records::Items(Vec::new()),
        Kind::Entities => Records::Entities(Vec::new()),
        Kind::Inspectors => Records::Inspectors(Vec::new()),
    };
    for row in rows {
        match (checker.check(row), &mut records) {
            (Some(Record::Item(i)), Records::Items(v)) => v.push(i),
            (Some(Record::Entity(e)), Records::Entities(v)) => v.push(e),
            (Some(Record::Inspector(i)), Records::Inspectors(v)) => v.push(i),
            _ => {}
        }
    }
    checker.finish().map(|_| records)
}

fn collect<T>(r: Result<T, Vec<RowError>>, errors: &mut Vec<RowError>) -> Option<T> {
    r.map_err(|e| errors.extend(e)).ok()
}

//! Importing the libraries from CSV or JSON: read the file into raw rows that remember their
//! line, turn every row into a typed record (collecting every problem, not just the first),
//! and only then write — all rows in one transaction, or none.
//!
//! CSV: a header row with the field names; list fields (`agents`, `fields`, `conflicts`) are
//! separated by `;`. JSON: an array of objects with the same names; list fields may be arrays
//! or `;`-separated strings. Field names and formats: `docs/registry-import.md`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::model::{Entity, Inspector, Item};
use super::parse::{self, Kind};
use super::CreditCode;

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

/// The rows of a file, one at a time: a file of a million rows is never held as rows.
pub type Rows<'a> = Box<dyn Iterator<Item = Result<RawRow, ReadError>> + 'a>;

/// Reads `path` (by its extension) into raw rows.
pub fn read_file(path: &Path) -> Result<Vec<RawRow>, ReadError> {
    open_file(path)?.collect()
}

/// The rows of `path` (by its extension), read as they are asked for. A CSV file is streamed;
/// a JSON file is read whole (its text), its elements one by one.
pub fn open_file(path: &Path) -> Result<Rows<'static>, ReadError> {
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
            Ok(Box::new(CsvRows::new(
                std::io::BufReader::with_capacity(1 << 16, file),
                name.clone(),
            )?))
        }
        Some(e) if e == "json" => {
            let text = std::fs::read_to_string(path).map_err(io)?;
            Ok(Box::new(JsonRows::new(text, name.clone())?))
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

fn csv_syntax(name: &str, e: csv::Error) -> ReadError {
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

fn line_of(text: &str, offset: usize) -> u64 {
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}

/// A JSON array of objects. Each element is parsed by serde_json; only the whitespace and
/// commas between elements are stepped over here, to know the line each element starts on.
pub fn read_json(text: &str, name: &str) -> Result<Vec<RawRow>, ReadError> {
    JsonRows::new(text, name.to_owned())?.collect()
}

/// The elements of a JSON array of objects, parsed one at a time.
pub struct JsonRows<T: AsRef<str>> {
    text: T,
    name: String,
    /// Where the next element starts; `None` once the array is closed or broken.
    at: Option<usize>,
    /// Newlines before `line_at`, so line numbers cost one pass over the text in all.
    line_at: usize,
    line: u64,
}

fn skip_ws(text: &str, mut i: usize) -> usize {
    while i < text.len() && text.as_bytes()[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

impl<T: AsRef<str>> JsonRows<T> {
    /// Checks the opening `[`.
    pub fn new(text: T, name: String) -> Result<JsonRows<T>, ReadError> {
        let t = text.as_ref();
        let i = skip_ws(t, t.strip_prefix('\u{feff}').map_or(0, |_| 3));
        if t.as_bytes().get(i) != Some(&b'[') {
            return Err(ReadError::Syntax {
                path: name,
                line: line_of(t, i),
                reason: "expected a JSON array of objects, `[{...}, ...]`".into(),
            });
        }
        let first = skip_ws(t, i + 1);
        let at = (t.as_bytes().get(first) != Some(&b']')).then_some(first);
        let mut rows = JsonRows {
            text,
            name,
            at,
            line_at: 0,
            line: 1,
        };
        if at.is_none() && skip_ws(rows.text.as_ref(), first + 1) != rows.text.as_ref().len() {
            return Err(rows.syntax(first + 1, "unexpected text after the closing `]`".into()));
        }
        Ok(rows)
    }

    /// The 1-based line of byte `offset`, which must not be before the last one asked.
    fn line_of(&mut self, offset: usize) -> u64 {
        let t = self.text.as_ref().as_bytes();
        self.line += t[self.line_at..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.line_at = offset;
        self.line
    }

    fn syntax(&mut self, offset: usize, reason: String) -> ReadError {
        self.at = None;
        ReadError::Syntax {
            path: self.name.clone(),
            line: self.line_of(offset),
            reason,
        }
    }

    fn element(&mut self, start: usize) -> Result<RawRow, ReadError> {
        let text = self.text.as_ref();
        let mut stream =
            serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
        let next = stream.next();
        let end = start + stream.byte_offset();
        let value = match next {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                let line = self.line_of(start) + e.line() as u64 - 1;
                self.at = None;
                return Err(ReadError::Syntax {
                    path: self.name.clone(),
                    line,
                    reason: e.to_string(),
                });
            }
            None => return Err(self.syntax(start, "the array is not closed with `]`".into())),
        };
        let line = self.line_of(start);
        let row = json_row(value, line).map_err(|r| self.syntax(start, r))?;
        let text = self.text.as_ref();
        let i = skip_ws(text, end);
        match text.as_bytes().get(i) {
            Some(b',') => self.at = Some(skip_ws(text, i + 1)),
            Some(b']') => {
                self.at = None;
                if skip_ws(text, i + 1) != text.len() {
                    return Err(self.syntax(i + 1, "unexpected text after the closing `]`".into()));
                }
            }
            _ => return Err(self.syntax(i, "expected `,` or `]` after an element".into())),
        }
        Ok(row)
    }
}

impl<T: AsRef<str>> Iterator for JsonRows<T> {
    type Item = Result<RawRow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.at?;
        Some(self.element(start))
    }
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_row(value: serde_json::Value, line: u64) -> Result<RawRow, String> {
    let serde_json::Value::Object(map) = value else {
        return Err("each element must be a JSON object".into());
    };
    let mut fields = BTreeMap::new();
    for (k, v) in map {
        let raw = match &v {
            serde_json::Value::Null => continue,
            serde_json::Value::Array(items) => RawValue::List(
                items
                    .iter()
                    .map(|x| {
                        scalar(x).ok_or_else(|| format!("field {k}: list items must be strings"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => RawValue::Text(scalar(other).ok_or_else(|| {
                format!("field {k}: expected a string, number, boolean or array")
            })?),
        };
        fields.insert(k, raw);
    }
    Ok(RawRow {
        line,
        fields,
        problems: Vec::new(),
    })
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

/// Checks rows one at a time: each row's own problems, keys used twice in the file (even on
/// rows that are otherwise invalid), and inspectors' conflicts against the entity library.
/// Holds only the keys seen, so a file of any length can be checked as it streams.
pub struct Checker<'k> {
    kind: Kind,
    known_entities: &'k HashSet<CreditCode>,
    /// Per key field: each value (trimmed, upper-cased) and the line it was first seen on.
    seen: Vec<(&'static str, HashMap<Box<str>, u64>)>,
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
            seen: keys.iter().map(|&k| (k, HashMap::new())).collect(),
            errors: Vec::new(),
            rows: 0,
        }
    }

    /// Whether every row so far was valid.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// Checks one row: its typed record if it is valid; its problems are kept.
    pub fn check(&mut self, row: &RawRow) -> Option<Record> {
        self.rows += 1;
        let before = self.errors.len();
        self.errors.extend(row.problems.iter().cloned());
        self.unique_keys(row);
        let record = match self.kind {
            Kind::Items => collect(parse::item(row), &mut self.errors).map(Record::Item),
            Kind::Entities => collect(parse::entity(row), &mut self.errors).map(Record::Entity),
            Kind::Inspectors => collect(parse::inspector(row), &mut self.errors).and_then(|i| {
                let unknown: Vec<&CreditCode> = i
                    .conflicts
                    .iter()
                    .filter(|c| !self.known_entities.contains(*c))
                    .collect();
                for c in &unknown {
                    self.errors.push(RowError {
                        line: row.line,
                        field: "conflicts".into(),
                        reason: format!(
                            "{c} is not in the entity library; import the entities first"
                        ),
                    });
                }
                unknown.is_empty().then_some(Record::Inspector(i))
            }),
        };
        record.filter(|_| self.errors.len() == before)
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
    fn unique_keys(&mut self, row: &RawRow) {
        for (field, first_line) in &mut self.seen {
            let mut one = |v: &str| {
                let v = v.trim();
                if v.is_empty() {
                    return;
                }
                let key = v.to_ascii_uppercase().into_boxed_str();
                match first_line.get(&key) {
                    Some(first) => self.errors.push(RowError {
                        line: row.line,
                        field: (*field).into(),
                        reason: format!("{v} is already used on line {first}; each must be unique"),
                    }),
                    None => {
                        first_line.insert(key, row.line);
                    }
                }
            };
            match row.fields.get(*field) {
                Some(RawValue::Text(s)) => s.split(';').for_each(&mut one),
                Some(RawValue::List(v)) => v.iter().map(String::as_str).for_each(&mut one),
                None => {}
            }
        }
    }
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

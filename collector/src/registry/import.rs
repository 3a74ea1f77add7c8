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

/// Reads `path` (by its extension) into raw rows.
pub fn read_file(path: &Path) -> Result<Vec<RawRow>, ReadError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: name.clone(),
        source,
    })?;
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "csv" => read_csv(&text, &name),
        Some(e) if e == "json" => read_json(&text, &name),
        _ => Err(ReadError::Format(name)),
    }
}

/// CSV with a header row.
pub fn read_csv(text: &str, name: &str) -> Result<Vec<RawRow>, ReadError> {
    let syntax = |e: csv::Error| ReadError::Syntax {
        path: name.to_owned(),
        line: e.position().map_or(0, |p| p.line()),
        reason: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(syntax)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(syntax)?;
        let line = record.position().map_or(0, |p| p.line());
        let fields = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, v)| (h.clone(), RawValue::Text(v.to_owned())))
            .collect();
        let mut problems = Vec::new();
        if record.len() != headers.len() {
            problems.push(RowError {
                line,
                field: "-".into(),
                reason: format!(
                    "the row has {} fields but the header has {}: check for a missing or extra comma, or quote the value",
                    record.len(),
                    headers.len()
                ),
            });
        }
        rows.push(RawRow {
            line,
            fields,
            problems,
        });
    }
    Ok(rows)
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
    let syntax = |offset: usize, reason: String| ReadError::Syntax {
        path: name.to_owned(),
        line: line_of(text, offset),
        reason,
    };
    let skip_ws = |mut i: usize| {
        while i < text.len() && text.as_bytes()[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(text.strip_prefix('\u{feff}').map_or(0, |_| 3));
    if text.as_bytes().get(i) != Some(&b'[') {
        return Err(syntax(
            i,
            "expected a JSON array of objects, `[{...}, ...]`".into(),
        ));
    }
    i = skip_ws(i + 1);
    let mut rows = Vec::new();
    if text.as_bytes().get(i) == Some(&b']') {
        return Ok(rows);
    }
    loop {
        let start = i;
        let mut stream =
            serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(ReadError::Syntax {
                    path: name.to_owned(),
                    line: line_of(text, start) + e.line() as u64 - 1,
                    reason: e.to_string(),
                })
            }
            None => return Err(syntax(start, "the array is not closed with `]`".into())),
        };
        let line = line_of(text, start);
        rows.push(json_row(value, line).map_err(|r| syntax(start, r))?);
        i = skip_ws(start + stream.byte_offset());
        match text.as_bytes().get(i) {
            Some(b',') => i = skip_ws(i + 1),
            Some(b']') => break,
            _ => return Err(syntax(i, "expected `,` or `]` after an element".into())),
        }
    }
    if skip_ws(i + 1) != text.len() {
        return Err(syntax(
            i + 1,
            "unexpected text after the closing `]`".into(),
        ));
    }
    Ok(rows)
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

/// Turns raw rows into typed records, or reports every bad row. `known_entities` are the
/// credit codes already in the library (inspectors' conflicts must name one of them).
pub fn parse_rows(
    kind: Kind,
    rows: &[RawRow],
    known_entities: &HashSet<CreditCode>,
) -> Result<Records, Vec<RowError>> {
    let mut errors: Vec<RowError> = rows.iter().flat_map(|r| r.problems.clone()).collect();
    unique_keys(kind, rows, &mut errors);
    let records = match kind {
        Kind::Items => Records::Items(
            rows.iter()
                .filter_map(|row| collect(parse::item(row), &mut errors))
                .collect(),
        ),
        Kind::Entities => Records::Entities(
            rows.iter()
                .filter_map(|row| collect(parse::entity(row), &mut errors))
                .collect(),
        ),
        Kind::Inspectors => {
            let mut out = Vec::new();
            for row in rows {
                if let Some(i) = collect(parse::inspector(row), &mut errors) {
                    for c in i.conflicts.iter().filter(|c| !known_entities.contains(*c)) {
                        errors.push(RowError {
                            line: row.line,
                            field: "conflicts".into(),
                            reason: format!(
                                "{c} is not in the entity library; import the entities first"
                            ),
                        });
                    }
                    out.push(i);
                }
            }
            Records::Inspectors(out)
        }
    };
    if errors.is_empty() {
        Ok(records)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Reports every value of a key field (as written, trimmed and upper-cased) used twice,
/// whether or not the rows are otherwise valid.
fn unique_keys(kind: Kind, rows: &[RawRow], errors: &mut Vec<RowError>) {
    let keys: &[&str] = match kind {
        Kind::Items => &["id"],
        Kind::Entities => &["code", "agents"],
        Kind::Inspectors => &["id", "certificate"],
    };
    let mut first_line: HashMap<(&str, String), u64> = HashMap::new();
    for row in rows {
        for &field in keys {
            let values = match row.fields.get(field) {
                Some(RawValue::Text(s)) => s.split(';').map(str::to_owned).collect(),
                Some(RawValue::List(v)) => v.clone(),
                None => Vec::new(),
            };
            for v in values {
                let key = v.trim().to_ascii_uppercase();
                if key.is_empty() {
                    continue;
                }
                match first_line.get(&(field, key.clone())) {
                    Some(first) => errors.push(RowError {
                        line: row.line,
                        field: field.into(),
                        reason: format!(
                            "{} is already used on line {first}; each must be unique",
                            v.trim()
                        ),
                    }),
                    None => {
                        first_line.insert((field, key), row.line);
                    }
                }
            }
        }
    }
}

fn collect<T>(r: Result<T, Vec<RowError>>, errors: &mut Vec<RowError>) -> Option<T> {
    r.map_err(|e| errors.extend(e)).ok()
}

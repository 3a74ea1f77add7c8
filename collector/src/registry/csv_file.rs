//! A CSV file read record by record into one reused buffer: each row's fields are read where
//! they lie (no map of field names per row, no copy of a value), for the import of a file of a
//! million entities (BENCHMARKS.md). The rows and problems are those [`super::import::CsvRows`]
//! gives: the same fields, trimmed, an empty one absent, the last non-empty one winning when
//! the header names a field twice; the tests below hold the two to that.

use std::io::Read;

use super::import::{csv_syntax, RawRow, RawValue, ReadError, RowError, RowSource, RowView};
use super::parse::{FieldValue, RowFields};

/// The header row: every distinct field name, sorted, with the columns that carry it.
#[derive(Debug)]
struct Header {
    /// Columns in the header.
    len: usize,
    names: Vec<(String, Vec<usize>)>,
}

impl Header {
    fn new(names: impl Iterator<Item = String>) -> Header {
        let mut by_name: Vec<(String, Vec<usize>)> = Vec::new();
        let mut len = 0;
        for (column, name) in names.enumerate() {
            len += 1;
            match by_name.iter_mut().find(|(n, _)| *n == name) {
                Some((_, columns)) => columns.push(column),
                None => by_name.push((name, vec![column])),
            }
        }
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        Header {
            len,
            names: by_name,
        }
    }
}

/// A CSV file with a header row, read one record at a time.
pub struct CsvFile<R: Read> {
    reader: csv::Reader<R>,
    header: Header,
    name: String,
}

impl<R: Read> CsvFile<R> {
    /// Reads the header row.
    pub fn new(input: R, name: String) -> Result<CsvFile<R>, ReadError> {
        // Fields are trimmed where they are read: csv's own trimming copies every record.
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::None)
            .flexible(true)
            .from_reader(input);
        let names = reader
            .headers()
            .map_err(|e| csv_syntax(&name, e))?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
            .collect::<Vec<_>>();
        Ok(CsvFile {
            reader,
            header: Header::new(names.into_iter()),
            name,
        })
    }
}

impl<R: Read> RowSource for CsvFile<R> {
    fn each_row<E: From<ReadError>>(
        mut self,
        mut each: impl FnMut(RowView<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut record = csv::StringRecord::new();
        while self
            .reader
            .read_record(&mut record)
            .map_err(|e| csv_syntax(&self.name, e))?
        {
            let line = record.position().map_or(0, |p| p.line());
            let problem = (record.len() != self.header.len).then(|| RowError {
                line,
                field: "-".into(),
                reason: format!(
                    "the row has {} fields but the header has {}: check for a missing or extra comma, or quote the value",
                    record.len(),
                    self.header.len
                ),
            });
            each(RowView::Csv(CsvRecord {
                header: &self.header,
                record: &record,
                line,
                problem,
            }))?;
        }
        Ok(())
    }
}

/// One record of a [`CsvFile`], its fields read in place.
pub struct CsvRecord<'a> {
    header: &'a Header,
    record: &'a csv::StringRecord,
    line: u64,
    problem: Option<RowError>,
}

impl CsvRecord<'_> {
    /// The row with its own map of fields, as [`super::import::CsvRows`] reads it.
    pub fn to_raw(&self) -> RawRow {
        RawRow {
            line: self.line,
            fields: self
                .names()
                .filter_map(|n| match self.get(n) {
                    Some(FieldValue::Text(v)) => Some((n.to_owned(), RawValue::Text(v.to_owned()))),
                    _ => None,
                })
                .collect(),
            problems: self.problem.iter().cloned().collect(),
        }
    }

    /// The value of the columns named `columns`: the last one that is not empty, trimmed.
    fn value(&self, columns: &[usize]) -> Option<&str> {
        columns
            .iter()
            .rev()
            .filter_map(|&c| self.record.get(c))
            .map(str::trim)
            .find(|v| !v.is_empty())
    }
}

impl RowFields for CsvRecord<'_> {
    fn line(&self) -> u64 {
        self.line
    }

    fn problems(&self) -> &[RowError] {
        self.problem.as_slice()
    }

    fn get(&self, name: &str) -> Option<FieldValue<'_>> {
        let i = self
            .header
            .names
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        self.value(&self.header.names[i].1).map(FieldValue::Text)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.header
            .names
            .iter()
            .filter(|(_, columns)| self.value(columns).is_some())
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests;

//! Line formats for the file tail and stdin sources: JSON lines (one record per line, see
//! [`record`](super::record)) and CSV with a header line, and grouping lines into batches.
//!
//! A CSV row becomes a JSON object keyed by the header: an empty cell is left out, `true` and
//! `false` become booleans, a number becomes a number, except in the columns that are always
//! strings (`kind`, `id`, `metric`, `unit`, `quality`, `player`, `doctor`, `consultation`,
//! `age_band`, `visit`). So `metric,value,unit,ts_ms` rows are readings and rows with a `kind`
//! column are events. Quoted cells (`"a, b"`, `""` for a quote) are understood; a quoted cell
//! cannot span lines.

use serde::Deserialize;
use serde_json::{Map, Value};
use spotcheck_protocol::{AgentId, Batch, Domain, UnixMillis};

use super::record::{self, Item, RecordError};

/// How the lines of a file or of stdin are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON record per line.
    #[default]
    JsonLines,
    /// CSV; the first line of each file is the header.
    Csv,
}

const STRING_COLUMNS: &[&str] = &[
    "kind",
    "id",
    "metric",
    "unit",
    "quality",
    "player",
    "doctor",
    "consultation",
    "age_band",
    "visit",
];

/// Splits one CSV line into cells.
pub fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err("a quoted cell is not closed on this line".into());
    }
    cells.push(cell);
    Ok(cells)
}

fn cell_value(column: &str, cell: String) -> Value {
    if STRING_COLUMNS.contains(&column) {
        return Value::String(cell);
    }
    match cell.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => serde_json::from_str::<serde_json::Number>(&cell)
            .map(Value::Number)
            .unwrap_or(Value::String(cell)),
    }
}

/// Parses lines of one file (or stream) in one format, remembering the CSV header.
#[derive(Debug, Clone, Default)]
pub struct LineParser {
    format: Format,
    header: Option<Vec<String>>,
}

impl LineParser {
    /// A parser for `format`, with a header already known (after a restart mid-file).
    pub fn new(format: Format, header: Option<Vec<String>>) -> LineParser {
        LineParser { format, header }
    }

    /// The format it parses.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The CSV header, once read.
    pub fn header(&self) -> Option<&Vec<String>> {
        self.header.as_ref()
    }

    /// Forgets the header (a new file starts).
    pub fn reset(&mut self) {
        self.header = None;
    }

    /// One line (without its newline): `None` for a blank line or a CSV header.
    pub fn parse(&mut self, line: &str, at: &str) -> Result<Option<Item>, RecordError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Ok(None);
        }
        match self.format {
            Format::JsonLines => record::parse_line(line.as_bytes(), at).map(Some),
            Format::Csv => {
                let cells =
                    split_csv(line).map_err(|e| RecordError::Malformed(format!("{at}: {e}")))?;
                let Some(header) = &self.header else {
                    self.header = Some(cells.into_iter().map(|c| c.trim().to_owned()).collect());
                    return Ok(None);
                };
                if cells.len() != header.len() {
                    return Err(RecordError::Malformed(format!(
                        "{at}: {} cells but the header has {} columns",
                        cells.len(),
                        header.len()
                    )));
                }
                let mut obj = Map::new();
                for (column, cell) in header.iter().zip(cells) {
                    if !cell.is_empty() {
                        obj.insert(column.clone(), cell_value(column, cell));
                    }
                }
                record::parse_value(Value::Object(obj), at).map(Some)
            }
        }
    }
}

/// Most payload bytes a batcher lets a batch grow to (the protocol allows 256 KiB).
const BATCH_BYTES: usize = 192 * 1024;

/// Groups checked items into batches of at most `max` records (and about 192 KiB), readings
/// and events apart.
#[derive(Debug)]
pub struct Batcher {
    agent: AgentId,
    domain: Domain,
    max: usize,
    readings: (Vec<Item>, usize),
    events: (Vec<Item>, usize),
}

impl Batcher {
    /// A batcher for `agent` of `domain`, `max` records per batch.
    pub fn new(agent: AgentId, domain: Domain, max: usize) -> Batcher {
        Batcher {
            agent,
            domain,
            max: max.max(1),
            readings: (Vec::new(), 0),
            events: (Vec::new(), 0),
        }
    }

    /// Checks `item` alone against the protocol (so one bad record never spoils a batch) and
    /// keeps it; returns a batch when one is full.
    pub fn push(&mut self, item: Item, at: &str) -> Result<Option<Batch>, RecordError> {
        let alone = record::batch_of(
            &self.agent,
            self.domain,
            vec![item.clone()],
            UnixMillis::now(),
        )
        .map_err(|e| RecordError::Invalid(format!("{at}: {e}")))?;
        let bytes = alone.encode().len();
        let group = match item {
            Item::Reading(_) => &mut self.readings,
            Item::Event(_) => &mut self.events,
        };
        let mut full = None;
        if !group.0.is_empty() && group.1 + bytes > BATCH_BYTES {
            full = Some(std::mem::take(group));
        }
        group.0.push(item);
        group.1 += bytes;
        if full.is_none() && group.0.len() >= self.max {
            full = Some(std::mem::take(group));
        }
        Ok(full.map(|(items, _)| self.build(items)))
    }

    /// Whatever is held, as up to two batches (readings, events).
    pub fn flush(&mut self) -> Vec<Batch> {
        let groups = [
            std::mem::take(&mut self.readings),
            std::mem::take(&mut self.events),
        ];
        groups
            .into_iter()
            .filter(|(items, _)| !items.is_empty())
            .map(|(items, _)| self.build(items))
            .collect()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.readings.0.is_empty() && self.events.0.is_empty()
    }

    fn build(&self, items: Vec<Item>) -> Batch {
        // Every item passed the check alone, and one kind of one domain is grouped here.
        record::assemble(&self.agent, items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_split_with_quotes() {
        assert_eq!(
            split_csv("a,\"b, c\",\"d\"\"e\",").unwrap(),
            ["a", "b, c", "d\"e", ""]
        );
        assert!(split_csv("a,\"b").is_err());
    }

    #[test]
    fn csv_rows_become_readings_and_events_by_the_header() {
        let now = UnixMillis::now().0;
        let mut p = LineParser::new(Format::Csv, None);
        assert_eq!(p.parse("metric,value,unit,ts_ms", "line 1").unwrap(), None);
        let r = p.parse(&format!("ph,7.2,pH,{now}"), "line 2").unwrap();
        assert!(matches!(r, Some(Item::Reading(_))), "{r:?}");
        let e = p.parse("ph,7.2,pH", "line 3").unwrap_err();
        assert!(e.to_string().contains("3 cells"), "{e}");
        let mut p = LineParser::new(Format::Csv, None);
        p.parse("kind,id,player,age_band,amount_fen,ts_ms", "line 1")
            .unwrap();
        let e = p
            .parse(&format!("game_payment,123,p-1,adult,600,{now}"), "line 2")
            .unwrap();
        assert!(matches!(e, Some(Item::Event(_))), "{e:?}");
    }

    #[test]
    fn the_batcher_splits_by_count_and_keeps_kinds_apart() {
        let now = UnixMillis::now().0;
        let mut b = Batcher::new(AgentId::new("a").unwrap(), Domain::Game, 2);
        let mut p = LineParser::new(Format::JsonLines, None);
        let pay = |i: u32| {
            format!(
                r#"{{"kind":"game_payment","id":"p{i}","player":"x","age_band":"adult","amount_fen":100,"ts_ms":{now}}}"#
            )
        };
        let reading = format!(r#"{{"metric":"ph","value":7.0,"unit":"pH","ts_ms":{now}}}"#);
        let mut full = Vec::new();
        for line in [pay(1), reading, pay(2), pay(3)] {
            let item = p.parse(&line, "l").unwrap().unwrap();
            full.extend(b.push(item, "l").unwrap());
        }
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), 2);
        let rest = b.flush();
        assert_eq!(rest.iter().map(Batch::len).collect::<Vec<_>>(), [1, 1]);
        assert!(b.is_empty());
    }
}

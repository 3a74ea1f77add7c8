//! Reading a JSON array of objects into raw rows that remember their line: each element is
//! parsed by serde_json; only the whitespace and commas between elements are stepped over
//! here, to know the line each element starts on.

use std::collections::BTreeMap;

use super::{RawRow, RawValue, ReadError};

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

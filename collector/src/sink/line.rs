//! InfluxDB line protocol, written directly: a series key (measurement and tags, escaped once
//! per series) and then one line per point.
//!
//! ```text
//! measurement,tag=value,tag=value field=1.5,field=2i 1700000000000
//! ```
//!
//! Escaping (InfluxDB's line protocol reference): measurements escape `,` and space; tag keys,
//! tag values and field keys escape `,`, `=` and space. A backslash is literal unless it precedes
//! one of those, so a name that holds a backslash (or a newline, which cannot be escaped at all)
//! could not be read back as written: such names are refused, not mangled. Empty tag values are
//! left out (the protocol has no empty tag). Floats must be finite.

/// The timestamp unit of the lines, as `precision=` tells the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Seconds (sub-second readings of one series then share a timestamp and overwrite).
    S,
    /// Milliseconds: what Spotcheck stores.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl Precision {
    /// The query parameter value (v2 and v1 spell them the same way for these four).
    pub fn as_param(self) -> &'static str {
        match self {
            Precision::S => "s",
            Precision::Ms => "ms",
            Precision::Us => "us",
            Precision::Ns => "ns",
        }
    }

    /// A millisecond timestamp in this unit.
    pub fn from_ms(self, ts_ms: i64) -> i64 {
        match self {
            Precision::S => ts_ms.div_euclid(1000),
            Precision::Ms => ts_ms,
            Precision::Us => ts_ms.saturating_mul(1000),
            Precision::Ns => ts_ms.saturating_mul(1_000_000),
        }
    }
}

/// A name or value that line protocol cannot carry as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// A measurement, key or tag value holds a newline, carriage return or backslash.
    #[error("{what} {text:?} holds a newline, carriage return or backslash, which line protocol cannot carry")]
    Unescapable {
        /// Which part of the line.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A measurement or key is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which part of the line.
        what: &'static str,
    },
    /// A float field is NaN or infinite.
    #[error("field {field} is {value}, and line protocol floats must be finite")]
    NotFinite {
        /// The field key.
        field: String,
        /// The value.
        value: f64,
    },
}

fn check(what: &'static str, text: &str) -> Result<(), LineError> {
    if text.contains(['\n', '\r', '\\']) {
        return Err(LineError::Unescapable {
            what,
            text: text.to_owned(),
        });
    }
    Ok(())
}

fn escape_into(out: &mut String, text: &str, specials: &[char]) {
    for c in text.chars() {
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

const MEASUREMENT: &[char] = &[',', ' '];
const KEY: &[char] = &[',', '=', ' '];

/// The escaped `measurement,tag=value,…` prefix of a series; tags are sorted by key (what the
/// servers index fastest) and empty values left out.
pub fn series_key(measurement: &str, tags: &[(&str, &str)]) -> Result<String, LineError> {
    if measurement.is_empty() {
        return Err(LineError::Empty {
            what: "measurement",
        });
    }
    check("measurement", measurement)?;
    let mut sorted: Vec<&(&str, &str)> = tags.iter().filter(|(_, v)| !v.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64);
    escape_into(&mut out, measurement, MEASUREMENT);
    for (k, v) in sorted {
        if k.is_empty() {
            return Err(LineError::Empty { what: "tag key" });
        }
        check("tag key", k)?;
        check("tag value", v)?;
        out.push(',');
        escape_into(&mut out, k, KEY);
        out.push('=');
        escape_into(&mut out, v, KEY);
    }
    Ok(out)
}

/// A field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field {
    /// A float (`1.5`).
    Float(f64),
    /// A signed integer (`2i`).
    Int(i64),
}

/// Checks a field key once, so that [`push_line`] can trust it.
pub fn field_key(key: &str) -> Result<String, LineError> {
    if key.is_empty() {
        return Err(LineError::Empty { what: "field key" });
    }
    check("field key", key)?;
    let mut out = String::with_capacity(key.len());
    escape_into(&mut out, key, KEY);
    Ok(out)
}

/// Appends one line: `series fields timestamp\n`. `fields` are (escaped key, value) pairs as
/// [`field_key`] returns them; at least one is needed.
pub fn push_line(
    out: &mut String,
    series: &str,
    fields: &[(&str, Field)],
    ts_ms: i64,
    precision: Precision,
) -> Result<(), LineError> {
    if fields.is_empty() {
        return Err(LineError::Empty { what: "field set" });
    }
    for (k, f) in fields {
        if let Field::Float(v) = f {
            if !v.is_finite() {
                return Err(LineError::NotFinite {
                    field: (*k).to_owned(),
                    value: *v,
                });
            }
        }
    }
    // Every point the sink writes passes here: numbers go through ryu and itoa, not `fmt`'s
    // machinery (BENCHMARKS.md, "Time-series sink", session 24).
    let mut numbers = (ryu::Buffer::new(), itoa::Buffer::new());
    out.push_str(series);
    for (i, (k, f)) in fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        out.push_str(k);
        out.push('=');
        match f {
            // ryu keeps a float a float (`1.0`, `1e300`): the server would take `1` for an
            // integer and refuse it in a float field.
            Field::Float(v) => out.push_str(numbers.0.format_finite(*v)),
            Field::Int(v) => {
                out.push_str(numbers.1.format(*v));
                out.push('i');
            }
        }
    }
    out.push(' ');
    out.push_str(numbers.1.format(precision.from_ms(ts_ms)));
    out.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a line back the way InfluxDB does: a backslash escapes the next character only if
    /// it is special in that part; unescaped separators split.
    type Pairs = Vec<(String, String)>;

    fn parse(line: &str) -> (String, Pairs, Pairs, String) {
        fn split<'a>(
            text: &'a str,
            seps: &[char],
            specials: &[char],
        ) -> (String, Option<char>, &'a str) {
            let mut out = String::new();
            let mut chars = text.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == '\\' {
                    if let Some(&(_, n)) = chars.peek() {
                        if specials.contains(&n) {
                            out.push(n);
                            chars.next();
                            continue;
                        }
                    }
                    out.push(c);
                } else if seps.contains(&c) {
                    return (out, Some(c), &text[i + c.len_utf8()..]);
                } else {
                    out.push(c);
                }
            }
            (out, None, "")
        }
        let line = line.strip_suffix('\n').unwrap();
        let (measurement, mut sep, mut rest) = split(line, &[',', ' '], MEASUREMENT);
        let mut tags = Vec::new();
        while sep == Some(',') {
            let (k, _, r) = split(rest, &['='], KEY);
            let (v, s, r) = split(r, &[',', ' '], KEY);
            tags.push((k, v));
            sep = s;
            rest = r;
        }
        let mut fields = Vec::new();
        loop {
            let (k, _, r) = split(rest, &['='], KEY);
            let (v, s, r) = split(r, &[',', ' '], &[]);
            fields.push((k, v));
            rest = r;
            if s == Some(' ') {
                break;
            }
        }
        (measurement, tags, fields, rest.to_owned())
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 ,=\"'\\\\/°μ_.-]{1,12}").unwrap()
    }

    proptest! {
        #[test]
        fn names_round_trip_through_the_servers_unescaping(
            measurement in text(),
            tags in proptest::collection::btree_map(text(), text(), 0..4),
            key in text(),
            value in -1e12f64..1e12,
            ts in any::<i64>(),
        ) {
            let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let unescapable = std::iter::once(&measurement)
                .chain(tags.keys())
                .chain(tags.values())
                .chain([&key])
                .any(|t| t.contains('\\'));
            let series = series_key(&measurement, &tag_refs);
            let k = field_key(&key);
            if unescapable {
                prop_assert!(series.is_err() || k.is_err());
                return Ok(());
            }
            let (series, k) = (series.unwrap(), k.unwrap());
            let mut out = String::new();
            push_line(&mut out, &series, &[(&k, Field::Float(value)), ("q", Field::Int(-3))], ts, Precision::Ms).unwrap();
            prop_assert_eq!(out.matches('\n').count(), 1);
            let (m, t, f, stamp) = parse(&out);
            prop_assert_eq!(m, measurement);
            let expected: Vec<(String, String)> = tags.into_iter().collect();
            prop_assert_eq!(t, expected);
            prop_assert_eq!(f[0].0.clone(), key);
            prop_assert_eq!(f[0].1.parse::<f64>().unwrap(), value);
            prop_assert_eq!(f[1].clone(), ("q".to_owned(), "-3i".to_owned()));
            prop_assert_eq!(stamp.parse::<i64>().unwrap(), ts);
        }
    }

    #[test]
    fn a_typical_reading_line() {
        let series = series_key(
            "pool",
            &[
                ("metric", "free_chlorine"),
                ("entity", "E 1"),
                ("unit", "mg/L"),
                ("item", ""),
            ],
        )
        .unwrap();
        let mut out = String::new();
        push_line(
            &mut out,
            &series,
            &[("value", Field::Float(0.5)), ("quality", Field::Int(0))],
            1_700_000_000_123,
            Precision::Ns,
        )
        .unwrap();
        assert_eq!(
            out,
            "pool,entity=E\\ 1,metric=free_chlorine,unit=mg/L value=0.5,quality=0i 1700000000123000000\n"
        );
    }

    #[test]
    fn whole_floats_stay_floats() {
        // A float field written as `1` would be an integer to the server, which refuses it in
        // a series whose field is a float.
        for (v, text) in [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e300, "1e300"),
            (250.0, "250.0"),
        ] {
            let mut out = String::new();
            push_line(&mut out, "m", &[("v", Field::Float(v))], -5, Precision::Ms).unwrap();
            assert_eq!(out, format!("m v={text} -5\n"));
        }
    }

    #[test]
    fn what_cannot_be_carried_is_refused_with_its_name() {
        assert!(matches!(
            series_key("a\nb", &[]),
            Err(LineError::Unescapable {
                what: "measurement",
                ..
            })
        ));
        assert!(matches!(
            series_key("m", &[("k", "v\\")]),
            Err(LineError::Unescapable {
                what: "tag value",
                ..
            })
        ));
        assert_eq!(
            series_key("", &[]),
            Err(LineError::Empty {
                what: "measurement"
            })
        );
        let mut out = String::new();
        let err = push_line(
            &mut out,
            "m",
            &[("v", Field::Float(f64::NAN))],
            0,
            Precision::Ms,
        )
        .unwrap_err();
        assert!(err.to_string().contains("finite"), "{err}");
        assert!(out.is_empty(), "nothing is written for a refused point");
    }

    #[test]
    fn precisions_scale_milliseconds() {
        assert_eq!(Precision::S.from_ms(-1), -1);
        assert_eq!(Precision::S.from_ms(1999), 1);
        assert_eq!(Precision::Us.from_ms(2), 2000);
        assert_eq!(Precision::Ns.from_ms(2), 2_000_000);
    }
}

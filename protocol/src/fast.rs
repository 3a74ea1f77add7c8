//! A fast path for decoding readings batches as agents write them.
//!
//! At batches of 100 readings serde_json spent most of its time scanning and UTF-8-checking
//! the eight strings of every reading and allocating its metric name (BENCHMARKS.md, issue
//! 17). Agents write one exact form: `Batch::encode`'s compact JSON, members in declaration
//! order, `after` spliced in first or written before `readings`, `quality` optional. This
//! module reads that form and nothing else, byte by byte, with the same conversions serde uses
//! (identifiers checked by their constructors, numbers by the JSON grammar and then Rust's
//! correctly rounded parser). Whatever it does not recognise — whitespace, escapes, another
//! member order, an invalid value, a number serde would refuse or read differently — gives
//! `None`, and the payload goes through serde_json, which decides what it is and says what is
//! wrong in the same words as before. So this path only ever accepts payloads serde_json
//! accepts, with the same values (`protocol/tests/decode_reference.rs` holds both to that on
//! generated and mutated payloads).

use crate::batch::{ReadingBatch, Version};
use crate::ids::{AgentId, Seq};
use crate::reading::{Metric, Quality, Reading, Unit, UnixMillis};

/// `payload` as a readings batch, if it is in the form agents write; `None` for serde_json to
/// decide.
pub fn readings(payload: &[u8]) -> Option<ReadingBatch> {
    let mut c = Cursor { b: payload, i: 0 };
    c.lit(b"{")?;
    let mut after = None;
    if c.peek_lit(b"\"after\":") {
        after = Some(Seq(c.u64()?));
        c.lit(b",")?;
    }
    c.lit(b"\"v\":1,\"agent\":")?;
    let agent = AgentId::new(c.str()?).ok()?;
    c.lit(b",\"seq\":")?;
    let seq = Seq(c.u64()?);
    c.lit(b",")?;
    if after.is_none() && c.peek_lit(b"\"after\":") {
        after = Some(Seq(c.u64()?));
        c.lit(b",")?;
    }
    c.lit(b"\"readings\":[")?;
    // Readings are about 90 bytes; reserving by size saves the vector's regrowth.
    let mut readings = Vec::with_capacity((payload.len() / 64).min(1024));
    loop {
        readings.push(c.reading()?);
        if c.lit(b"]").is_some() {
            break;
        }
        c.lit(b",")?;
    }
    c.lit(b"}")?;
    if c.i != payload.len() {
        return None;
    }
    Some(ReadingBatch {
        v: Version,
        agent,
        seq,
        after,
        readings,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Consumes `s` if the input continues with it.
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// Consumes `s` if the input continues with it, saying whether it did.
    fn peek_lit(&mut self, s: &[u8]) -> bool {
        self.lit(s).is_some()
    }

    /// The bytes of a string without escapes or control characters, printable ASCII only
    /// (every identifier, unit and quality is; anything else is left to serde's error).
    fn bytes(&mut self) -> Option<&'a [u8]> {
        self.lit(b"\"")?;
        let rest = &self.b[self.i..];
        let mut len = 0;
        loop {
            match *rest.get(len)? {
                b'"' => break,
                b'\\' => return None,
                c if (0x20..0x7f).contains(&c) => len += 1,
                _ => return None,
            }
        }
        self.i += len + 1;
        Some(&rest[..len])
    }

    /// [`Cursor::bytes`] as a string.
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// The digits of a JSON number at the cursor: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    /// `None` for anything else, and for `-0…` (serde's reading of `-0` differs from Rust's).
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        let b = self.b;
        let digits = |i: &mut usize| {
            let from = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - from
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
            if b.get(i) == Some(&b'0') {
                return None;
            }
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        self.i = i;
        std::str::from_utf8(&b[start..i]).ok()
    }

    /// A JSON integer without sign, fraction or exponent: `0|[1-9][0-9]*`, within `u64`.
    fn magnitude(&mut self) -> Option<u64> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        // Nineteen digits never overflow a u64 (at most 10^19 - 1), so they are summed without
        // a check per digit (`checked_mul` and `checked_add` on every digit of a 13-digit
        // timestamp took 4 % of the checking tasks at batches of 100); a twentieth is checked.
        let mut n: u64 = 0;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() || i - start == 19 {
                break;
            }
            n = n * 10 + u64::from(c - b'0');
            i += 1;
        }
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            i += 1;
        }
        let len = i - start;
        // No digits, a leading zero, or a fraction or exponent (serde reads a float there).
        if len == 0 || (len > 1 && b[start] == b'0') || matches!(b.get(i), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.i = i;
        Some(n)
    }

    fn u64(&mut self) -> Option<u64> {
        self.magnitude()
    }

    fn i64(&mut self) -> Option<i64> {
        if self.lit(b"-").is_some() {
            // `-0` is a float to serde; `i64::MIN` is left to it too.
            let n = self.magnitude().filter(|&n| n != 0)?;
            i64::try_from(n).ok().map(|n| -n)
        } else {
            i64::try_from(self.magnitude()?).ok()
        }
    }

    /// A finite `f64`, rounded correctly as serde_json (with `float_roundtrip`) rounds it.
    fn f64(&mut self) -> Option<f64> {
        self.number()?.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    fn reading(&mut self) -> Option<Reading> {
        self.lit(b"{\"metric\":")?;
        let metric = Metric::from_str_ref(self.str()?).ok()?;
        self.lit(b",\"value\":")?;
        let value = self.f64()?;
        self.lit(b",\"unit\":")?;
        let unit = unit(self.bytes()?)?;
        self.lit(b",\"ts_ms\":")?;
        let ts_ms = UnixMillis(self.i64()?);
        let quality = if self.peek_lit(b",\"quality\":") {
            match self.bytes()? {
                b"good" => Quality::Good,
                b"uncertain" => Quality::Uncertain,
                b"bad" => Quality::Bad,
                _ => return None,
            }
        } else {
            Quality::default()
        };
        self.lit(b"}")?;
        Some(Reading {
            metric,
            value,
            unit,
            ts_ms,
            quality,
        })
    }
}

fn unit(s: &[u8]) -> Option<Unit> {
    [
        Unit::MilligramPerLitre,
        Unit::Ph,
        Unit::Ntu,
        Unit::Millivolt,
        Unit::Celsius,
        Unit::CubicMetre,
        Unit::Percent,
        Unit::Count,
    ]
    .into_iter()
    .find(|u| u.as_str().as_bytes() == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;

    #[test]
    fn integers_are_read_exactly_up_to_u64_max_and_refused_beyond() {
        let read = |s: &str| {
            Cursor {
                b: s.as_bytes(),
                i: 0,
            }
            .magnitude()
        };
        for n in [
            0,
            7,
            1_700_000_000_000,
            999_999_999_999_999_999,
            9_999_999_999_999_999_999,
            10_000_000_000_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(read(&n.to_string()), Some(n), "{n}");
        }
        for s in [
            "18446744073709551616",
            "99999999999999999999",
            "100000000000000000000",
            "00",
            "01",
            "",
            "1.5",
            "1e3",
        ] {
            assert_eq!(read(s), None, "{s}");
        }
        let mut c = Cursor {
            b: b"1234567890123456789012,",
            i: 0,
        };
        assert_eq!(c.magnitude(), None);
        assert_eq!(c.i, 0, "nothing consumed");
    }

    #[test]
    fn what_agents_write_is_read_and_anything_else_is_left_to_serde() {
        let one =
            r#"{"metric":"ph","value":7.25,"unit":"pH","ts_ms":1700000000000,"quality":"good"}"#;
        let p = format!(r#"{{"v":1,"agent":"a1","seq":5,"readings":[{one},{one}]}}"#);
        let b = readings(p.as_bytes()).unwrap();
        assert_eq!((b.seq, b.after, b.readings.len()), (Seq(5), None, 2));
        assert_eq!(Batch::Readings(b.clone()).encode(), p.as_bytes());
        let spliced = crate::batch::with_after(p.as_bytes(), Seq(3));
        assert_eq!(readings(&spliced).unwrap().after, Some(Seq(3)));
        for other in [
            p.replace(",\"seq\"", ", \"seq\""),
            p.replace("\"a1\"", "\"a\\u0031\""),
            p.replace("7.25", "-0"),
            p.replace("7.25", "1e400"),
            p.replace("7.25", "07"),
            p.replace("1700000000000", "1.7e12"),
            p.replace("\"pH\"", "\"ph\""),
            p.replace("[{", "[ {"),
            p.clone() + " ",
            r#"{"v":1,"agent":"a1","seq":5,"readings":[]}"#.to_owned(),
        ] {
            assert!(readings(other.as_bytes()).is_none(), "{other}");
        }
    }
}

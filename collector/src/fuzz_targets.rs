//! The fuzz targets, as plain functions over bytes: `fuzz/` runs them under cargo-fuzz
//! (libFuzzer, nightly), and the `fuzz_smoke` tests below run them on arbitrary and mutated
//! bytes for a bounded number of cases in every `cargo test`. Each must return for any input,
//! never panic. How to run the long version: `fuzz/README.md`.

use std::path::Path;

use spotcheck_protocol::{AgentId, Domain, EntityId, Limits, Topic, UnixMillis};

use crate::config::{AgentBinding, RawConfig};
use crate::ingest::validate::{validate, Auth};
use crate::registry::Bindings;

/// A payload on a readings or events topic of a bound agent: decoding and every validation.
pub fn payload(data: &[u8]) {
    let bindings = Bindings::new(&[AgentBinding {
        id: AgentId::new("a1").expect("valid id"),
        entity: EntityId::new("pool-1").expect("valid id"),
        domain: Domain::Pool,
    }]);
    for topic in [
        "spotcheck/v1/pool/pool-1/a1/readings",
        "spotcheck/v1/pool/pool-1/a1/events",
        "spotcheck/v1/agents/a1/status",
    ] {
        let _ = validate(
            topic,
            data,
            &bindings,
            &Auth::off(),
            &Limits::default(),
            UnixMillis(1_764_000_000_000),
        );
    }
}

/// Topic parsing; a topic that parses must print back as itself.
pub fn topic(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = Topic::parse(text) {
            assert_eq!(t.to_string(), text, "a parsed topic prints back as itself");
        }
    }
}

/// The collector's configuration file: parsing and validation.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(raw) = RawConfig::parse(text, Path::new("fuzz.toml")) {
            let _ = raw.validate();
        }
    }
}

/// A registry import file in CSV, as each of the three libraries, read both ways: the
/// in-place reader that `registry import FILE` uses (`CsvFile`) must read, accept and refuse
/// exactly what the reader into row maps that the API's import uses (`read_csv`) does, with the
/// same messages. A difference is a crash, so libFuzzer keeps the file that shows it.
pub fn csv_import(data: &[u8]) {
    use std::collections::HashSet;

    use crate::registry::csv_file::CsvFile;
    use crate::registry::import::{read_csv, Checker, ReadError, RowSource};
    use crate::registry::parse::Kind;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let known = HashSet::new();
    for kind in [Kind::Items, Kind::Entities, Kind::Inspectors] {
        let maps = read_csv(text, "fuzz.csv")
            .map_err(|e| e.to_string())
            .map(|rows| {
                let mut checker = Checker::new(kind, &known);
                let records: Vec<_> = rows.iter().filter_map(|r| checker.check(r)).collect();
                (rows.len(), records, checker.finish())
            });
        let in_place = CsvFile::new(text.as_bytes(), "fuzz.csv".into())
            .and_then(|file| {
                let mut checker = Checker::new(kind, &known);
                let mut records = Vec::new();
                file.each_row(|row| {
                    records.extend(checker.check_view(&row).map(|r| r.to_record()));
                    Ok::<_, ReadError>(())
                })?;
                Ok((checker.rows(), records, checker.finish()))
            })
            .map_err(|e| e.to_string());
        assert_eq!(
            in_place, maps,
            "the two CSV readers disagree on this file as {kind:?}"
        );
    }
}

/// A rule pack file.
pub fn rule_pack(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::rules::pack::parse_pack(text, "fuzz.toml");
        let _ = crate::rules::calendar::parse_calendar(text, "fuzz.toml");
    }
}

/// A draw record as `spotcheck-collector draw verify` reads it, and its verification.
pub fn draw_record(data: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<crate::draw::DrawRecord>(data) {
        // Verification redraws: bound the work an input can ask for.
        if record.candidates.len() <= 200 && record.inspectors.len() <= 200 {
            let _ = crate::draw::verify(&record);
        }
    }
}

#[cfg(test)]
mod fuzz_smoke {
    use proptest::prelude::*;

    /// The seed corpus of a target, as `fuzz/` keeps it.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    /// A seed with up to eight bytes overwritten, inserted or cut.
    fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let seeds = seeds(target);
        (
            0..seeds.len(),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        )
            .prop_map(move |(i, edits)| {
                let mut s = seeds[i].clone();
                for (at, byte, op) in edits {
                    if s.is_empty() {
                        s.push(byte);
                        continue;
                    }
                    let at = at.index(s.len());
                    match op {
                        0 => s[at] = byte,
                        1 => s.insert(at, byte),
                        _ => {
                            s.truncate(at.max(1));
                        }
                    }
                }
                s
            })
    }

    fn arbitrary() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..1024)
    }

    macro_rules! smoke {
        ($name:ident, $target:ident) => {
            mod $name {
                use super::*;
                proptest! {
                    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]
                    #[test]
                    fn arbitrary_bytes(data in arbitrary()) {
                        crate::fuzz_targets::$target(&data);
                    }
                    #[test]
                    fn mutated_seeds(data in mutated(stringify!($target))) {
                        crate::fuzz_targets::$target(&data);
                    }
                }

                #[test]
                fn seeds_pass() {
                    for s in seeds(stringify!($target)) {
                        crate::fuzz_targets::$target(&s);
                    }
                }
            }
        };
    }

    smoke!(payload, payload);
    smoke!(topic, topic);
    smoke!(config, config);
    smoke!(csv_import, csv_import);
    smoke!(rule_pack, rule_pack);
    smoke!(draw_record, draw_record);
}

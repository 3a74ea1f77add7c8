//! The in-place reader against the old path ([`read_csv`] into [`RawRow`] maps, then
//! [`Checker::check`]): the same rows, records and problems, word for word, for any file.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;
use crate::registry::import::{pack, read_csv, Checker, Record, Seen};
use crate::registry::parse::Kind;

/// Rows read, records of the valid rows, and every problem (or why the file is unreadable).
type Outcome = Result<(usize, Vec<Record>, Result<usize, Vec<RowError>>), String>;

fn old_path(text: &str, kind: Kind) -> Outcome {
    let rows = read_csv(text, "f.csv").map_err(|e| e.to_string())?;
    let known = HashSet::new();
    let mut checker = Checker::new(kind, &known);
    let records = rows.iter().filter_map(|r| checker.check(r)).collect();
    Ok((rows.len(), records, checker.finish()))
}

fn in_place(text: &str, kind: Kind) -> Outcome {
    let known = HashSet::new();
    let mut checker = Checker::new(kind, &known);
    let mut records = Vec::new();
    let file = CsvFile::new(text.as_bytes(), "f.csv".into()).map_err(|e| e.to_string())?;
    file.each_row(|row| {
        records.extend(checker.check_view(&row).map(|r| r.to_record()));
        Ok::<_, ReadError>(())
    })
    .map_err(|e| e.to_string())?;
    Ok((checker.rows(), records, checker.finish()))
}

fn raw_rows(text: &str) -> Result<Vec<RawRow>, String> {
    let mut rows = Vec::new();
    CsvFile::new(text.as_bytes(), "f.csv".into())
        .and_then(|f| {
            f.each_row(|row| {
                let RowView::Csv(r) = row else {
                    unreachable!("a CSV file lends CSV records")
                };
                rows.push(r.to_raw());
                Ok::<_, ReadError>(())
            })
        })
        .map_err(|e| e.to_string())?;
    Ok(rows)
}

const ENTITIES: &str = "\u{feff}code,name,domain,district,address,contact,risk,agents,colour
9144030071526726XG,腾讯, game ,南山区,\"深圳市南山区
科技中路1号\",张三,B,game-agent-01;;  pool-agent-02 ,
914403001922038216,华为\t技术,spa,龙岗区,,,a,bad agent!,blue
9144030071526726xg,again,pool,南山区,,,C,GAME-AGENT-01
914403001922038216,short row
";

#[test]
fn a_file_of_every_kind_of_problem_reads_the_same_both_ways() {
    for kind in [Kind::Entities, Kind::Items, Kind::Inspectors] {
        assert_eq!(
            in_place(ENTITIES, kind),
            old_path(ENTITIES, kind),
            "{kind:?}"
        );
    }
    let Ok((rows, records, Err(errors))) = in_place(ENTITIES, Kind::Entities) else {
        panic!("the file has problems");
    };
    assert_eq!((rows, records.len()), (4, 1));
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(got.contains(&"line 4: colour: unknown field; expected code, name, domain, district, risk (optional: address, contact, agents)".to_owned()), "{got:#?}");
    assert!(
        got.contains(
            &"line 5: code: 9144030071526726xg is already used on line 2; each must be unique"
                .to_owned()
        ),
        "{got:#?}"
    );
    assert!(
        got.contains(
            &"line 5: agents: GAME-AGENT-01 is already used on line 2; each must be unique"
                .to_owned()
        ),
        "{got:#?}"
    );
    assert!(got.contains(&"line 6: -: the row has 2 fields but the header has 9: check for a missing or extra comma, or quote the value".to_owned()), "{got:#?}");
    assert!(
        got.iter()
            .any(|e| e.starts_with("line 4: agents: id holds ' '")),
        "{got:#?}"
    );
}

#[test]
fn a_repeated_header_takes_its_last_value_that_is_not_empty() {
    let text = "code,name,name\n9144030071526726XG,first,second\n914403001922038216,first,\n";
    let rows = raw_rows(text).unwrap();
    assert_eq!(rows, read_csv(text, "f.csv").unwrap());
    let name = |r: &RawRow| r.fields.get("name").cloned();
    assert_eq!(name(&rows[0]), Some(RawValue::Text("second".into())));
    assert_eq!(name(&rows[1]), Some(RawValue::Text("first".into())));
}

#[test]
fn keys_pack_by_their_upper_case_and_the_two_forms_never_meet() {
    assert_eq!(pack("9144030071526726xg"), pack("9144030071526726XG"));
    assert_ne!(pack("9144030071526726XG"), pack("9144030071526726XH"));
    assert_eq!(pack("agent-1"), pack("AGENT-1"));
    assert_ne!(pack("agent-1"), pack("agent-1\0"));
    assert_eq!(pack("a-sixteen-bytes!"), None, "16 bytes do not fit");
    assert_eq!(pack("9144030071526726XI"), None, "I is not in the alphabet");
    let mut seen = Seen::default();
    assert_eq!(seen.first("agent-1", 2), None);
    assert_eq!(seen.first("a-sixteen-bytes!", 3), None);
    assert_eq!(seen.first("AGENT-1", 4), Some(2));
    assert_eq!(seen.first("A-SIXTEEN-BYTES!", 5), Some(3));
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "code", "name", "domain", "district", "risk", "address", "contact", "agents",
        ]),
        1 => proptest::sample::select(vec![
            "id", "department", "legal_basis", "kind", "method", "rule_pack", "certificate",
            "fields", "active", "conflicts", "colour", " code ", "\u{feff}name", "",
        ]),
    ]
    .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "9144030071526726XG", "914403001922038216", " 9144030071526726xg ",
            "9144030071526726XH", "91440300MA5F1234I2", "pool", " game ", "spa", "hospital",
            "A", "b", "E1x", "agent-1", "agent-1;agent-2", " ; AGENT-2 ;", "bad id!", "",
            "  ", "名称\t制表", "\"quoted, with comma\"", "\"two\nlines\"", "true", "否",
            "health", "general", "重点", "remote", "on-site", "pool;hospital", "hb-001",
            "44030001", "a-sixteen-bytes!", "A-SIXTEEN-BYTES!",
        ])
        .prop_map(str::to_owned),
        1 => proptest::string::string_regex("[a-zA-Z0-9 ;,\"\\t\\n-]{0,10}").unwrap(),
    ]
}

fn file() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(header_name(), 1..10),
        proptest::collection::vec(proptest::collection::vec(value(), 0..11), 0..8),
    )
        .prop_map(|(header, rows)| {
            let mut text = header.join(",");
            for row in rows {
                text.push('\n');
                text.push_str(&row.join(","));
            }
            text.push('\n');
            text
        })
}

proptest! {
    #[test]
    fn the_in_place_reader_accepts_and_refuses_what_the_old_path_does(text in file()) {
        prop_assert_eq!(raw_rows(&text), read_csv(&text, "f.csv").map_err(|e| e.to_string()));
        for kind in [Kind::Entities, Kind::Items, Kind::Inspectors] {
            prop_assert_eq!(in_place(&text, kind), old_path(&text, kind));
        }
    }

    #[test]
    fn packed_keys_are_equal_exactly_when_the_upper_cased_values_are(
        a in "[0-9A-Za-z_-]{0,18}",
        b in "[0-9A-Za-z_-]{0,18}",
    ) {
        if let (Some(x), Some(y)) = (pack(&a), pack(&b)) {
            prop_assert_eq!(x == y, a.eq_ignore_ascii_case(&b));
        }
    }
}

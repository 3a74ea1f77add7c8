//! Import error reporting and atomicity.

use std::collections::HashSet;

use spotcheck_collector::registry::import::{parse_rows, read_csv, read_json, Records};
use spotcheck_collector::registry::parse::Kind;
use spotcheck_collector::registry::store::{entities, known_entities, write};
use spotcheck_collector::store;
use spotcheck_collector::store::db::{args, connect, Conn, DbUrl, Mode, Sql};

/// A fresh store in `dir`, through the store interface.
fn open(dir: &std::path::Path) -> Conn {
    connect(&DbUrl::Sqlite(store::db_path(dir)), Mode::Write).unwrap()
}

const ENTITIES_CSV: &str = "\
code,name,domain,district,address,contact,risk,agents
9144030071526726XG,深圳市腾讯计算机系统有限公司,game,南山区,\"深圳市南山区粤海街道
麻岭社区科技中路1号\",张三 0755-1234567,B,game-agent-01
914403001922038216,华为技术有限公司,hospital,龙岗区,深圳市龙岗区坂田华为基地,李四,A,
9144030071526726XH,坏的校验码,pool,南山区,,,C,
91440300MA5F12345Z,另一家,spa,南山区,,,E1x,
914403001922038216,重复,pool,南山区,,,A,
";

#[test]
fn every_bad_csv_row_is_reported_with_its_line_and_field() {
    let rows = read_csv(ENTITIES_CSV, "entities.csv").unwrap();
    // The quoted address spans two lines, so the rows start on lines 2, 4, 5, 6, 7.
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![2, 4, 5, 6, 7]
    );
    let errors = parse_rows(Kind::Entities, &rows, &HashSet::new()).unwrap_err();
    let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (5, "code"),
            (6, "code"),
            (6, "domain"),
            (6, "risk"),
            (7, "code"),
        ],
        "{errors:#?}"
    );
    assert!(
        errors[0].reason.contains("check character"),
        "{}",
        errors[0]
    );
    assert!(
        errors[4].reason.contains("already used on line 4"),
        "{}",
        errors[4]
    );
    assert!(
        errors[2].to_string().starts_with("line 6: domain: "),
        "{}",
        errors[2]
    );
}

#[test]
fn json_rows_are_numbered_by_the_line_their_object_starts_on() {
    let json = r#"[
  {"id": "hb-001", "name": "王五", "certificate": "44030001", "department": "health",
   "fields": ["pool", "hospital"], "active": true},
  {"id": "hb 002", "name": "赵六", "certificate": "44030002", "department": "health",
   "fields": "pool;spa", "active": "maybe", "conflicts": ["9144030071526726XG"]},
  {"id": "hb-003", "name": "钱七", "certificate": "44030001", "department": "health",
   "fields": ["pool"], "colour": "blue"}
]"#;
    let rows = read_json(json, "inspectors.json").unwrap();
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![2, 4, 6]
    );
    let errors = parse_rows(Kind::Inspectors, &rows, &HashSet::new()).unwrap_err();
    let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (4, "id"),
            (4, "fields"),
            (4, "active"),
            (6, "certificate"),
            (6, "colour")
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_csv_row_with_a_missing_comma_is_one_more_reported_row() {
    let csv = "id,name,department,legal_basis,kind,method\n\
        pool-water-quality,游泳场所水质卫生,health,GB 37488-2019,general,both\n\
        game-minors,网络游戏防沉迷,culture,国新出发〔2019〕34号,key\n\
        x,y,health,z,sometimes,remote\n";
    let rows = read_csv(csv, "items.csv").unwrap();
    let errors = parse_rows(Kind::Items, &rows, &HashSet::new()).unwrap_err();
    let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![(3, "-"), (3, "method"), (4, "kind")],
        "{errors:#?}"
    );
    assert!(errors[0]
        .reason
        .contains("has 5 fields but the header has 6"));
}

#[test]
fn broken_json_syntax_names_the_line() {
    let err = read_json("[\n {\"id\": 1},\n {\"id\": }\n]", "x.json").unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn a_file_with_one_bad_row_imports_nothing_and_a_good_one_imports_everything() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path());
    let rows = read_csv(ENTITIES_CSV, "entities.csv").unwrap();
    assert!(parse_rows(Kind::Entities, &rows, &HashSet::new()).is_err());
    assert!(entities(&conn).unwrap().is_empty());

    let good: String = ENTITIES_CSV.lines().take(4).collect::<Vec<_>>().join("\n");
    let rows = read_csv(&good, "entities.csv").unwrap();
    let records = parse_rows(Kind::Entities, &rows, &HashSet::new()).unwrap();
    assert!(matches!(&records, Records::Entities(v) if v.len() == 2));
    assert_eq!(write(&conn, &records).unwrap(), 2);
    let stored = entities(&conn).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[1].address,
        "深圳市南山区粤海街道\n麻岭社区科技中路1号"
    );
    assert_eq!(known_entities(&conn).unwrap().len(), 2);
}

#[test]
fn conflicts_must_name_entities_of_the_library() {
    let json = r#"[{"id": "hb-001", "name": "王五", "certificate": "44030001",
        "department": "health", "fields": ["pool"], "conflicts": ["9144030071526726XG"]}]"#;
    let rows = read_json(json, "i.json").unwrap();
    let errors = parse_rows(Kind::Inspectors, &rows, &HashSet::new()).unwrap_err();
    assert_eq!(errors[0].field, "conflicts");
    assert!(errors[0].reason.contains("import the entities first"));
}

#[test]
fn the_command_line_dry_run_reports_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("entities.csv");
    std::fs::write(&file, ENTITIES_CSV).unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_spotcheck-collector");
    let out = std::process::Command::new(bin)
        .args([
            "registry",
            "import",
            "--kind",
            "entities",
            "--dry-run",
            "--data",
        ])
        .arg(&data)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 5: code:"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert!(!data.exists(), "a dry run creates nothing");
}

/// A valid entity row for credit code number `n` (the GB 32100 check character computed).
fn entity_row(n: usize) -> String {
    use spotcheck_collector::registry::credit_code::{check_character, ALPHABET};
    let mut first17 = *b"91440300000000000";
    let mut v = n;
    for i in (8..17).rev() {
        first17[i] = ALPHABET[v % 31];
        v /= 31;
    }
    let check = check_character(&first17).unwrap();
    let code = format!("{}{check}", std::str::from_utf8(&first17).unwrap());
    format!("{code},单位{n},pool,福田区,,,B,agent-{n}")
}

#[test]
fn a_streamed_import_writes_nothing_when_a_late_row_is_bad_and_everything_when_none_is() {
    use spotcheck_collector::registry::import::CsvRows;
    use spotcheck_collector::registry::store::{import, Imported};

    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path());
    let header = "code,name,domain,district,address,contact,risk,agents";
    let good: Vec<String> = (0..2000).map(entity_row).collect();
    let audit_entries = |c: &Conn| -> i64 {
        c.query_row("SELECT count(*) FROM audit_log", args![], |r| r.get(0))
            .unwrap()
    };
    let before = audit_entries(&conn);

    // 2,000 good rows, then one whose agent id repeats row 1's: the rows already written in
    // the open transaction are rolled back, and the problem names the late line.
    let mut bad = good.clone();
    bad.push(entity_row(5000).replace("agent-5000", "agent-1"));
    let text = format!("{header}\n{}\n", bad.join("\n"));
    let rows = CsvRows::new(text.as_bytes(), "e.csv".into()).unwrap();
    match import(Some(&conn), None, Kind::Entities, rows).unwrap() {
        Imported::Refused {
            rows,
            accepted,
            errors,
        } => {
            assert_eq!(
                (rows, accepted),
                (2001, 2000),
                "rows read and rows that would pass"
            );
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!((errors[0].line, errors[0].field.as_str()), (2002, "agents"));
            assert!(
                errors[0].reason.contains("already used on line 3"),
                "{errors:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(entities(&conn).unwrap().is_empty(), "nothing is written");
    assert_eq!(audit_entries(&conn), before, "nothing is audited");

    let text = format!("{header}\n{}\n", good.join("\n"));
    let rows = CsvRows::new(text.as_bytes(), "e.csv".into()).unwrap();
    assert!(matches!(
        import(Some(&conn), None, Kind::Entities, rows).unwrap(),
        Imported::Rows(2000)
    ));
    assert_eq!(entities(&conn).unwrap().len(), 2000);
    assert_eq!(
        audit_entries(&conn),
        before + 1,
        "one registry_changed entry"
    );
}

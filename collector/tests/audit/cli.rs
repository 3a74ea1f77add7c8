//! `audit verify` and `audit export` through the built binary, exit codes included.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::{data_dir_with, open};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spotcheck-collector"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn verify_on_a_good_store_prints_ok_with_count_and_head_and_exits_0() {
    let (dir, entries) = data_dir_with(5);
    let o = run(&["audit", "verify", "--data", p(dir.path())]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        stdout(&o),
        format!("ok: 5 entries, head {}\n", entries[4].hash)
    );
}

#[test]
fn export_writes_json_lines_that_verify_as_a_file_and_match_stdout() {
    let (dir, entries) = data_dir_with(4);
    let file = dir.path().join("audit.jsonl");
    let o = run(&[
        "audit",
        "export",
        "--data",
        p(dir.path()),
        "--out",
        p(&file),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 4);
    let o = run(&["audit", "export", "--data", p(dir.path())]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), written);
    let o = run(&["audit", "verify", p(&file), "--head", &entries[3].hash]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("ok: 4 entries, head "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn verify_on_a_tampered_store_prints_every_problem_and_exits_1() {
    let (dir, _) = data_dir_with(6);
    let conn = open(dir.path());
    conn.execute("UPDATE audit_log SET ts_ms = 0 WHERE seq = 2", [])
        .unwrap();
    conn.execute("DELETE FROM audit_log WHERE seq = 5", [])
        .unwrap();
    drop(conn);
    let o = run(&["audit", "verify", "--data", p(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.starts_with("FAILED: 2 problem(s)\n"), "{out}");
    assert!(out.contains("  seq 2: hash:"), "{out}");
    assert!(out.contains("  seq 5: missing"), "{out}");
}

#[test]
fn verify_against_a_published_head_catches_a_truncated_tail() {
    let (dir, entries) = data_dir_with(4);
    let head = entries[3].hash.clone();
    open(dir.path())
        .execute("DELETE FROM audit_log WHERE seq = 4", [])
        .unwrap();
    let ok = run(&["audit", "verify", "--data", p(dir.path())]);
    assert_eq!(ok.status.code(), Some(0));
    let o = run(&["audit", "verify", "--data", p(dir.path()), "--head", &head]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("head: the published head {head}")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_malformed_head_or_a_missing_source_is_a_usage_error() {
    let (dir, _) = data_dir_with(1);
    let o = run(&["audit", "verify", "--data", p(dir.path()), "--head", "abc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a SHA-256 hash"));
    let o = run(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    let o = run(&["audit", "verify", "--data", p(dir.path()), "x.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "--data and a file conflict");
    let o = run(&["audit", "verify", p(&dir.path().join("absent.jsonl"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["audit", "export", "--data", p(empty.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no database"));
}

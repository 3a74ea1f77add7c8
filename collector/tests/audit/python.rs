//! docs/audit_verify.py, an independent stdlib-only checker, reaches the same verdict as ours
//! on good and tampered exports. Skipped (with a message) where python3 is absent; CI has it.

use std::path::Path;
use std::process::Command;

use spotcheck_collector::audit::{entry_hash, AuditEntry};

use crate::helpers::{data_dir_with, jsonl};

const CHECKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit_verify.py");

fn python() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn exit(cmd: &mut Command) -> (i32, String) {
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// (ours, theirs) for a file and an optional head.
fn verdicts(file: &Path, head: Option<&str>) -> ((i32, String), (i32, String)) {
    let mut ours = Command::new(env!("CARGO_BIN_EXE_spotcheck-collector"));
    ours.args(["audit", "verify"]).arg(file);
    let mut theirs = Command::new("python3");
    theirs.arg(CHECKER).arg(file);
    if let Some(h) = head {
        ours.args(["--head", h]);
        theirs.args(["--head", h]);
    }
    (exit(&mut ours), exit(&mut theirs))
}

fn rehash(e: &mut AuditEntry) {
    e.hash = entry_hash(
        e.seq,
        e.ts_ms,
        e.kind.as_str(),
        &e.subject,
        &e.body,
        &e.prev_hash,
    );
}

#[test]
fn the_python_checker_agrees_with_ours_on_good_and_tampered_exports() {
    if !python() {
        eprintln!("python3 not found: skipping the cross-check with docs/audit_verify.py");
        return;
    }
    let (dir, good) = data_dir_with(6);
    let head = good[5].hash.clone();
    let mut cases: Vec<(&str, String, Option<String>)> =
        vec![("good", jsonl(&good), Some(head.clone()))];
    let mut body = good.clone();
    body[2].body = body[2].body.replace("compliant", "violations");
    cases.push(("edited body", jsonl(&body), None));
    let mut ts = good.clone();
    ts[1].ts_ms += 1;
    cases.push(("edited ts", jsonl(&ts), None));
    let mut swapped = good.clone();
    swapped.swap(1, 2);
    cases.push(("swapped", jsonl(&swapped), None));
    let mut deleted = good.clone();
    deleted.remove(3);
    cases.push(("deleted middle", jsonl(&deleted), None));
    cases.push(("deleted last", jsonl(&good[..5]), Some(head.clone())));
    let mut forged = good.clone();
    let mut f = good[3].clone();
    f.body = r#"{"task":1}"#.into();
    rehash(&mut f);
    forged.insert(3, f);
    cases.push(("forged", jsonl(&forged), None));
    let mut relinked = good.clone();
    relinked[2].body = r#"{"task":2}"#.into();
    rehash(&mut relinked[2]);
    cases.push(("rehashed edit", jsonl(&relinked), None));
    cases.push((
        "unknown kind",
        jsonl(&good).replacen("\"kind\":\"recusal\"", "\"kind\":\"erased\"", 1),
        None,
    ));
    let spaced = jsonl(&good).replace("\"seq\":", "\"seq\": ");
    cases.push(("whitespace in the line", spaced, Some(head.clone())));

    for (name, text, head) in &cases {
        let file = dir.path().join(format!("{}.jsonl", name.replace(' ', "-")));
        std::fs::write(&file, text).unwrap();
        let ((ours, our_out), (theirs, their_out)) = verdicts(&file, head.as_deref());
        let expected = if name.starts_with("good") || name.starts_with("whitespace") {
            0
        } else {
            1
        };
        assert_eq!(ours, expected, "{name}: ours said {our_out}");
        assert_eq!(theirs, expected, "{name}: audit_verify.py said {their_out}");
        if expected == 0 {
            // Ours may add how far the published head is behind; the ok line is the same.
            assert!(
                our_out.starts_with(their_out.trim_end()),
                "{name}: {our_out} vs {their_out}"
            );
        }
    }
}

#[test]
fn the_python_checker_computes_the_documented_test_vector() {
    if !python() {
        eprintln!("python3 not found: skipping");
        return;
    }
    let script = format!(
        "import importlib.util as u; s = u.spec_from_file_location('v', {CHECKER:?}); m = u.module_from_spec(s); s.loader.exec_module(m); \
         print(m.entry_hash(1, 1700000000000, 'publication', 'task:42', '{{\"entity\":\"91440300MA0000001X\",\"result\":\"no_problem\",\"task\":42}}', m.GENESIS))"
    );
    let (code, out) = exit(Command::new("python3").args(["-c", &script]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "68035d93ba94574ec32e9ccf69885b4279bf108565d025d22a771a1a0924d0c0"
    );
}

//! A chain verifies; each kind of tampering is detected and named.

use rusqlite::params;
use serde_json::json;
use spotcheck_collector::audit::{self, entry_hash, AuditError, EntryKind, Problem, GENESIS};
use spotcheck_protocol::UnixMillis;

use crate::helpers::{append_n, fresh, jsonl, problems, T0};

#[test]
fn a_chain_of_entries_verifies_and_its_head_is_the_last_entry() {
    let (_dir, mut conn) = fresh();
    assert_eq!(audit::head(&conn).unwrap(), None);
    let appended = append_n(&mut conn, 12);
    assert_eq!(appended[0].prev_hash, GENESIS);
    assert_eq!(appended[0].seq, 1);
    for w in appended.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    let last = appended.last().unwrap();
    assert_eq!(audit::head(&conn).unwrap(), Some((12, last.hash.clone())));
    let (stored, unreadable) = audit::read_all(&conn).unwrap();
    assert!(unreadable.is_empty());
    assert_eq!(stored, appended);
    let report = audit::verify_store(&conn, Some(&last.hash)).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 12);
    assert_eq!(report.head_hash(), last.hash);
    assert_eq!(report.published_head_seq, Some(12));
}

#[test]
fn an_empty_log_verifies_with_the_genesis_head() {
    let (_dir, conn) = fresh();
    let report = audit::verify_store(&conn, Some(GENESIS)).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.head_hash(), GENESIS);
}

#[test]
fn bodies_are_stored_as_canonical_json_and_the_hash_covers_every_field() {
    let (_dir, mut conn) = fresh();
    let tx = conn.transaction().unwrap();
    let e = audit::append(
        &tx,
        EntryKind::Verdict,
        "task:7",
        &json!({ "z": 1, "a": { "y": true, "b": null } }),
        UnixMillis(T0),
    )
    .unwrap();
    tx.commit().unwrap();
    // `by` names the acting party: nobody set one here, so the collector itself.
    assert_eq!(e.body, r#"{"a":{"b":null,"y":true},"by":"system","z":1}"#);
    assert_eq!(
        e.hash,
        entry_hash(1, T0, "verdict", "task:7", &e.body, GENESIS)
    );
}

#[test]
fn an_audit_entry_rolls_back_with_the_transaction_it_was_written_in() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 2);
    {
        let tx = conn.transaction().unwrap();
        audit::append(
            &tx,
            EntryKind::Override,
            "task:1",
            &json!({}),
            UnixMillis(T0),
        )
        .unwrap();
        // Dropped without commit: the change it recorded did not happen, nor did the entry.
    }
    assert_eq!(audit::head(&conn).unwrap().unwrap().0, 2);
    assert!(problems(&conn, None).is_empty());
}

#[test]
fn append_refuses_personal_data_keys_non_object_bodies_and_bad_subjects() {
    let (_dir, mut conn) = fresh();
    let tx = conn.transaction().unwrap();
    let err = audit::append(
        &tx,
        EntryKind::Assignment,
        "task:1",
        &json!({ "task": 1, "inspectors": [{ "id": "hb-0001", "Name": "张三" }] }),
        UnixMillis(T0),
    )
    .unwrap_err();
    assert!(
        matches!(&err, AuditError::PersonalData { key, .. } if key == "Name"),
        "{err}"
    );
    assert!(err.to_string().contains("pass ids instead"), "{err}");
    let err = audit::append(
        &tx,
        EntryKind::Verdict,
        "task:1",
        &json!([1]),
        UnixMillis(T0),
    )
    .unwrap_err();
    assert!(matches!(err, AuditError::BodyNotObject { .. }), "{err}");
    for subject in ["", "task:1\nforged"] {
        let err = audit::append(&tx, EntryKind::Verdict, subject, &json!({}), UnixMillis(T0))
            .unwrap_err();
        assert!(matches!(err, AuditError::BadSubject { .. }), "{err}");
    }
    assert_eq!(audit::head(&tx).unwrap(), None);
}

#[test]
fn editing_a_body_is_detected_and_named_by_seq_and_hash() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 5);
    conn.execute(
        "UPDATE audit_log SET body = ?1 WHERE seq = 3",
        [r#"{"n":[2,"水质"],"outcome":"violations","pack":"pool-2026","task":102}"#],
    )
    .unwrap();
    let p = problems(&conn, None);
    assert!(
        matches!(p.as_slice(), [Problem::HashMismatch { seq: 3, .. }]),
        "{p:?}"
    );
    let text = p[0].to_string();
    assert!(text.starts_with("seq 3: hash:"), "{text}");
    assert!(text.contains("body"), "{text}");
}

#[test]
fn a_body_edited_out_of_canonical_form_names_the_body_field() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 3);
    conn.execute("UPDATE audit_log SET body = body || ' ' WHERE seq = 2", [])
        .unwrap();
    let p = problems(&conn, None);
    assert!(
        p.contains(&Problem::BadField {
            seq: 2,
            field: "body",
            reason: "not in canonical form (sorted keys, no whitespace)".into()
        }),
        "{p:?}"
    );
    assert!(p
        .iter()
        .any(|p| matches!(p, Problem::HashMismatch { seq: 2, .. })));
}

#[test]
fn editing_a_kind_is_detected() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 5);
    conn.execute("UPDATE audit_log SET kind = 'override' WHERE seq = 2", [])
        .unwrap();
    let p = problems(&conn, None);
    assert!(
        matches!(p.as_slice(), [Problem::HashMismatch { seq: 2, .. }]),
        "{p:?}"
    );
}

#[test]
fn a_kind_edited_to_an_unknown_code_is_named_as_unreadable() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 5);
    conn.execute("UPDATE audit_log SET kind = 'deleted' WHERE seq = 2", [])
        .unwrap();
    let p = problems(&conn, None);
    assert!(
        matches!(&p[0], Problem::Unreadable { at, reason } if at == "seq 2" && reason.contains("unknown entry kind")),
        "{p:?}"
    );
}

#[test]
fn editing_a_timestamp_is_detected() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 5);
    conn.execute(
        "UPDATE audit_log SET ts_ms = ts_ms - 86400000 WHERE seq = 4",
        [],
    )
    .unwrap();
    let p = problems(&conn, None);
    assert!(
        matches!(p.as_slice(), [Problem::HashMismatch { seq: 4, .. }]),
        "{p:?}"
    );
}

#[test]
fn editing_an_entry_and_recomputing_its_hash_breaks_the_next_link() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 5);
    let body = r#"{"task":999}"#;
    let forged = entry_hash(
        3,
        e[2].ts_ms,
        e[2].kind.as_str(),
        &e[2].subject,
        body,
        &e[2].prev_hash,
    );
    conn.execute(
        "UPDATE audit_log SET body = ?1, hash = ?2 WHERE seq = 3",
        params![body, forged],
    )
    .unwrap();
    let p = problems(&conn, None);
    assert!(
        matches!(p.as_slice(), [Problem::BrokenLink { seq: 4, .. }]),
        "{p:?}"
    );
    assert!(
        p[0].to_string().starts_with("seq 4: prev_hash:"),
        "{}",
        p[0]
    );
    // A head published before the edit is still found (only the head entry matters), but
    // the broken link remains.
    assert!(!audit::verify_store(&conn, Some(&e[4].hash))
        .unwrap()
        .is_ok());
}

#[test]
fn swapping_two_stored_entries_is_detected_at_both() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 6);
    // Exchange every column but seq between rows 3 and 4.
    conn.execute_batch(
        "UPDATE audit_log SET seq = -3 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = 4;
         UPDATE audit_log SET seq = 4 WHERE seq = -3;",
    )
    .unwrap();
    let p = problems(&conn, None);
    for seq in [3, 4] {
        assert!(
            p.iter()
                .any(|p| matches!(p, Problem::HashMismatch { seq: s, .. } if *s == seq)),
            "{p:?}"
        );
    }
    assert!(
        p.iter()
            .any(|p| matches!(p, Problem::BrokenLink { seq: 5, .. })),
        "{p:?}"
    );
}

#[test]
fn swapping_two_lines_of_an_export_is_named_as_out_of_order() {
    let (_dir, mut conn) = fresh();
    let mut e = append_n(&mut conn, 6);
    e.swap(2, 3);
    let (entries, unreadable) = audit::read_jsonl(jsonl(&e).as_bytes()).unwrap();
    assert!(unreadable.is_empty());
    let p = audit::verify(&entries, None).problems;
    assert_eq!(p, vec![Problem::OutOfOrder { seq: 3, after: 4 }]);
}

#[test]
fn deleting_a_middle_entry_is_named_as_missing() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 6);
    conn.execute("DELETE FROM audit_log WHERE seq = 3", [])
        .unwrap();
    let p = problems(&conn, None);
    assert_eq!(p, vec![Problem::Missing { from: 3, to: 3 }]);
    assert_eq!(p[0].to_string(), "seq 3: missing: the entry was deleted");
}

#[test]
fn deleting_the_first_entries_is_named_as_missing() {
    let (_dir, mut conn) = fresh();
    append_n(&mut conn, 6);
    conn.execute("DELETE FROM audit_log WHERE seq <= 2", [])
        .unwrap();
    assert_eq!(
        problems(&conn, None),
        vec![Problem::Missing { from: 1, to: 2 }]
    );
}

#[test]
fn deleting_the_last_entry_is_caught_only_against_a_published_head() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 6);
    let published = e[5].hash.clone();
    conn.execute("DELETE FROM audit_log WHERE seq = 6", [])
        .unwrap();
    assert!(problems(&conn, None).is_empty(), "undetectable on its own");
    let p = problems(&conn, Some(&published));
    assert_eq!(
        p,
        vec![Problem::HeadNotFound {
            head: published.clone()
        }]
    );
    assert!(p[0].to_string().contains("truncated"), "{}", p[0]);
    // The head may be given in upper case, as some tools print hex.
    assert_eq!(problems(&conn, Some(&published.to_uppercase())).len(), 1);
}

#[test]
fn a_log_that_grew_since_its_head_was_published_verifies() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 4);
    append_n(&mut conn, 3);
    let report = audit::verify_store(&conn, Some(&e[3].hash)).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.published_head_seq, Some(4));
    assert_eq!(report.head.unwrap().0, 7);
}

#[test]
fn a_forged_entry_inserted_into_an_export_is_detected() {
    let (_dir, mut conn) = fresh();
    let mut e = append_n(&mut conn, 5);
    // A well-formed entry with seq 4 that links to seq 3, inserted before the real seq 4.
    let mut forged = e[3].clone();
    forged.body = r#"{"result":"no_problem","task":103}"#.into();
    forged.hash = entry_hash(
        4,
        forged.ts_ms,
        forged.kind.as_str(),
        &forged.subject,
        &forged.body,
        &forged.prev_hash,
    );
    e.insert(3, forged);
    let (entries, _) = audit::read_jsonl(jsonl(&e).as_bytes()).unwrap();
    let p = audit::verify(&entries, None).problems;
    assert!(p.contains(&Problem::Duplicate { seq: 4 }), "{p:?}");
    assert!(
        p.iter()
            .any(|p| matches!(p, Problem::BrokenLink { seq: 5, .. })),
        "{p:?}"
    );
}

#[test]
fn a_forged_entry_with_the_rest_of_the_chain_rewritten_fails_against_the_head() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 5);
    let published = e[4].hash.clone();
    // The forger inserts at seq 3 and rehashes everything after: consistent on its own.
    let mut rewritten = e[..2].to_vec();
    let mut forged = e[2].clone();
    forged.body = r#"{"task":1}"#.into();
    rewritten.push(forged);
    rewritten.extend(e[2..].iter().cloned());
    for i in 2..rewritten.len() {
        let prev = rewritten[i - 1].hash.clone();
        let r = &mut rewritten[i];
        r.seq = i as i64 + 1;
        r.prev_hash = prev;
        r.hash = entry_hash(
            r.seq,
            r.ts_ms,
            r.kind.as_str(),
            &r.subject,
            &r.body,
            &r.prev_hash,
        );
    }
    assert!(audit::verify(&rewritten, None).is_ok());
    let p = audit::verify(&rewritten, Some(&published)).problems;
    assert_eq!(p, vec![Problem::HeadNotFound { head: published }]);
}

#[test]
fn a_forged_entry_appended_to_the_store_without_the_right_link_is_detected() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 3);
    let body = r#"{"task":5}"#;
    let hash = entry_hash(4, T0, "publication", "task:5", body, GENESIS);
    conn.execute(
        "INSERT INTO audit_log (seq, ts_ms, kind, subject, body, prev_hash, hash)
         VALUES (4, ?1, 'publication', 'task:5', ?2, ?3, ?4)",
        params![T0, body, GENESIS, hash],
    )
    .unwrap();
    let p = problems(&conn, None);
    assert_eq!(
        p,
        vec![Problem::BrokenLink {
            seq: 4,
            prev_hash: GENESIS.into(),
            expected: e[2].hash.clone()
        }]
    );
}

#[test]
fn export_and_import_round_trip_every_column() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 4);
    let mut out = Vec::new();
    assert_eq!(audit::export_jsonl(&conn, &mut out).unwrap(), 4);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 4);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "body",
            "hash",
            "kind",
            "prev_hash",
            "seq",
            "subject",
            "ts_ms"
        ]
    );
    let (back, unreadable) = audit::read_jsonl(text.as_bytes()).unwrap();
    assert!(unreadable.is_empty());
    assert_eq!(back, e);
}

#[test]
fn unreadable_lines_are_named_and_the_rest_is_still_verified() {
    let (_dir, mut conn) = fresh();
    let e = append_n(&mut conn, 3);
    let mut text = jsonl(&e);
    text = text.replacen("\"kind\":\"recusal\"", "\"kind\":\"erased\"", 1);
    text.push_str("not json\n\n");
    let (entries, unreadable) = audit::read_jsonl(text.as_bytes()).unwrap();
    assert_eq!(entries.len(), 2);
    let at: Vec<&str> = unreadable
        .iter()
        .map(|p| match p {
            Problem::Unreadable { at, .. } => at.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(at, ["line 3", "line 4"]);
    let mut report = audit::verify(&entries, None);
    report.add_unreadable(unreadable);
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

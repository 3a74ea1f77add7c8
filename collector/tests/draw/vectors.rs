//! The test vectors in `collector/tests/vectors/`: the generator's output, whole draw records
//! (full and public form) and their commitments, which `docs/draw_reference.py` checks
//! independently (`python.rs`).
//!
//! Regenerate (only when the specification changes on purpose):
//! `SPOTCHECK_WRITE_VECTORS=1 cargo test -p spotcheck-collector --test draw -- --ignored`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use spotcheck_collector::draw::rng::DrawRng;
use spotcheck_collector::draw::{
    draw, verify, verify_public, Commitment, DrawRecord, Quota, SaltKey, Seed, Sha256,
};

use spotcheck_collector::registry::model::DrawId;

use super::helpers::{code, input, inspector};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Seeds of the vectors: SHA-256 of a label, so anyone can rebuild them.
pub fn seed(label: &str) -> Seed {
    Seed(Sha256::of(label.as_bytes()).0)
}

/// Salt keys of the vectors, likewise.
pub fn salt_key(label: &str) -> SaltKey {
    SaltKey(Sha256::of(format!("{label} salt key").as_bytes()).0)
}

/// The commitment a record's draw published (as `GET /api/v1/public/draw-commitments` lists).
pub fn commitment_of(r: &DrawRecord) -> Commitment {
    Commitment {
        commitment: r.commitment,
        parameters: r.parameters.clone(),
        digests: r.committed().digests,
        plan: None,
        committed_ms: 0,
        revealed_ms: None,
        window_end: None,
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RngVector {
    seed: Seed,
    next_u64: Vec<String>,
    below: Vec<Below>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Below {
    n: String,
    value: String,
}

fn rng_vector(label: &str) -> RngVector {
    let s = seed(label);
    let mut rng = DrawRng::new(&s);
    let next_u64 = (0..8).map(|_| rng.next_u64().to_string()).collect();
    // Decimal strings: u64 does not fit a JSON number in every language.
    let below = [1u64, 2, 3, 7, 10, 1000, 1 << 32, (1 << 63) + 1, u64::MAX]
        .into_iter()
        .map(|n| Below {
            n: n.to_string(),
            value: rng.below(n).to_string(),
        })
        .collect();
    RngVector {
        seed: s,
        next_u64,
        below,
    }
}

pub fn small_record() -> DrawRecord {
    // 12 candidates over A-D, 5 inspectors, conflicts, one recusal.
    let classes = [0, 1, 2, 3, 3, 2, 1, 0, 3, 2, 3, 1];
    let conflicts = [(3, 0), (3, 1), (4, 2), (8, 4), (10, 0)];
    let quotas = [
        Quota::RatioBp(500),
        Quota::Count(1),
        Quota::RatioBp(6000),
        Quota::RatioBp(10_000),
    ];
    let inp = input(&classes, 5, &conflicts, quotas, 2);
    let label = "spotcheck vector small";
    let mut r = DrawRecord::make(seed(label), salt_key(label), &inp).unwrap();
    let first = r.draws[0].clone();
    r.recuse(
        &first.entity,
        &first.inspectors[1],
        seed("spotcheck vector small recusal 1"),
    )
    .unwrap();
    r
}

pub fn medium_record() -> DrawRecord {
    let classes: Vec<usize> = (0..200).map(|i| (i * 7 + i / 3) % 4).collect();
    let conflicts: Vec<(u32, u32)> = (0..60).map(|i| ((i * 13) % 200, (i * 5) % 20)).collect();
    let quotas = [
        Quota::RatioBp(500),
        Quota::RatioBp(2000),
        Quota::RatioBp(6000),
        Quota::RatioBp(10_000),
    ];
    let mut inp = input(&classes, 20, &conflicts, quotas, 2);
    // Its own draw id, so that the two vectors' commitments can be told apart.
    inp.parameters.draw_id = DrawId::new("2026-health-pool-b2").unwrap();
    let label = "spotcheck vector medium";
    let mut r = DrawRecord::make(seed(label), salt_key(label), &inp).unwrap();
    for k in 0..3 {
        let a = r.draws[k * 5].clone();
        r.recuse(
            &a.entity,
            &a.inspectors[0],
            seed(&format!("spotcheck vector medium recusal {k}")),
        )
        .unwrap();
    }
    r
}

fn vectors() -> Vec<(&'static str, String)> {
    let pretty = |v: &dyn erased_json::Pretty| v.pretty();
    vec![
        ("rng.json", pretty(&rng_vector("spotcheck vector rng"))),
        ("draw-small.json", pretty(&small_record())),
        ("draw-medium.json", pretty(&medium_record())),
        ("public-small.json", pretty(&small_record().to_public())),
        ("public-medium.json", pretty(&medium_record().to_public())),
        (
            "commitments.json",
            pretty(&vec![
                commitment_of(&small_record()),
                commitment_of(&medium_record()),
            ]),
        ),
    ]
}

mod erased_json {
    pub trait Pretty {
        fn pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Pretty for T {
        fn pretty(&self) -> String {
            serde_json::to_string_pretty(self).unwrap() + "\n"
        }
    }
}

#[test]
#[ignore = "writes the vector files; run with SPOTCHECK_WRITE_VECTORS=1"]
fn regenerate_vectors() {
    if std::env::var_os("SPOTCHECK_WRITE_VECTORS").is_none() {
        return;
    }
    for (name, text) in vectors() {
        std::fs::write(dir().join(name), text).unwrap();
    }
}

#[test]
fn the_stored_vectors_are_what_this_build_computes() {
    for (name, text) in vectors() {
        let stored = std::fs::read_to_string(dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; regenerate the vectors"));
        assert!(
            stored == text,
            "{name} differs from this build's output: the algorithm changed"
        );
    }
}

#[test]
fn every_stored_draw_record_verifies() {
    for name in ["draw-small.json", "draw-medium.json"] {
        let text = std::fs::read_to_string(dir().join(name)).unwrap();
        let record: DrawRecord = serde_json::from_str(&text).unwrap();
        assert!(verify(&record).is_empty(), "{name}: {:?}", verify(&record));
        let input = record.input().unwrap();
        assert_eq!(draw(&record.seed, &input).unwrap(), record.draws, "{name}");
        assert!(!record.replacements.is_empty(), "{name} exercises 递补");
    }
    for name in ["public-small.json", "public-medium.json"] {
        let text = std::fs::read_to_string(dir().join(name)).unwrap();
        let record = serde_json::from_str(&text).unwrap();
        let check = verify_public(&record);
        assert!(check.mismatches.is_empty(), "{name}: {check:?}");
    }
}

#[test]
fn the_small_vector_excludes_its_conflicts() {
    let r = small_record();
    for a in r.teams() {
        for c in &r.conflicts {
            assert!(!(c.entity == a.entity && a.inspectors.contains(&c.inspector)));
        }
    }
    // Candidate 3 conflicts with inspectors 0 and 1: if drawn, neither is on its team.
    if let Some(a) = r.draws.iter().find(|a| a.entity == code(3)) {
        assert!(!a.inspectors.contains(&inspector(0).id));
        assert!(!a.inspectors.contains(&inspector(1).id));
    }
}

#[test]
fn the_verify_command_says_match_or_names_the_edited_field_and_exits_non_zero() {
    let bin = env!("CARGO_BIN_EXE_spotcheck-collector");
    let good = dir().join("draw-small.json");
    let out = std::process::Command::new(bin)
        .args(["draw", "verify"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(": match"));

    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let other = record["inspectors"][4]["id"].clone();
    record["replacements"][0]["replacement"] = other;
    let tmp = tempfile::tempdir().unwrap();
    let edited = tmp.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&[record]).unwrap()).unwrap();
    let out = std::process::Command::new(bin)
        .args(["draw", "verify"])
        .arg(&edited)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    assert!(stdout.contains("replacements[0].replacement"), "{stdout}");
}

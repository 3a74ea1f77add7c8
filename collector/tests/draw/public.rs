//! The public form of a record: what it leaves out, that it verifies with what it holds, and
//! that `draw verify --commitments` refuses a record re-made with another seed.

use std::collections::HashSet;
use std::process::Command;

use proptest::prelude::*;
use serde_json::Value;
use spotcheck_collector::draw::{verify, verify_public, DrawRecord, SaltKey, Seed};

use super::helpers::input;
use super::vectors::{commitment_of, dir, medium_record, salt_key, seed, small_record};

/// Every string anywhere in a JSON value.
fn strings(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Whether any object has a `conflicts` key holding a list.
pub fn has_conflict_list(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_conflict_list),
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| (k == "conflicts" && x.is_array()) || has_conflict_list(x)),
        _ => false,
    }
}

#[test]
fn a_public_record_holds_no_undrawn_candidate_no_class_of_one_no_conflict_and_no_key() {
    for full in [small_record(), medium_record()] {
        let public = serde_json::to_value(full.to_public()).unwrap();
        let top: HashSet<&str> = public
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for hidden in ["candidates", "conflicts", "salt_key"] {
            assert!(!top.contains(hidden), "public record has {hidden}");
        }
        let mut texts = HashSet::new();
        strings(&public, &mut texts);
        let drawn: HashSet<_> = full.draws.iter().map(|a| a.entity.as_str()).collect();
        let undrawn: Vec<_> = full
            .candidates
            .iter()
            .filter(|c| !drawn.contains(c.code.as_str()))
            .collect();
        assert!(!undrawn.is_empty());
        for c in undrawn {
            assert!(
                !public.to_string().contains(c.code.as_str()),
                "undrawn candidate {} (class {}) is named",
                c.code,
                c.class
            );
        }
        assert!(
            !texts.contains(&full.salt_key.to_string()),
            "the salt key leaks"
        );
        // No conflict pair: no list of conflicts anywhere (only their keyed digest).
        assert!(!full.conflicts.is_empty());
        assert!(!has_conflict_list(&public), "a conflict list is published");
        let check = verify_public(&full.to_public());
        assert!(check.mismatches.is_empty(), "{check:?}");
    }
}

#[test]
fn editing_a_drawn_entity_or_an_undrawn_entry_of_a_public_record_is_noticed() {
    let full = small_record();
    let good = full.to_public();
    // Swap the first drawn entity for an undrawn candidate of the same class, with its true
    // salt (the collector, who knows the key, could compute it): its index is wrong.
    let drawn: HashSet<_> = full.draws.iter().map(|a| &a.entity).collect();
    let first = &full.draws[0];
    let other = full
        .candidates
        .iter()
        .find(|c| c.class == first.class && !drawn.contains(&c.code))
        .expect("an undrawn candidate of the class");
    let mut swapped = good.clone();
    swapped.draws[0].entity = other.code.clone();
    swapped.draws[0].salt = full.salt_key.salt(&other.code);
    let m = verify_public(&swapped).mismatches;
    assert!(m.iter().any(|m| m.field == "draws[0]"), "{m:?}");

    let mut salted = good.clone();
    salted.draws[1].salt = full.salt_key.salt(&full.draws[0].entity);
    assert!(!verify_public(&salted).mismatches.is_empty());

    let mut list = good.clone();
    let s = list.strata.iter_mut().find(|s| s.size > 1).unwrap();
    s.hashes.swap(0, 1);
    let m = verify_public(&list).mismatches;
    assert!(m.iter().any(|m| m.field == "digests.strata"), "{m:?}");

    let mut sized = good.clone();
    sized.strata[0].size += 1;
    assert!(!verify_public(&sized).mismatches.is_empty());

    let mut team = good;
    team.draws[0].inspectors.reverse();
    let m = verify_public(&team).mismatches;
    assert!(m.iter().any(|m| m.field == "draws[0].inspectors"), "{m:?}");
}

fn key() -> impl Strategy<Value = SaltKey> {
    any::<[u8; 32]>().prop_map(SaltKey)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_public_form_of_any_valid_record_verifies(
        classes in prop::collection::vec(0usize..4, 0..60),
        pool in 2u32..12,
        raw_conflicts in prop::collection::vec((0u32..60, 0u32..12), 0..30),
        ratios in [0u32..=10_000, 0u32..=10_000, 0u32..=10_000, 0u32..=10_000],
        s in any::<[u8; 32]>(),
        k in key(),
    ) {
        let n = classes.len() as u32;
        let conflicts: Vec<_> = raw_conflicts.into_iter().filter(|&(e, i)| e < n && i < pool).collect();
        let quotas = ratios.map(spotcheck_collector::draw::Quota::RatioBp);
        let inp = input(&classes, pool, &conflicts, quotas, 2);
        let Ok(full) = DrawRecord::make(Seed(s), k, &inp) else { return Ok(()); };
        prop_assert!(verify(&full).is_empty());
        let check = verify_public(&full.to_public());
        prop_assert!(check.mismatches.is_empty(), "{:?}", check);
        if conflicts.is_empty() {
            prop_assert_eq!(check.passed_over, 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any one edited field of a public record is noticed by the public check or by the check
    /// against the published commitment — except a team member or a replacement swapped for
    /// another pool inspector, which the public cannot tell from an undisclosed conflict (the
    /// full record's check notices those).
    #[test]
    fn the_public_check_with_the_commitment_notices_any_edited_field(
        s in any::<[u8; 32]>(),
        k in key(),
        recuse_seed in any::<[u8; 32]>(),
        pick in any::<prop::sample::Index>(),
        alt in any::<prop::sample::Index>(),
    ) {
        let classes: Vec<usize> = (0..40).map(|i| (i * 7 + i / 3) % 4).collect();
        let conflicts = [(3, 0), (3, 1), (4, 2), (8, 4), (10, 0), (17, 3)];
        let quotas = [2000, 3000, 5000, 10_000].map(spotcheck_collector::draw::Quota::RatioBp);
        let inp = input(&classes, 6, &conflicts, quotas, 2);
        let mut full = DrawRecord::make(Seed(s), k, &inp).unwrap();
        let a = full.draws[0].clone();
        full.recuse(&a.entity, &a.inspectors[0], Seed(recuse_seed)).unwrap();
        let published = vec![commitment_of(&full)];
        let original = serde_json::to_value(full.to_public()).unwrap();
        let mut leaves = Vec::new();
        super::properties::collect_leaves(&original, String::new(), &mut leaves);
        let team_or_replacement =
            |p: &str| (p.starts_with("/draws/") && p.contains("/inspectors/")) || p.ends_with("/replacement");
        leaves.retain(|(p, _)| !team_or_replacement(p));
        let (path, value) = leaves[pick.index(leaves.len())].clone();
        let key = super::properties::key_of(&path);
        let same_key: Vec<&Value> = leaves
            .iter()
            .filter(|(p, v)| super::properties::key_of(p) == key && *v != value)
            .map(|(_, v)| v)
            .collect();
        let edited_value = if same_key.is_empty() {
            super::properties::mutate(&value)
        } else {
            same_key[alt.index(same_key.len())].clone()
        };
        let mut edited = original.clone();
        *edited.pointer_mut(&path).unwrap() = edited_value;
        prop_assert_ne!(&edited, &original);
        if let Ok(r) = serde_json::from_value::<spotcheck_collector::draw::PublicRecord>(edited) {
            let mut found = verify_public(&r).mismatches;
            found.extend(spotcheck_collector::draw::check_against(&r.committed(), &published));
            prop_assert!(!found.is_empty(), "edit of {} went unnoticed", path);
        }
    }
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spotcheck-collector"))
        .arg("draw")
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn a_reseeded_forgery_verifies_alone_but_fails_against_the_published_commitments_file() {
    let tmp = tempfile::tempdir().unwrap();
    let genuine = small_record();
    // The forger holds everything, salt key included, and re-makes the draw with a seed of
    // their choosing: the record is consistent in itself.
    let inp = genuine.input().unwrap();
    let forged = DrawRecord::make(
        seed("a seed of my choosing"),
        salt_key("spotcheck vector small"),
        &inp,
    )
    .unwrap();
    assert!(verify(&forged).is_empty());
    assert_ne!(forged.draws, genuine.draws);
    let commitments = tmp.path().join("commitments.json");
    std::fs::write(
        &commitments,
        serde_json::to_string(&vec![commitment_of(&genuine)]).unwrap(),
    )
    .unwrap();
    for (name, json) in [
        ("forged.json", serde_json::to_string(&forged).unwrap()),
        (
            "forged-public.json",
            serde_json::to_string(&forged.to_public()).unwrap(),
        ),
    ] {
        let file = tmp.path().join(name);
        std::fs::write(&file, json).unwrap();
        let (code, out) = run(&[file.as_os_str()]);
        assert_eq!(code, 0, "{name} alone: {out}");
        let (code, out) = run(&[
            file.as_os_str(),
            "--commitments".as_ref(),
            commitments.as_os_str(),
        ]);
        assert_eq!(code, 1, "{name} against the commitments: {out}");
        assert!(
            out.contains("MISMATCH") && out.contains("commitment: record says"),
            "{out}"
        );
    }
    // The genuine records, full and public, match their commitments.
    for name in ["draw-small.json", "public-small.json"] {
        let (code, out) = run(&[
            dir().join(name).as_os_str(),
            "--commitments".as_ref(),
            dir().join("commitments.json").as_os_str(),
        ]);
        assert_eq!(code, 0, "{name}: {out}");
        assert!(out.contains("as committed"), "{out}");
    }
    // A record whose draw has no published commitment fails, naming the draw.
    let empty = tmp.path().join("none.json");
    std::fs::write(&empty, "[]").unwrap();
    let (code, out) = run(&[
        dir().join("draw-small.json").as_os_str(),
        "--commitments".as_ref(),
        empty.as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no commitment for draw 2026-health-pool-b1"),
        "{out}"
    );
}

//! Property tests of the draw (proptest).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::Value;
use spotcheck_collector::draw::algorithm::stratum_size;
use spotcheck_collector::draw::{
    draw, verify, DrawError, DrawInput, DrawRecord, Quota, SaltKey, Seed,
};

use super::helpers::input;

fn quota() -> impl Strategy<Value = Quota> {
    prop_oneof![
        (0u32..=10_000).prop_map(Quota::RatioBp),
        (0u64..6).prop_map(Quota::Count),
    ]
}

prop_compose! {
    fn any_input()(
        classes in prop::collection::vec(0usize..4, 0..60),
        pool in 2u32..12,
        raw_conflicts in prop::collection::vec((0u32..60, 0u32..12), 0..30),
        quotas in [quota(), quota(), quota(), quota()],
        per_entity in 2u32..4,
    ) -> DrawInput {
        let n = classes.len() as u32;
        let conflicts: Vec<_> = raw_conflicts
            .into_iter()
            .filter(|&(e, i)| e < n && i < pool)
            .collect();
        input(&classes, pool, &conflicts, quotas, per_entity)
    }
}

fn seed() -> impl Strategy<Value = Seed> {
    any::<[u8; 32]>().prop_map(Seed)
}

/// Whether an error is one the input really deserves.
fn error_is_justified(input: &DrawInput, e: &DrawError) -> bool {
    match e {
        DrawError::QuotaAbovePool {
            class,
            wanted,
            available,
        } => {
            let n = input
                .candidates
                .iter()
                .filter(|c| &c.class == class)
                .count() as u64;
            n == *available && wanted > available
        }
        DrawError::TooFewInspectors {
            entity,
            eligible,
            needed,
        } => {
            let conflicted = input
                .conflicts
                .iter()
                .filter(|c| &c.entity == entity)
                .count();
            input.inspectors.len() - conflicted == *eligible && eligible < &(*needed as usize)
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_same_seed_and_input_always_give_the_same_draw(input in any_input(), seed in seed()) {
        prop_assert_eq!(draw(&seed, &input), draw(&seed, &input));
    }

    #[test]
    fn a_draw_meets_every_rule_or_fails_for_a_stated_reason(input in any_input(), seed in seed()) {
        let result = match draw(&seed, &input) {
            Ok(r) => r,
            Err(e) => {
                prop_assert!(error_is_justified(&input, &e), "unjustified error: {e}");
                return Ok(());
            }
        };
        let conflicts: HashSet<_> = input
            .conflicts
            .iter()
            .map(|c| (c.entity.clone(), c.inspector.clone()))
            .collect();
        let mut seen = HashSet::new();
        let mut per_class: HashMap<_, u64> = HashMap::new();
        for a in &result {
            prop_assert!(seen.insert(a.entity.clone()), "entity {} drawn twice", a.entity);
            *per_class.entry(a.class.clone()).or_default() += 1;
            let team: HashSet<_> = a.inspectors.iter().collect();
            prop_assert_eq!(team.len(), a.inspectors.len(), "an inspector twice on one team");
            prop_assert!(a.inspectors.len() >= 2);
            prop_assert_eq!(a.inspectors.len(), input.parameters.inspectors_per_entity as usize);
            for i in &a.inspectors {
                prop_assert!(
                    !conflicts.contains(&(a.entity.clone(), i.clone())),
                    "conflicted inspector {} at {}", i, a.entity
                );
            }
        }
        for s in &input.parameters.strata {
            let n = input.candidates.iter().filter(|c| c.class == s.class).count() as u64;
            let k = stratum_size(&s.class, s.quota, n).unwrap();
            prop_assert_eq!(per_class.get(&s.class).copied().unwrap_or(0), k, "stratum {}", s.class);
        }
    }

    #[test]
    fn without_conflicts_loads_differ_by_at_most_one(
        classes in prop::collection::vec(0usize..4, 1..80),
        pool in 2u32..12,
        seed in seed(),
    ) {
        let all = [Quota::RatioBp(10_000); 4];
        let input = input(&classes, pool, &[], all, 2);
        let result = draw(&seed, &input).unwrap();
        let mut load: HashMap<_, u64> = input.inspectors.iter().map(|i| (i.id.clone(), 0)).collect();
        for a in &result {
            for i in &a.inspectors {
                *load.get_mut(i).unwrap() += 1;
            }
        }
        let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
        prop_assert!(max - min <= 1, "loads {:?}", load);
    }

    #[test]
    fn replacements_keep_teams_conflict_free_full_and_verifiable(
        input in any_input(),
        seed in seed(),
        recusals in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), seed()), 1..6),
    ) {
        let Ok(mut record) = DrawRecord::make(seed, SaltKey(seed.0), &input) else { return Ok(()); };
        if record.draws.is_empty() {
            return Ok(());
        }
        for (entity, member, s) in recusals {
            let teams = record.teams();
            let team = &teams[entity.index(teams.len())];
            let who = team.inspectors[member.index(team.inspectors.len())].clone();
            match record.recuse(&team.entity.clone(), &who, s) {
                Ok(r) => prop_assert_ne!(&r.replacement, &who),
                Err(DrawError::NoReplacement { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
        let conflicts: HashSet<_> = record
            .conflicts
            .iter()
            .map(|c| (c.entity.clone(), c.inspector.clone()))
            .collect();
        for a in record.teams() {
            let distinct: HashSet<_> = a.inspectors.iter().collect();
            prop_assert_eq!(distinct.len(), input.parameters.inspectors_per_entity as usize);
            for i in &a.inspectors {
                prop_assert!(!conflicts.contains(&(a.entity.clone(), i.clone())));
            }
        }
        for r in &record.replacements {
            let earlier: Vec<_> = record
                .replacements
                .iter()
                .take_while(|x| !std::ptr::eq(*x, r))
                .filter(|x| x.entity == r.entity)
                .map(|x| &x.recused)
                .collect();
            prop_assert!(!earlier.contains(&&r.replacement), "a recused inspector came back");
        }
        prop_assert!(verify(&record).is_empty(), "{:?}", verify(&record));
    }

    #[test]
    fn verify_detects_any_edited_field(
        input in any_input(),
        seed in seed(),
        recuse_seed in seed(),
        pick in any::<prop::sample::Index>(),
        alt in any::<prop::sample::Index>(),
    ) {
        let Ok(mut record) = DrawRecord::make(seed, SaltKey(seed.0), &input) else { return Ok(()); };
        if let Some(a) = record.draws.first().cloned() {
            // A recusal, when someone can replace; either way the record stays valid.
            let _ = record.recuse(&a.entity, &a.inspectors[0], recuse_seed);
        }
        prop_assert!(verify(&record).is_empty(), "{:?}", verify(&record));
        let original = serde_json::to_value(&record).unwrap();
        let mut leaves = Vec::new();
        collect_leaves(&original, String::new(), &mut leaves);
        let (path, value) = leaves[pick.index(leaves.len())].clone();
        let key = key_of(&path);
        let same_key: Vec<&Value> = leaves
            .iter()
            .filter(|(p, v)| key_of(p) == key && *v != value)
            .map(|(_, v)| v)
            .collect();
        let edited_value = if same_key.is_empty() {
            mutate(&value)
        } else {
            same_key[alt.index(same_key.len())].clone()
        };
        let mut edited = original.clone();
        *edited.pointer_mut(&path).unwrap() = edited_value;
        prop_assert_ne!(&edited, &original);
        match serde_json::from_value::<DrawRecord>(edited) {
            Err(_) => {} // The edit made the record unreadable: detected.
            Ok(r) => prop_assert!(!verify(&r).is_empty(), "edit of {} went unnoticed", path),
        }
    }
}

/// The last path segment that names a field (skipping array indices).
pub fn key_of(path: &str) -> &str {
    path.rsplit('/')
        .find(|s| !s.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("")
}

/// Every leaf as (JSON pointer, value).
pub fn collect_leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                collect_leaves(x, format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_leaves(x, format!("{path}/{i}"), out);
            }
        }
        leaf => out.push((path, leaf.clone())),
    }
}

/// A different value of the same JSON type.
pub fn mutate(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::from(n.as_u64().unwrap_or(0) + 1),
        Value::String(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let flipped = if s.starts_with('0') { "1" } else { "0" };
            Value::String(format!("{flipped}{}", &s[1..]))
        }
        Value::String(s) => Value::String(format!("{s}x")),
        Value::Bool(b) => Value::Bool(!b),
        Value::Null => Value::from(1),
        other => other.clone(),
    }
}

//! The draw itself: stratified sampling without replacement, then inspector assignment.
//! Every step is specified in `docs/draw-algorithm.md`; keep the two in step.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use super::input::{Conflict, DrawInput, Quota, Seed};
use super::rng::DrawRng;
use super::DrawError;
use crate::registry::model::{InspectorId, RiskClass};
use crate::registry::CreditCode;

/// One drawn entity and its team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The entity.
    pub entity: CreditCode,
    /// Its stratum.
    pub class: RiskClass,
    /// Its inspectors, in the order they were assigned.
    pub inspectors: Vec<InspectorId>,
}

/// How many entities a stratum of `n` candidates gives.
pub fn stratum_size(class: &RiskClass, quota: Quota, n: u64) -> Result<u64, DrawError> {
    let k = match quota {
        Quota::Count(k) => k,
        Quota::RatioBp(bp) if bp > 10_000 => {
            return Err(DrawError::RatioAboveAll {
                class: class.clone(),
                ratio_bp: bp,
            })
        }
        Quota::RatioBp(bp) => (u128::from(n) * u128::from(bp)).div_ceil(10_000) as u64,
    };
    if k > n {
        return Err(DrawError::QuotaAbovePool {
            class: class.clone(),
            wanted: k,
            available: n,
        });
    }
    Ok(k)
}

/// Positions in the pool (sorted by id) of the inspectors conflicted with each entity.
fn conflict_positions(input: &DrawInput) -> Result<HashMap<&CreditCode, Vec<u32>>, DrawError> {
    let pos: HashMap<&InspectorId, u32> = input
        .inspectors
        .iter()
        .enumerate()
        .map(|(i, x)| (&x.id, i as u32))
        .collect();
    let mut out: HashMap<&CreditCode, Vec<u32>> = HashMap::new();
    for Conflict { entity, inspector } in &input.conflicts {
        let p = *pos.get(inspector).ok_or_else(|| {
            DrawError::Input(format!(
                "conflict names inspector {inspector}, who is not in the pool"
            ))
        })?;
        out.entry(entity).or_default().push(p);
    }
    Ok(out)
}

/// What the two phases start from, once every check that does not depend on the seed passed:
/// the candidates of each class (indices in candidate order), each stratum's size, and the
/// pool positions conflicted with each entity.
struct Prepared<'a> {
    by_class: HashMap<&'a RiskClass, Vec<u32>>,
    sizes: Vec<u64>,
    conflicts: HashMap<&'a CreditCode, Vec<u32>>,
}

/// Every check of a draw that comes before any randomness is used: the input is canonical,
/// each stratum's quota fits its pool, and every candidate of a stratum that draws at all has
/// enough inspectors without a conflict. So whether a draw is possible never depends on the
/// seed.
fn prepare(input: &DrawInput) -> Result<Prepared<'_>, DrawError> {
    input.check_canonical()?;
    let p = &input.parameters;
    // Phase 1: entities. Check every stratum's size before drawing anything.
    let mut by_class: HashMap<&RiskClass, Vec<u32>> = HashMap::new();
    for (i, c) in input.candidates.iter().enumerate() {
        by_class.entry(&c.class).or_default().push(i as u32);
    }
    let mut sizes = Vec::with_capacity(p.strata.len());
    for s in &p.strata {
        let n = by_class.get(&s.class).map_or(0, Vec::len) as u64;
        sizes.push(stratum_size(&s.class, s.quota, n)?);
    }
    let conflicts = conflict_positions(input)?;
    let needed = p.inspectors_per_entity;
    let pool = input.inspectors.len();

    // Every candidate that could be drawn must have enough eligible inspectors, so that an
    // impossible draw fails whatever the seed.
    for (s, &k) in p.strata.iter().zip(&sizes) {
        if k == 0 {
            continue;
        }
        for &e in by_class.get(&s.class).map_or(&[][..], Vec::as_slice) {
            let code = &input.candidates[e as usize].code;
            let eligible = pool - conflicts.get(code).map_or(0, Vec::len);
            if eligible < needed as usize {
                return Err(DrawError::TooFewInspectors {
                    entity: code.clone(),
                    eligible,
                    needed,
                });
            }
        }
    }
    Ok(Prepared {
        by_class,
        sizes,
        conflicts,
    })
}

/// Whether a draw over `input` is possible: the checks [`draw`] makes before it uses the
/// seed, with the same errors, without making the draw. The commit refuses an impossible
/// draw with this (impossibility does not depend on the seed).
pub fn check_possible(input: &DrawInput) -> Result<(), DrawError> {
    prepare(input).map(|_| ())
}

/// Makes the draw: deterministic in (seed, input).
///
/// Phase 1 draws each stratum, in the listed order, by a partial Fisher–Yates shuffle of its
/// candidates (in credit-code order). Phase 2 gives each drawn entity, in draw order, the
/// `inspectors_per_entity` non-conflicted inspectors with the smallest (load, key, position),
/// where key is a fresh `u64` drawn whenever an inspector's load changes.
pub fn draw(seed: &Seed, input: &DrawInput) -> Result<Vec<Assignment>, DrawError> {
    let Prepared {
        mut by_class,
        sizes,
        conflicts,
    } = prepare(input)?;
    let p = &input.parameters;
    let needed = p.inspectors_per_entity;
    let pool = input.inspectors.len();
    let mut rng = DrawRng::new(seed);

    let mut drawn: Vec<u32> = Vec::with_capacity(sizes.iter().sum::<u64>() as usize);
    for (s, &k) in p.strata.iter().zip(&sizes) {
        let mut members = by_class.remove(&s.class).unwrap_or_default();
        let n = members.len() as u64;
        for i in 0..k {
            let j = i + rng.below(n - i);
            members.swap(i as usize, j as usize);
        }
        drawn.extend_from_slice(&members[..k as usize]);
    }

    // Phase 2: inspectors. A min-heap of (load, key, position).
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = (0..pool as u32)
        .map(|pos| Reverse((0, rng.next_u64(), pos)))
        .collect();
    let mut out = Vec::with_capacity(drawn.len());
    let mut chosen: Vec<(u64, u32)> = Vec::with_capacity(needed as usize);
    let mut skipped: Vec<(u64, u64, u32)> = Vec::new();
    for &e in &drawn {
        let cand = &input.candidates[e as usize];
        let conflicted = conflicts.get(&cand.code).map_or(&[][..], Vec::as_slice);
        chosen.clear();
        skipped.clear();
        while chosen.len() < needed as usize {
            let Reverse((load, key, pos)) = heap.pop().expect("eligibility was checked");
            if conflicted.contains(&pos) {
                skipped.push((load, key, pos));
            } else {
                chosen.push((load, pos));
            }
        }
        for &(load, pos) in &chosen {
            heap.push(Reverse((load + 1, rng.next_u64(), pos)));
        }
        for &entry in &skipped {
            heap.push(Reverse(entry));
        }
        out.push(Assignment {
            entity: cand.code.clone(),
            class: cand.class.clone(),
            inspectors: chosen
                .iter()
                .map(|&(_, pos)| input.inspectors[pos as usize].id.clone())
                .collect(),
        });
    }
    Ok(out)
}

/// The replacement (递补) for `recused` at `entity`, given the current teams (after the draw
/// and earlier replacements) and everyone who recused from `entity` before (`earlier`).
///
/// Eligible: pool inspectors without a conflict with the entity, not on its current team and
/// not among those who recused from it. Among the eligible with the smallest current load (in
/// pool order), the one at index `below(count)` of a generator keyed with `seed` is chosen.
pub fn replacement(
    seed: &Seed,
    input: &DrawInput,
    teams: &[Assignment],
    entity: &CreditCode,
    recused: &InspectorId,
    earlier: &[InspectorId],
) -> Result<InspectorId, DrawError> {
    let team = teams
        .iter()
        .find(|a| &a.entity == entity)
        .ok_or_else(|| DrawError::Recusal(format!("entity {entity} was not drawn")))?;
    let mut load: HashMap<&InspectorId, u64> = HashMap::new();
    for a in teams {
        for i in &a.inspectors {
            *load.entry(i).or_default() += 1;
        }
    }
    let excluded = |id: &InspectorId| {
        team.inspectors.contains(id)
            || id == recused
            || earlier.contains(id)
            || input
                .conflicts
                .binary_search_by(|c| (&c.entity, &c.inspector).cmp(&(entity, id)))
                .is_ok()
    };
    let eligible: Vec<(&InspectorId, u64)> = input
        .inspectors
        .iter()
        .filter(|i| !excluded(&i.id))
        .map(|i| (&i.id, load.get(&i.id).copied().unwrap_or(0)))
        .collect();
    let min = eligible
        .iter()
        .map(|e| e.1)
        .min()
        .ok_or_else(|| DrawError::NoReplacement {
            entity: entity.clone(),
            recused: recused.clone(),
        })?;
    let tied: Vec<&InspectorId> = eligible
        .into_iter()
        .filter(|e| e.1 == min)
        .map(|e| e.0)
        .collect();
    let mut rng = DrawRng::new(seed);
    Ok(tied[rng.below(tied.len() as u64) as usize].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(c: &str) -> RiskClass {
        RiskClass::new(c).unwrap()
    }

    #[test]
    fn ratios_round_up_and_counts_are_exact() {
        assert_eq!(
            stratum_size(&class("A"), Quota::RatioBp(500), 30).unwrap(),
            2
        );
        assert_eq!(
            stratum_size(&class("A"), Quota::RatioBp(500), 20).unwrap(),
            1
        );
        assert_eq!(stratum_size(&class("A"), Quota::RatioBp(0), 20).unwrap(), 0);
        assert_eq!(
            stratum_size(&class("D"), Quota::RatioBp(10_000), 7).unwrap(),
            7
        );
        assert_eq!(stratum_size(&class("B"), Quota::Count(3), 3).unwrap(), 3);
    }

    fn input(quota: Quota, conflicted: u32) -> DrawInput {
        use super::super::input::{Candidate, Conflict, Parameters, PoolInspector, Stratum};
        use crate::registry::model::{Department, DrawId, ItemId};
        let code = |i: u32| CreditCode::complete(&format!("91440305MA{i:07}")).unwrap();
        let inspectors: Vec<PoolInspector> = (0..3)
            .map(|i| PoolInspector {
                id: InspectorId::new(format!("hb-{i}")).unwrap(),
                name: format!("inspector {i}"),
            })
            .collect();
        DrawInput::new(
            Parameters {
                draw_id: DrawId::new("t").unwrap(),
                department: Department::new("health").unwrap(),
                item: ItemId::new("pool-water-quality").unwrap(),
                inspectors_per_entity: 2,
                strata: vec![Stratum {
                    class: class("A"),
                    quota,
                }],
            },
            (0..5)
                .map(|i| Candidate {
                    code: code(i),
                    class: class("A"),
                })
                .collect(),
            inspectors.clone(),
            inspectors[..conflicted as usize]
                .iter()
                .map(|i| Conflict {
                    entity: code(4),
                    inspector: i.id.clone(),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn check_possible_refuses_exactly_what_the_draw_refuses_with_the_same_error() {
        let seed = Seed([7; 32]);
        for (quota, conflicted) in [
            (Quota::Count(2), 0),
            (Quota::Count(5), 1),
            (Quota::Count(6), 0),
            (Quota::RatioBp(10_001), 0),
            (Quota::Count(1), 2),
            (Quota::Count(0), 3),
        ] {
            let input = input(quota, conflicted);
            let drawn = draw(&seed, &input).map(|_| ());
            assert_eq!(check_possible(&input), drawn, "{quota:?}, {conflicted}");
        }
        assert!(check_possible(&input(Quota::Count(1), 2)).is_err());
        assert!(check_possible(&input(Quota::Count(5), 1)).is_ok());
    }

    #[test]
    fn a_quota_above_the_pool_is_refused_with_both_numbers() {
        let e = stratum_size(&class("B"), Quota::Count(4), 3).unwrap_err();
        assert_eq!(
            e,
            DrawError::QuotaAbovePool {
                class: class("B"),
                wanted: 4,
                available: 3
            }
        );
        assert!(matches!(
            stratum_size(&class("B"), Quota::RatioBp(10_001), 3),
            Err(DrawError::RatioAboveAll { .. })
        ));
    }
}

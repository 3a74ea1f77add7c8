//! The public form of a draw record (`GET /api/v1/public/draws`, after the batch's inspection
//! window) and its verification from what it holds.
//!
//! It names no undrawn candidate and no risk class of one, and no conflict: per stratum it
//! holds the committed list of salted hashes SHA-256(salt ‖ code) in candidate order, and per
//! drawn entity its code, class and salt. Anyone recomputes the drawn indices from the seed and
//! the strata sizes and checks that each drawn entity opens the entry at its index; the teams
//! are recomputed with conflicts unknown, so an inspector passed over is taken to have had a
//! conflict (only the full record checks those against the committed conflicts digest).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::algorithm::{stratum_size, Assignment};
use super::input::{
    salted_entry, strata_digest, DrawInput, Parameters, PoolInspector, Seed, Sha256, StratumList,
    ALGORITHM,
};
use super::record::{replacements_digest, teams_after, DrawRecord, Replacement};
use super::rng::DrawRng;
use super::verify::{mismatch, Mismatch};
use crate::registry::model::{InspectorId, RiskClass};
use crate::registry::CreditCode;

/// The digests a public record carries (all but `replacements` were published with the
/// commitment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicDigests {
    /// Of the parameters' text form.
    pub parameters: Sha256,
    /// Of the inspector pool.
    pub inspectors: Sha256,
    /// Keyed digest of every conflict (only the full record can recompute it).
    pub conflicts: Sha256,
    /// Of the stratum lists.
    pub strata: Sha256,
    /// Of the recusal requests.
    pub replacements: Sha256,
}

/// A drawn entity as published: its code, class and salt, and its team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicDraw {
    /// The entity.
    pub entity: CreditCode,
    /// Its stratum.
    pub class: RiskClass,
    /// Its salt: SHA-256(salt ‖ entity) is its entry in the stratum list.
    pub salt: Sha256,
    /// Its team, in the order assigned.
    pub inspectors: Vec<InspectorId>,
}

/// The public form of a revealed draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicRecord {
    /// The algorithm version.
    pub algorithm: String,
    /// SHA-256 of the seed, published before the draw.
    pub commitment: Sha256,
    /// The seed.
    pub seed: Seed,
    /// The parameters.
    pub parameters: Parameters,
    /// The digests.
    pub digests: PublicDigests,
    /// Per stratum: class, size and salted hashes, in parameter order.
    pub strata: Vec<StratumList>,
    /// The inspector pool (canonical order).
    pub inspectors: Vec<PoolInspector>,
    /// The drawn entities, in draw order.
    pub draws: Vec<PublicDraw>,
    /// Replacement draws.
    #[serde(default)]
    pub replacements: Vec<Replacement>,
}

impl DrawRecord {
    /// The public form of this record: no undrawn candidate, no conflict, no salt key.
    pub fn to_public(&self) -> PublicRecord {
        let input = DrawInput {
            parameters: self.parameters.clone(),
            candidates: self.candidates.clone(),
            inspectors: Vec::new(),
            conflicts: Vec::new(),
        };
        PublicRecord {
            algorithm: self.algorithm.clone(),
            commitment: self.commitment,
            seed: self.seed,
            parameters: self.parameters.clone(),
            digests: PublicDigests {
                parameters: self.digests.parameters,
                inspectors: self.digests.inspectors,
                conflicts: self.digests.conflicts,
                strata: self.digests.strata,
                replacements: self.digests.replacements,
            },
            strata: input.stratum_lists(&self.salt_key),
            inspectors: self.inspectors.clone(),
            draws: self
                .draws
                .iter()
                .map(|a| PublicDraw {
                    entity: a.entity.clone(),
                    class: a.class.clone(),
                    salt: self.salt_key.salt(&a.entity),
                    inspectors: a.inspectors.clone(),
                })
                .collect(),
            replacements: self.replacements.clone(),
        }
    }
}

impl PublicRecord {
    /// The drawn entities and their teams, as assignments.
    pub fn assignments(&self) -> Vec<Assignment> {
        self.draws
            .iter()
            .map(|d| Assignment {
                entity: d.entity.clone(),
                class: d.class.clone(),
                inspectors: d.inspectors.clone(),
            })
            .collect()
    }
}

/// The outcome of the public check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicCheck {
    /// What differs; empty if the record matches.
    pub mismatches: Vec<Mismatch>,
    /// Inspectors passed over while recomputing the teams, taken to have had a conflict with
    /// the entity: the public cannot check these (the full record can).
    pub passed_over: usize,
}

/// Verifies a public record with what it holds: the commitment, the parameters, pool and
/// stratum digests, the drawn entities (indices from the seed and the strata sizes; each opens
/// its entry), the teams up to undisclosed conflicts, and what of the replacements does not
/// depend on conflicts.
pub fn verify_public(r: &PublicRecord) -> PublicCheck {
    let mut check = PublicCheck::default();
    let out = &mut check.mismatches;
    if r.algorithm != ALGORITHM {
        out.push(mismatch(
            "algorithm",
            format!(
                "record uses {:?}, this build implements {ALGORITHM:?}",
                r.algorithm
            ),
        ));
        return check;
    }
    if r.seed.commitment() != r.commitment {
        out.push(mismatch(
            "commitment",
            format!(
                "record says {}, SHA-256 of the seed is {}",
                r.commitment,
                r.seed.commitment()
            ),
        ));
    }
    let pool = DrawInput {
        parameters: r.parameters.clone(),
        candidates: Vec::new(),
        inspectors: r.inspectors.clone(),
        conflicts: Vec::new(),
    };
    if let Err(e) = pool.check_canonical() {
        out.push(mismatch("parameters/inspectors", e.to_string()));
        return check;
    }
    let classes: Vec<&RiskClass> = r.parameters.strata.iter().map(|s| &s.class).collect();
    let listed: Vec<&RiskClass> = r.strata.iter().map(|s| &s.class).collect();
    if classes != listed {
        out.push(mismatch(
            "strata",
            format!("lists classes {listed:?}, the parameters {classes:?}"),
        ));
        return check;
    }
    for (i, s) in r.strata.iter().enumerate() {
        if s.size != s.hashes.len() as u64 {
            out.push(mismatch(
                format!("strata[{i}].size"),
                format!("says {}, the list holds {} hashes", s.size, s.hashes.len()),
            ));
        }
    }
    for (field, stated, computed) in [
        (
            "digests.parameters",
            r.digests.parameters,
            pool.parameters_digest(),
        ),
        (
            "digests.inspectors",
            r.digests.inspectors,
            pool.inspectors_digest(),
        ),
        ("digests.strata", r.digests.strata, strata_digest(&r.strata)),
        (
            "digests.replacements",
            r.digests.replacements,
            replacements_digest(&r.replacements),
        ),
    ] {
        if stated != computed {
            out.push(mismatch(
                field,
                format!("record says {stated}, its contents give {computed}"),
            ));
        }
    }
    let mut rng = DrawRng::new(&r.seed);
    match drawn_indices(r, &mut rng) {
        Err(m) => {
            out.push(m);
            return check;
        }
        Ok(drawn) => check_entities(r, &drawn, out),
    }
    check.passed_over = check_teams(r, &mut rng, out);
    check_replacements(r, out);
    check
}

/// Phase 1 on positions: per stratum, the partial Fisher–Yates shuffle of `0..size`.
/// Returns (stratum, index in its list) per drawn entity, in draw order.
fn drawn_indices(r: &PublicRecord, rng: &mut DrawRng) -> Result<Vec<(usize, usize)>, Mismatch> {
    let mut sizes = Vec::with_capacity(r.strata.len());
    for (s, list) in r.parameters.strata.iter().zip(&r.strata) {
        sizes.push(
            stratum_size(&s.class, s.quota, list.hashes.len() as u64)
                .map_err(|e| mismatch("draws", format!("recomputation fails: {e}")))?,
        );
    }
    let mut drawn = Vec::new();
    for (si, (list, &k)) in r.strata.iter().zip(&sizes).enumerate() {
        let n = list.hashes.len() as u64;
        let mut m: Vec<u32> = (0..n as u32).collect();
        for i in 0..k {
            let j = i + rng.below(n - i);
            m.swap(i as usize, j as usize);
        }
        drawn.extend(m[..k as usize].iter().map(|&x| (si, x as usize)));
    }
    Ok(drawn)
}

fn check_entities(r: &PublicRecord, drawn: &[(usize, usize)], out: &mut Vec<Mismatch>) {
    if drawn.len() != r.draws.len() {
        out.push(mismatch(
            "draws",
            format!(
                "record lists {} drawn entities, the seed and strata sizes give {}",
                r.draws.len(),
                drawn.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (t, (d, &(si, mi))) in r.draws.iter().zip(drawn).enumerate() {
        let list = &r.strata[si];
        if d.class != list.class {
            out.push(mismatch(
                format!("draws[{t}].class"),
                format!(
                    "record says {}, the draw is in stratum {}",
                    d.class, list.class
                ),
            ));
        }
        if salted_entry(&d.salt, d.entity.as_str()) != list.hashes[mi] {
            out.push(mismatch(
                format!("draws[{t}]"),
                format!(
                    "SHA-256(salt ‖ {}) is not entry {mi} of stratum {}, which the seed draws",
                    d.entity, list.class
                ),
            ));
        }
        if !seen.insert(&d.entity) {
            out.push(mismatch(
                format!("draws[{t}].entity"),
                format!("{} is drawn twice", d.entity),
            ));
        }
    }
}

/// Phase 2 with conflicts unknown: an inspector popped but not on the recorded team is taken
/// to have had a conflict. Returns how many were passed over.
fn check_teams(r: &PublicRecord, rng: &mut DrawRng, out: &mut Vec<Mismatch>) -> usize {
    let pos: HashMap<&InspectorId, u32> = r
        .inspectors
        .iter()
        .enumerate()
        .map(|(i, x)| (&x.id, i as u32))
        .collect();
    let m = r.parameters.inspectors_per_entity as usize;
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = (0..r.inspectors.len() as u32)
        .map(|p| Reverse((0, rng.next_u64(), p)))
        .collect();
    let mut passed_over = 0;
    for (t, d) in r.draws.iter().enumerate() {
        let field = format!("draws[{t}].inspectors");
        let team: Option<Vec<u32>> = d.inspectors.iter().map(|i| pos.get(i).copied()).collect();
        let Some(team) = team else {
            out.push(mismatch(field, "names an inspector outside the pool"));
            return passed_over;
        };
        if team.len() != m || team.iter().collect::<HashSet<_>>().len() != m {
            out.push(mismatch(
                field,
                format!("needs {m} distinct inspectors, lists {:?}", d.inspectors),
            ));
            return passed_over;
        }
        let (mut chosen, mut skipped) = (Vec::with_capacity(m), Vec::new());
        while chosen.len() < m {
            let Some(Reverse((load, key, p))) = heap.pop() else {
                out.push(mismatch(
                    field,
                    "the recorded team cannot come from the algorithm",
                ));
                return passed_over;
            };
            if team.contains(&p) {
                chosen.push((load, p));
            } else {
                skipped.push((load, key, p));
            }
        }
        if chosen.iter().map(|c| c.1).collect::<Vec<_>>() != team {
            out.push(mismatch(
                field,
                "the recorded order is not the order the algorithm assigns",
            ));
            return passed_over;
        }
        passed_over += skipped.len();
        for &(load, p) in &chosen {
            heap.push(Reverse((load + 1, rng.next_u64(), p)));
        }
        heap.extend(skipped.into_iter().map(Reverse));
    }
    passed_over
}

/// What the public can check of a replacement: its seed's commitment, that the recused
/// inspector was on the team, and that the replacement is a pool inspector who was neither on
/// the team nor had recused from the entity. Who was eligible depends on the conflicts.
fn check_replacements(r: &PublicRecord, out: &mut Vec<Mismatch>) {
    let draws = r.assignments();
    let pool: HashSet<&InspectorId> = r.inspectors.iter().map(|i| &i.id).collect();
    for (i, x) in r.replacements.iter().enumerate() {
        let field = format!("replacements[{i}]");
        if x.seed.commitment() != x.commitment {
            out.push(mismatch(
                format!("{field}.commitment"),
                format!(
                    "record says {}, SHA-256 of its seed is {}",
                    x.commitment,
                    x.seed.commitment()
                ),
            ));
        }
        let teams = teams_after(&draws, &r.replacements[..i]);
        let team = teams.iter().find(|a| a.entity == x.entity);
        if !team.is_some_and(|a| a.inspectors.contains(&x.recused)) {
            out.push(mismatch(
                format!("{field}.recused"),
                format!(
                    "{} was not on the team of {} at that point",
                    x.recused, x.entity
                ),
            ));
            continue;
        }
        let recused_before = r.replacements[..i]
            .iter()
            .any(|y| y.entity == x.entity && y.recused == x.replacement);
        let on_team = team.is_some_and(|a| a.inspectors.contains(&x.replacement));
        if !pool.contains(&x.replacement) || on_team || recused_before {
            out.push(mismatch(
                format!("{field}.replacement"),
                format!(
                    "{} cannot replace at {}: outside the pool, on the team or recused before",
                    x.replacement, x.entity
                ),
            ));
        }
    }
}

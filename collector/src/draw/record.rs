//! The full draw record: everything needed to recompute a draw and check it against its
//! commitment, in the JSON form that is stored, listed by `GET /api/v1/draws` (the bureau and
//! auditors) and read by `spotcheck-collector draw verify`. The public sees the reduced form
//! of [`super::public`].

use serde::{Deserialize, Serialize};

use super::algorithm::{self, Assignment};
use super::commitment::CommittedDigests;
use super::input::{
    strata_digest, Candidate, Conflict, DrawInput, Parameters, PoolInspector, SaltKey, Seed,
    Sha256, ALGORITHM,
};
use super::DrawError;
use crate::registry::model::InspectorId;
use crate::registry::CreditCode;

/// The digests of the inputs. All but `candidates` and `replacements` are published with the
/// commitment, before the seed is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digests {
    /// Of the parameters' text form.
    pub parameters: Sha256,
    /// Of the candidate list (covered by `strata` in the commitment).
    pub candidates: Sha256,
    /// Of the inspector pool.
    pub inspectors: Sha256,
    /// HMAC of every conflict between the pool and the candidates, keyed with the salt key.
    pub conflicts: Sha256,
    /// Of the public stratum lists.
    pub strata: Sha256,
    /// Of the recusal requests (entity, who recused), in order.
    pub replacements: Sha256,
}

/// A replacement draw (递补) after a recusal, with its own seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The entity.
    pub entity: CreditCode,
    /// Who recused.
    pub recused: InspectorId,
    /// SHA-256 of the replacement seed.
    pub commitment: Sha256,
    /// The replacement seed.
    pub seed: Seed,
    /// Who replaces them.
    pub replacement: InspectorId,
}

/// A revealed draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawRecord {
    /// The algorithm version, [`ALGORITHM`].
    pub algorithm: String,
    /// SHA-256 of the seed, published before the draw.
    pub commitment: Sha256,
    /// The seed, revealed after the draw.
    pub seed: Seed,
    /// The secret salt key (full record only: it lets an auditor recompute the public stratum
    /// lists and the conflicts digest).
    pub salt_key: SaltKey,
    /// The parameters.
    pub parameters: Parameters,
    /// The digests of the inputs.
    pub digests: Digests,
    /// The candidate list (canonical order).
    pub candidates: Vec<Candidate>,
    /// The inspector pool (canonical order).
    pub inspectors: Vec<PoolInspector>,
    /// Every conflict between the pool and the candidates (canonical order), as committed.
    pub conflicts: Vec<Conflict>,
    /// The result, in draw order.
    pub draws: Vec<Assignment>,
    /// Replacement draws, in the order they were made.
    #[serde(default)]
    pub replacements: Vec<Replacement>,
}

impl DrawRecord {
    /// Makes the draw and its record. Nothing is stored: a failed draw changes nothing.
    pub fn make(seed: Seed, salt_key: SaltKey, input: &DrawInput) -> Result<DrawRecord, DrawError> {
        let committed = CommittedDigests {
            parameters: input.parameters_digest(),
            inspectors: input.inspectors_digest(),
            conflicts: input.conflicts_digest(&salt_key),
            strata: strata_digest(&input.stratum_lists(&salt_key)),
        };
        DrawRecord::make_with(seed, salt_key, input, &committed)
    }

    /// [`DrawRecord::make`] given the digests of `input` that a commitment fixes, computed
    /// by the caller with `salt_key` (the reveal has just recomputed them to compare with the
    /// commitment; the stratum lists are a million salts and hashes at a million
    /// candidates, not worth computing twice).
    pub fn make_with(
        seed: Seed,
        salt_key: SaltKey,
        input: &DrawInput,
        committed: &CommittedDigests,
    ) -> Result<DrawRecord, DrawError> {
        let draws = algorithm::draw(&seed, input)?;
        Ok(DrawRecord {
            algorithm: ALGORITHM.to_owned(),
            commitment: seed.commitment(),
            seed,
            salt_key,
            parameters: input.parameters.clone(),
            digests: Digests {
                parameters: committed.parameters,
                candidates: input.candidates_digest(),
                inspectors: committed.inspectors,
                conflicts: committed.conflicts,
                strata: committed.strata,
                replacements: replacements_digest(&[]),
            },
            candidates: input.candidates.clone(),
            inspectors: input.inspectors.clone(),
            conflicts: input.conflicts.clone(),
            draws,
            replacements: Vec::new(),
        })
    }

    /// The input as the record states it (checked to be canonical).
    pub fn input(&self) -> Result<DrawInput, DrawError> {
        let input = DrawInput {
            parameters: self.parameters.clone(),
            candidates: self.candidates.clone(),
            inspectors: self.inspectors.clone(),
            conflicts: self.conflicts.clone(),
        };
        input.check_canonical()?;
        Ok(input)
    }

    /// The teams after the replacements, in draw order.
    pub fn teams(&self) -> Vec<Assignment> {
        teams_after(&self.draws, &self.replacements)
    }

    /// Records a recusal of `recused` at `entity` and draws the replacement with `seed`.
    pub fn recuse(
        &mut self,
        entity: &CreditCode,
        recused: &InspectorId,
        seed: Seed,
    ) -> Result<&Replacement, DrawError> {
        let input = self.input()?;
        let teams = self.teams();
        let team = teams.iter().find(|a| &a.entity == entity).ok_or_else(|| {
            DrawError::Recusal(format!(
                "entity {entity} was not drawn in {}",
                self.parameters.draw_id
            ))
        })?;
        if !team.inspectors.contains(recused) {
            return Err(DrawError::Recusal(format!(
                "inspector {recused} is not on the team of {entity}"
            )));
        }
        let earlier = self.earlier_recusals(entity, self.replacements.len());
        let replacement = algorithm::replacement(&seed, &input, &teams, entity, recused, &earlier)?;
        self.replacements.push(Replacement {
            entity: entity.clone(),
            recused: recused.clone(),
            commitment: seed.commitment(),
            seed,
            replacement,
        });
        self.digests.replacements = replacements_digest(&self.replacements);
        Ok(self.replacements.last().expect("just pushed"))
    }

    /// Who recused from `entity` in the first `upto` replacements.
    pub(crate) fn earlier_recusals(&self, entity: &CreditCode, upto: usize) -> Vec<InspectorId> {
        self.replacements[..upto]
            .iter()
            .filter(|r| &r.entity == entity)
            .map(|r| r.recused.clone())
            .collect()
    }
}

/// `draws` with `replacements` applied in order: each replaces the recused inspector's slot.
pub fn teams_after(draws: &[Assignment], replacements: &[Replacement]) -> Vec<Assignment> {
    let mut teams = draws.to_vec();
    for r in replacements {
        if let Some(a) = teams.iter_mut().find(|a| a.entity == r.entity) {
            if let Some(slot) = a.inspectors.iter_mut().find(|i| **i == r.recused) {
                *slot = r.replacement.clone();
            }
        }
    }
    teams
}

/// SHA-256 over `ENTITY<TAB>RECUSED<LF>` per replacement, in order.
pub fn replacements_digest(replacements: &[Replacement]) -> Sha256 {
    let mut text = String::new();
    for r in replacements {
        text.push_str(r.entity.as_str());
        text.push('\t');
        text.push_str(r.recused.as_str());
        text.push('\n');
    }
    Sha256::of(text.as_bytes())
}

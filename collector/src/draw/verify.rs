//! Recomputes a full draw record from its own contents and names every field that differs;
//! checks a record (full or public) against the published commitment.

use std::fmt;

use super::algorithm;
use super::input::{strata_digest, ALGORITHM};
use super::record::{replacements_digest, teams_after, DrawRecord};

/// One way a record does not match its recomputation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The JSON path of the field, e.g. `draws[3].inspectors`.
    pub field: String,
    /// What the record says against what recomputation gives.
    pub detail: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

pub(crate) fn mismatch(field: impl Into<String>, detail: impl Into<String>) -> Mismatch {
    Mismatch {
        field: field.into(),
        detail: detail.into(),
    }
}

/// Verifies a full `record`: the algorithm version, the commitment against the seed, every
/// digest (the stratum lists and the conflicts digest with the record's salt key), the draw,
/// and every replacement. An empty result means it matches.
pub fn verify(record: &DrawRecord) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if record.algorithm != ALGORITHM {
        out.push(mismatch(
            "algorithm",
            format!(
                "record uses {:?}, this build implements {ALGORITHM:?}",
                record.algorithm
            ),
        ));
        return out;
    }
    let commitment = record.seed.commitment();
    if commitment != record.commitment {
        out.push(mismatch(
            "commitment",
            format!(
                "record says {}, SHA-256 of the seed is {commitment}",
                record.commitment
            ),
        ));
    }
    let input = match record.input() {
        Ok(i) => i,
        Err(e) => {
            out.push(mismatch("candidates/inspectors/conflicts", e.to_string()));
            return out;
        }
    };
    let digests = [
        (
            "digests.parameters",
            record.digests.parameters,
            input.parameters_digest(),
        ),
        (
            "digests.candidates",
            record.digests.candidates,
            input.candidates_digest(),
        ),
        (
            "digests.inspectors",
            record.digests.inspectors,
            input.inspectors_digest(),
        ),
        (
            "digests.conflicts",
            record.digests.conflicts,
            input.conflicts_digest(&record.salt_key),
        ),
        (
            "digests.strata",
            record.digests.strata,
            strata_digest(&input.stratum_lists(&record.salt_key)),
        ),
        (
            "digests.replacements",
            record.digests.replacements,
            replacements_digest(&record.replacements),
        ),
    ];
    for (field, stated, computed) in digests {
        if stated != computed {
            out.push(mismatch(
                field,
                format!("record says {stated}, its contents give {computed}"),
            ));
        }
    }
    match algorithm::draw(&record.seed, &input) {
        Err(e) => out.push(mismatch("draws", format!("recomputation fails: {e}"))),
        Ok(draws) => {
            if draws.len() != record.draws.len() {
                out.push(mismatch(
                    "draws",
                    format!(
                        "record lists {} drawn entities, recomputation gives {}",
                        record.draws.len(),
                        draws.len()
                    ),
                ));
            }
            for (i, (got, want)) in record.draws.iter().zip(&draws).enumerate() {
                if got != want {
                    out.push(mismatch(
                        format!("draws[{i}]"),
                        format!(
                            "record says {} ({}) with {:?}, recomputation gives {} ({}) with {:?}",
                            got.entity,
                            got.class,
                            ids(&got.inspectors),
                            want.entity,
                            want.class,
                            ids(&want.inspectors)
                        ),
                    ));
                    break;
                }
            }
        }
    }
    for (i, r) in record.replacements.iter().enumerate() {
        let field = format!("replacements[{i}]");
        if r.seed.commitment() != r.commitment {
            out.push(mismatch(
                format!("{field}.commitment"),
                format!(
                    "record says {}, SHA-256 of its seed is {}",
                    r.commitment,
                    r.seed.commitment()
                ),
            ));
        }
        let teams = teams_after(&record.draws, &record.replacements[..i]);
        let on_team = teams
            .iter()
            .find(|a| a.entity == r.entity)
            .is_some_and(|a| a.inspectors.contains(&r.recused));
        if !on_team {
            out.push(mismatch(
                format!("{field}.recused"),
                format!(
                    "{} was not on the team of {} at that point",
                    r.recused, r.entity
                ),
            ));
            continue;
        }
        let earlier = record.earlier_recusals(&r.entity, i);
        match algorithm::replacement(&r.seed, &input, &teams, &r.entity, &r.recused, &earlier) {
            Ok(who) if who == r.replacement => {}
            Ok(who) => out.push(mismatch(
                format!("{field}.replacement"),
                format!("record says {}, recomputation gives {who}", r.replacement),
            )),
            Err(e) => out.push(mismatch(field, format!("recomputation fails: {e}"))),
        }
    }
    out
}

fn ids(v: &[crate::registry::model::InspectorId]) -> Vec<&str> {
    v.iter().map(|i| i.as_str()).collect()
}

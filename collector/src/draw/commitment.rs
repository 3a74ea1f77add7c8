//! The commitment published before a draw is made (`GET /api/v1/public/draw-commitments`),
//! and the check of a record — full or public — against it (`draw verify --commitments`).

use serde::{Deserialize, Serialize};

use super::input::{Parameters, Sha256};
use super::public::PublicRecord;
use super::record::DrawRecord;
use super::verify::{mismatch, Mismatch};

/// The digests published with a commitment: every input of the draw is fixed by them before
/// the seed is used. The candidate list and its classes are fixed by `strata` (the salted
/// stratum lists); `conflicts` is keyed with the draw's secret salt key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommittedDigests {
    /// Of the parameters.
    pub parameters: Sha256,
    /// Of the inspector pool.
    pub inspectors: Sha256,
    /// Keyed digest of every conflict between the pool and the candidates.
    pub conflicts: Sha256,
    /// Of the stratum lists (the candidates and their classes).
    pub strata: Sha256,
}

/// A published commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// SHA-256 of the secret seed.
    pub commitment: Sha256,
    /// The parameters.
    pub parameters: Parameters,
    /// The input digests.
    pub digests: CommittedDigests,
    /// The plan the draw belongs to, if any.
    pub plan: Option<String>,
    /// When, Unix ms.
    pub committed_ms: i64,
    /// When revealed, Unix ms.
    pub revealed_ms: Option<i64>,
    /// The last day of the batch's inspection window (`YYYY-MM-DD`), after which the public
    /// record is published; absent if the draw belongs to no plan batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
}

/// What a record states that a commitment fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed<'a> {
    /// The seed's commitment.
    pub commitment: Sha256,
    /// The parameters.
    pub parameters: &'a Parameters,
    /// The committed digests as the record states them.
    pub digests: CommittedDigests,
}

impl DrawRecord {
    /// What this record states that the commitment fixed.
    pub fn committed(&self) -> Committed<'_> {
        Committed {
            commitment: self.commitment,
            parameters: &self.parameters,
            digests: CommittedDigests {
                parameters: self.digests.parameters,
                inspectors: self.digests.inspectors,
                conflicts: self.digests.conflicts,
                strata: self.digests.strata,
            },
        }
    }
}

impl PublicRecord {
    /// What this record states that the commitment fixed.
    pub fn committed(&self) -> Committed<'_> {
        Committed {
            commitment: self.commitment,
            parameters: &self.parameters,
            digests: CommittedDigests {
                parameters: self.digests.parameters,
                inspectors: self.digests.inspectors,
                conflicts: self.digests.conflicts,
                strata: self.digests.strata,
            },
        }
    }
}

/// Checks what a record states against the commitment published for its draw id. Combined
/// with [`super::verify`] (full) or [`super::public::verify_public`] (public), which check
/// that the stated digests are those of the record's contents, this shows the record is the
/// committed draw: a record re-made with another seed or other inputs fails here.
pub fn check_against(record: &Committed<'_>, published: &[Commitment]) -> Vec<Mismatch> {
    let id = &record.parameters.draw_id;
    let Some(c) = published.iter().find(|c| &c.parameters.draw_id == id) else {
        return vec![mismatch(
            "commitment",
            format!("no commitment for draw {id} is published in the commitments given"),
        )];
    };
    let mut out = Vec::new();
    if c.commitment != record.commitment {
        out.push(mismatch(
            "commitment",
            format!(
                "record says {}, the published commitment is {}",
                record.commitment, c.commitment
            ),
        ));
    }
    if &c.parameters != record.parameters {
        out.push(mismatch(
            "parameters",
            "differ from the parameters published with the commitment",
        ));
    }
    for (field, stated, published) in [
        (
            "digests.parameters",
            record.digests.parameters,
            c.digests.parameters,
        ),
        (
            "digests.inspectors",
            record.digests.inspectors,
            c.digests.inspectors,
        ),
        (
            "digests.conflicts",
            record.digests.conflicts,
            c.digests.conflicts,
        ),
        ("digests.strata", record.digests.strata, c.digests.strata),
    ] {
        if stated != published {
            out.push(mismatch(
                field,
                format!("record says {stated}, the commitment published {published}"),
            ));
        }
    }
    out
}

//! Verifiable double-random draws (双随机): random entities, random inspectors.
//!
//! The flow, in the order of the modules:
//!
//! - [`input`]: the seed, its commitment, the parameters, the canonical candidate list and
//!   inspector pool, and their digests.
//! - [`rng`]: how ChaCha20 output becomes indices (the only source of randomness).
//! - [`algorithm`]: stratified sampling without replacement, then inspector assignment with
//!   even load and no conflicts; replacement draws (递补) after a recusal.
//! - [`record`]: the full draw record, stored and given to the bureau and auditors.
//! - [`public`]: the public form of a record (no undrawn candidate's class, no conflict) and
//!   its verification from what it holds.
//! - [`mod@verify`]: recomputes a full record from its own contents and names what differs.
//! - [`commitment`]: the published commitment and the check of a record against it.
//! - [`store`]: commitments and records in the store (SQLite or PostgreSQL), the one source
//!   of the records.
//! - [`files`]: the published record files, rendered from the store.
//!
//! `docs/draw-algorithm.md` specifies all of it precisely enough to re-implement it in
//! another language; `collector/tests/vectors/` holds test vectors that a test checks.

pub mod algorithm;
pub mod commitment;
pub mod files;
pub mod input;
pub mod public;
pub mod record;
pub mod rng;
pub mod store;
pub mod verify;

pub use algorithm::{draw, Assignment};
pub use commitment::{check_against, Commitment, CommittedDigests};
pub use input::{
    Candidate, Conflict, DrawInput, Parameters, PoolInspector, Quota, SaltKey, Seed, Sha256,
    Stratum, StratumList, ALGORITHM,
};
pub use public::{verify_public, PublicCheck, PublicRecord};
pub use record::{DrawRecord, Replacement};
pub use verify::{verify, Mismatch};

use crate::registry::model::{InspectorId, RiskClass};
use crate::registry::CreditCode;

/// Why a draw cannot be made. A failed draw changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawError {
    /// A stratum asks for more entities than it has.
    #[error("stratum {class} asks for {wanted} entities but only {available} candidates have class {class}: lower the ratio or count")]
    QuotaAbovePool {
        /// The stratum.
        class: RiskClass,
        /// Entities asked for.
        wanted: u64,
        /// Candidates in it.
        available: u64,
    },
    /// A ratio above 100 %.
    #[error("stratum {class} has ratio {ratio_bp} basis points, above 10000 (100 %)")]
    RatioAboveAll {
        /// The stratum.
        class: RiskClass,
        /// The ratio.
        ratio_bp: u32,
    },
    /// A drawn entity has too few inspectors without a conflict.
    #[error("entity {entity} needs {needed} inspectors but only {eligible} inspector(s) of the pool are free of conflicts with it: add inspectors of the department or lower inspectors_per_entity")]
    TooFewInspectors {
        /// The entity.
        entity: CreditCode,
        /// Inspectors without a conflict.
        eligible: usize,
        /// Inspectors needed.
        needed: u32,
    },
    /// Fewer than two inspectors per entity were asked for.
    #[error("inspectors_per_entity is {0}; the law requires at least 2 officers per inspection")]
    TooFewPerEntity(u32),
    /// The candidate list or pool is not canonical or refers to unknown things.
    #[error("invalid draw input: {0}")]
    Input(String),
    /// A recusal names an entity that was not drawn or an inspector not on its team.
    #[error("recusal refused: {0}")]
    Recusal(String),
    /// After a recusal nobody is left to replace the inspector.
    #[error("no inspector is left to replace {recused} at {entity}: every other inspector of the pool is on the team, conflicted or has recused")]
    NoReplacement {
        /// The entity.
        entity: CreditCode,
        /// Who recused.
        recused: InspectorId,
    },
}

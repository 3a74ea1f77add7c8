//! What a draw is made from: the seed and its commitment, the parameters, and the canonical
//! candidate list, inspector pool and conflicts, each with a SHA-256 digest over a documented
//! text form (`docs/draw-algorithm.md`, "Digests").

use std::collections::HashSet;
use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256 as Sha256Hasher};

use super::DrawError;
use crate::registry::model::{Department, DrawId, InspectorId, ItemId, RiskClass};
use crate::registry::CreditCode;

/// The algorithm this build implements; a record names the one it was made with.
pub const ALGORITHM: &str = "spotcheck-draw/1";

fn hex32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
    let s = String::deserialize(d)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(&s, &mut out).map_err(|e| {
        serde::de::Error::custom(format!("{s:?} is not 64 hex digits (32 bytes): {e}"))
    })?;
    Ok(out)
}

fn hex32_out<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name(
            #[serde(deserialize_with = "hex32", serialize_with = "hex32_out")]
            pub [u8; 32],
        );

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }
    };
}

hex_bytes!(
    /// The 32-byte seed: ChaCha20's key. Secret until the reveal.
    Seed
);
hex_bytes!(
    /// A SHA-256 digest, written as 64 lowercase hex digits.
    Sha256
);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(Sha256Hasher::digest(bytes).into())
    }
}

impl Seed {
    /// A fresh seed from the operating system's generator (through rand's thread RNG).
    pub fn generate() -> Seed {
        let mut s = [0u8; 32];
        rand::rng().fill_bytes(&mut s);
        Seed(s)
    }

    /// The commitment published before the draw: SHA-256 of the 32 seed bytes.
    pub fn commitment(&self) -> Sha256 {
        Sha256::of(&self.0)
    }
}

/// How many entities a stratum gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// A share in basis points (500 = 5 %); the count is ⌈n · bp / 10000⌉.
    RatioBp(u32),
    /// An exact count.
    Count(u64),
}

/// One risk class and its quota. Strata are drawn in the order the parameters list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stratum {
    /// The class.
    pub class: RiskClass,
    /// How many to draw.
    pub quota: Quota,
}

/// The parameters of one draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    /// The draw's id.
    pub draw_id: DrawId,
    /// The department whose inspectors are drawn.
    pub department: Department,
    /// The item inspected.
    pub item: ItemId,
    /// Inspectors per entity (at least 2).
    pub inspectors_per_entity: u32,
    /// The strata, in draw order.
    pub strata: Vec<Stratum>,
}

/// A candidate entity and its stratum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The entity.
    pub code: CreditCode,
    /// Its risk class.
    pub class: RiskClass,
}

/// An inspector of the pool, as published: staff id and name, no certificate number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInspector {
    /// Staff id.
    pub id: InspectorId,
    /// Name.
    pub name: String,
}

/// An inspector who may not inspect an entity (回避).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    /// The entity.
    pub entity: CreditCode,
    /// The inspector.
    pub inspector: InspectorId,
}

/// A draw's input in canonical form: candidates sorted by credit code, inspectors by id,
/// conflicts by (entity, inspector), each without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawInput {
    /// Parameters.
    pub parameters: Parameters,
    /// Candidate entities.
    pub candidates: Vec<Candidate>,
    /// Active inspectors of the department.
    pub inspectors: Vec<PoolInspector>,
    /// Conflicts between pool inspectors and candidates.
    pub conflicts: Vec<Conflict>,
}

fn check_text(what: &str, s: &str) -> Result<(), DrawError> {
    if s.chars().any(char::is_control) {
        return Err(DrawError::Input(format!(
            "{what} {s:?} contains a control character (tab, newline …)"
        )));
    }
    Ok(())
}

impl DrawInput {
    /// Sorts and checks an input. Conflicts naming an inspector outside the pool or an entity
    /// outside the candidates are dropped (they cannot matter).
    pub fn new(
        parameters: Parameters,
        mut candidates: Vec<Candidate>,
        mut inspectors: Vec<PoolInspector>,
        mut conflicts: Vec<Conflict>,
    ) -> Result<DrawInput, DrawError> {
        candidates.sort_by(|a, b| a.code.as_str().as_bytes().cmp(b.code.as_str().as_bytes()));
        inspectors.sort_by(|a, b| a.id.as_str().as_bytes().cmp(b.id.as_str().as_bytes()));
        let pool: HashSet<&InspectorId> = inspectors.iter().map(|i| &i.id).collect();
        let codes: HashSet<&CreditCode> = candidates.iter().map(|c| &c.code).collect();
        conflicts.retain(|c| pool.contains(&c.inspector) && codes.contains(&c.entity));
        conflicts.sort();
        conflicts.dedup();
        let input = DrawInput {
            parameters,
            candidates,
            inspectors,
            conflicts,
        };
        input.check_canonical()?;
        Ok(input)
    }

    /// Checks that the input is canonical and consistent, as [`DrawInput::new`] leaves it
    /// (used by verify, which must not re-sort what a record says).
    pub fn check_canonical(&self) -> Result<(), DrawError> {
        let p = &self.parameters;
        if p.inspectors_per_entity < 2 {
            return Err(DrawError::TooFewPerEntity(p.inspectors_per_entity));
        }
        let mut classes = HashSet::new();
        for s in &p.strata {
            if !classes.insert(&s.class) {
                return Err(DrawError::Input(format!(
                    "stratum {} is listed twice",
                    s.class
                )));
            }
        }
        for w in self.candidates.windows(2) {
            if w[0].code.as_str().as_bytes() >= w[1].code.as_str().as_bytes() {
                return Err(DrawError::Input(format!(
                    "candidates are not strictly sorted by credit code at {} (duplicate or out of order)",
                    w[1].code
                )));
            }
        }
        if let Some(c) = self.candidates.iter().find(|c| !classes.contains(&c.class)) {
            return Err(DrawError::Input(format!(
                "candidate {} has class {}, which no stratum lists",
                c.code, c.class
            )));
        }
        for w in self.inspectors.windows(2) {
            if w[0].id.as_str().as_bytes() >= w[1].id.as_str().as_bytes() {
                return Err(DrawError::Input(format!(
                    "inspectors are not strictly sorted by id at {} (duplicate or out of order)",
                    w[1].id
                )));
            }
        }
        for i in &self.inspectors {
            check_text("inspector name", &i.name)?;
        }
        for w in self.conflicts.windows(2) {
            if w[0] >= w[1] {
                return Err(DrawError::Input(format!(
                    "conflicts are not strictly sorted by (entity, inspector) at {} / {}",
                    w[1].entity, w[1].inspector
                )));
            }
        }
        Ok(())
    }

    /// SHA-256 over the parameters' text form.
    pub fn parameters_digest(&self) -> Sha256 {
        Sha256::of(parameters_text(&self.parameters).as_bytes())
    }

    /// SHA-256 over `CODE<TAB>CLASS<LF>` per candidate.
    pub fn candidates_digest(&self) -> Sha256 {
        digest_lines(self.candidates.iter(), |c, out| {
            push_line(out, &[c.code.as_str(), c.class.as_str()])
        })
    }

    /// SHA-256 over `ID<TAB>NAME<LF>` per inspector.
    pub fn inspectors_digest(&self) -> Sha256 {
        digest_lines(self.inspectors.iter(), |i, out| {
            push_line(out, &[i.id.as_str(), &i.name])
        })
    }

    /// SHA-256 over `ENTITY<TAB>INSPECTOR<LF>` per conflict.
    pub fn conflicts_digest(&self) -> Sha256 {
        conflicts_digest(&self.conflicts)
    }
}

/// SHA-256 over `ENTITY<TAB>INSPECTOR<LF>` per conflict, in the order given.
pub fn conflicts_digest(conflicts: &[Conflict]) -> Sha256 {
    digest_lines(conflicts.iter(), |c, out| {
        push_line(out, &[c.entity.as_str(), c.inspector.as_str()])
    })
}

fn push_line(out: &mut Vec<u8>, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b'\n');
}

fn digest_lines<T>(items: impl Iterator<Item = T>, line: impl Fn(T, &mut Vec<u8>)) -> Sha256 {
    let mut hasher = Sha256Hasher::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    for item in items {
        line(item, &mut buf);
        if buf.len() >= 60 * 1024 {
            hasher.update(&buf);
            buf.clear();
        }
    }
    hasher.update(&buf);
    Sha256(hasher.finalize().into())
}

/// The text form of the parameters that their digest covers (see the spec).
pub fn parameters_text(p: &Parameters) -> String {
    let mut s = format!(
        "algorithm={ALGORITHM}\ndraw_id={}\ndepartment={}\nitem={}\ninspectors_per_entity={}\n",
        p.draw_id, p.department, p.item, p.inspectors_per_entity
    );
    for st in &p.strata {
        match st.quota {
            Quota::RatioBp(bp) => s.push_str(&format!("stratum={} ratio_bp={bp}\n", st.class)),
            Quota::Count(n) => s.push_str(&format!("stratum={} count={n}\n", st.class)),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commitment_is_sha256_of_the_seed_bytes() {
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            Seed([0; 32]).commitment().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn seeds_round_trip_as_hex_and_refuse_short_strings() {
        let s = Seed([0xab; 32]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Seed>(&json).unwrap(), s);
        let err = serde_json::from_str::<Seed>("\"abcd\"").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    #[test]
    fn quotas_serialise_as_tagged_objects() {
        assert_eq!(
            serde_json::to_string(&Quota::RatioBp(500)).unwrap(),
            r#"{"ratio_bp":500}"#
        );
        assert_eq!(
            serde_json::to_string(&Quota::Count(3)).unwrap(),
            r#"{"count":3}"#
        );
    }
}

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

/// Parses 64 **lowercase** hex digits. Uppercase is refused so that every implementation can
/// compare digests as text (the spec, "Digests").
pub fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    let lower = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if s.len() != 64 || !s.bytes().all(lower) {
        return Err(format!(
            "{s:?} is not 64 lowercase hex digits (32 bytes): write 0-9 and a-f only"
        ));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(out)
}

fn hex32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
    let s = String::deserialize(d)?;
    parse_hex32(&s).map_err(serde::de::Error::custom)
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
hex_bytes!(
    /// The draw's secret salt key, fixed at the commit with the seed. It keys the salts of the
    /// public stratum lists and the conflicts digest; it is never published (only the full
    /// record, for the bureau and auditors, holds it).
    SaltKey
);

type HmacSha256 = hmac::Hmac<Sha256Hasher>;

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> Sha256 {
    use hmac::Mac as _;
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    Sha256(m.finalize().into_bytes().into())
}

impl SaltKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> SaltKey {
        SaltKey(Seed::generate().0)
    }

    /// The salt of candidate `code`: HMAC-SHA256(key, code).
    pub fn salt(&self, code: &CreditCode) -> Sha256 {
        hmac(&self.0, &[code.as_str().as_bytes()])
    }

    /// [`SaltKey::salt`] for many codes: the keyed state is computed once and cloned per code.
    fn salter(&self) -> impl Fn(&CreditCode) -> Sha256 {
        use hmac::Mac as _;
        let keyed = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        move |code| {
            let mut m = keyed.clone();
            m.update(code.as_str().as_bytes());
            Sha256(m.finalize().into_bytes().into())
        }
    }
}

/// A stratum list entry: SHA-256(salt ‖ code), the 32 salt bytes then the code's UTF-8 bytes.
pub fn salted_entry(salt: &Sha256, code: &str) -> Sha256 {
    let mut h = Sha256Hasher::new();
    h.update(salt.0);
    h.update(code.as_bytes());
    Sha256(h.finalize().into())
}

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

/// Whether `c` may not appear in a name: Unicode general category Cc, that is U+0000–U+001F
/// and U+007F–U+009F (tab, line feed, carriage return, DEL, C1 controls). Nothing else is
/// forbidden.
pub fn is_forbidden_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn check_text(what: &str, s: &str) -> Result<(), DrawError> {
    if let Some(c) = s.chars().find(|&c| is_forbidden_char(c)) {
        return Err(DrawError::Input(format!(
            "{what} {s:?} contains the control character U+{:04X}: remove it (U+0000–U+001F and U+007F–U+009F are not allowed)",
            u32::from(c)
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

    /// HMAC-SHA256, keyed with `key`, over `ENTITY<TAB>INSPECTOR<LF>` per conflict.
    pub fn conflicts_digest(&self, key: &SaltKey) -> Sha256 {
        conflicts_digest(key, &self.conflicts)
    }

    /// The public stratum lists: per stratum in parameter order, SHA-256(salt ‖ code) of its
    /// members in candidate order, salts keyed with `key`.
    pub fn stratum_lists(&self, key: &SaltKey) -> Vec<StratumList> {
        let salt = key.salter();
        self.parameters
            .strata
            .iter()
            .map(|s| {
                let hashes: Vec<Sha256> = self
                    .candidates
                    .iter()
                    .filter(|c| c.class == s.class)
                    .map(|c| salted_entry(&salt(&c.code), c.code.as_str()))
                    .collect();
                StratumList {
                    class: s.class.clone(),
                    size: hashes.len() as u64,
                    hashes,
                }
            })
            .collect()
    }
}

/// One stratum as the public sees it: its class, its number of candidates (an aggregate) and
/// SHA-256(salt ‖ code) of each member in candidate order. Without the salts, which only the
/// collector can compute, the list does not tell which entity is in which class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StratumList {
    /// The class.
    pub class: RiskClass,
    /// Its number of candidates (= the number of hashes).
    pub size: u64,
    /// The salted hashes, in candidate order.
    pub hashes: Vec<Sha256>,
}

/// SHA-256 over, per stratum, `stratum=CLASS size=N<LF>` then `HASH<LF>` per member.
pub fn strata_digest(lists: &[StratumList]) -> Sha256 {
    let mut hasher = Sha256Hasher::new();
    for l in lists {
        hasher.update(format!("stratum={} size={}\n", l.class, l.size).as_bytes());
        let mut line = [0u8; 65];
        line[64] = b'\n';
        for h in &l.hashes {
            hex::encode_to_slice(h.0, &mut line[..64]).expect("64 hex digits");
            hasher.update(line);
        }
    }
    Sha256(hasher.finalize().into())
}

/// HMAC-SHA256, keyed with `key`, over `ENTITY<TAB>INSPECTOR<LF>` per conflict, in the order
/// given. Keyed, because an outsider who knows the pool and candidates could otherwise try
/// every small set of conflicts against a plain hash.
pub fn conflicts_digest(key: &SaltKey, conflicts: &[Conflict]) -> Sha256 {
    let mut text = Vec::with_capacity(conflicts.len() * 32);
    for c in conflicts {
        push_line(&mut text, &[c.entity.as_str(), c.inspector.as_str()]);
    }
    hmac(&key.0, &[&text])
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
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
        let upper = format!("\"{}\"", "AB".repeat(32));
        let err = serde_json::from_str::<Seed>(&upper).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn the_forbidden_characters_are_exactly_unicode_cc() {
        for c in [
            '\u{0}', '\t', '\n', '\r', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}',
        ] {
            assert!(is_forbidden_char(c), "{c:?}");
        }
        for c in [' ', '~', '\u{a0}', '\u{200b}', '\u{2028}', '检'] {
            assert!(!is_forbidden_char(c), "{c:?}");
        }
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(is_forbidden_char(c), c.is_control(), "{c:?}");
        }
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

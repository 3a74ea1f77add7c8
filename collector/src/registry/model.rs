//! The records of the item list and the two libraries (一单两库), as validated types.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use spotcheck_protocol::{AgentId, Domain};

use super::credit_code::CreditCode;

/// Why a short identifier-like field is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {found:?} is invalid: {rule}")]
pub struct TokenError {
    /// Which kind of value.
    pub what: &'static str,
    /// The input.
    pub found: String,
    /// What it must look like.
    pub rule: &'static str,
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal, $rule:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and checks the value.
            pub fn new(s: impl Into<String>) -> Result<$name, TokenError> {
                let s: String = s.into();
                if !$name::valid(&s) {
                    return Err($name::invalid(s));
                }
                Ok($name(s))
            }

            fn invalid(found: String) -> TokenError {
                TokenError { what: $what, found, rule: $rule }
            }

            /// Whether `s` is a valid value, without making one.
            fn valid(s: &str) -> bool {
                let ok: fn(char) -> bool = $ok;
                !s.is_empty() && s.len() <= $max && s.chars().all(ok)
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = TokenError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

token_type!(
    /// A credit-risk class (A low … D high by default; the set is configuration).
    RiskClass, "risk class", 8, "1-8 characters A-Z or 0-9, e.g. A",
    |c| c.is_ascii_uppercase() || c.is_ascii_digit()
);
token_type!(
    /// A department (the inspecting body), as a short slug: `health`, `culture`, `market`.
    Department, "department", 32, "1-32 characters a-z, 0-9 or '-', e.g. health",
    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
);
token_type!(
    /// An inspector's public staff id in the inspector library (not the certificate number,
    /// which stays out of published draws).
    InspectorId, "inspector id", 32, "1-32 characters A-Z, a-z, 0-9, '-' or '_'",
    |c| c.is_ascii_alphanumeric() || c == '-' || c == '_'
);
token_type!(
    /// A law-enforcement certificate number (执法证号).
    CertificateNo, "certificate number", 32, "1-32 characters A-Z, a-z, 0-9 or '-'",
    |c| c.is_ascii_alphanumeric() || c == '-'
);
token_type!(
    /// A draw's id, as a slug: `2026-health-pool-b1`.
    DrawId, "draw id", 64, "1-64 characters a-z, 0-9 or '-'",
    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
);
token_type!(
    /// An item of the item list, as a slug: `pool-water-quality`.
    ItemId, "item id", 64, "1-64 characters a-z, 0-9 or '-'",
    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
);

impl RiskClass {
    /// The default classes, lowest risk first: A, B, C, D.
    pub fn defaults() -> Vec<RiskClass> {
        ["A", "B", "C", "D"]
            .into_iter()
            .map(|c| RiskClass(c.to_owned()))
            .collect()
    }
}

/// A risk class checked where it lies (in a row being imported), not copied: see
/// [`RiskClass::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskRef<'a>(&'a str);

impl RiskClass {
    /// Checks `s` as [`RiskClass::new`] does, without copying it when it is valid.
    pub fn check(s: &str) -> Result<RiskRef<'_>, TokenError> {
        if RiskClass::valid(s) {
            Ok(RiskRef(s))
        } else {
            Err(RiskClass::invalid(s.to_owned()))
        }
    }

    /// The class, borrowed.
    pub fn borrowed(&self) -> RiskRef<'_> {
        RiskRef(&self.0)
    }
}

impl RiskRef<'_> {
    /// The class as text.
    pub fn as_str(&self) -> &str {
        self.0
    }

    /// The class, owned.
    pub fn to_class(self) -> RiskClass {
        RiskClass(self.0.to_owned())
    }
}

/// A list field's value as a file gives it: `;`-separated text or a JSON array of strings.
/// Its items are trimmed (text) and the empty ones skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRef<'a> {
    /// The field is absent.
    Empty,
    /// `a;b;c`.
    Text(&'a str),
    /// A JSON array (its items trimmed when read).
    List(&'a [String]),
}

impl<'a> ListRef<'a> {
    /// The non-empty items.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        let (text, list) = match self {
            ListRef::Empty => (None, None),
            ListRef::Text(s) => (Some(s.split(';').map(str::trim)), None),
            ListRef::List(v) => (None, Some(v.iter().map(String::as_str))),
        };
        text.into_iter()
            .flatten()
            .chain(list.into_iter().flatten())
            .filter(|s| !s.is_empty())
    }
}

/// An entity's agent ids checked where they lie: the list as the row gave it, or an entity's
/// own ids. Made only by [`AgentIdsRef::check`] or from an [`Entity`], so every item is valid.
#[derive(Debug, Clone, Copy)]
pub struct AgentIdsRef<'a>(Agents<'a>);

#[derive(Debug, Clone, Copy)]
enum Agents<'a> {
    Listed(ListRef<'a>),
    Ids(&'a [AgentId]),
}

impl<'a> AgentIdsRef<'a> {
    /// Checks every item of `list` as an agent id; each invalid one is passed to `bad`, and
    /// then there is no list.
    pub fn check(
        list: ListRef<'a>,
        mut bad: impl FnMut(spotcheck_protocol::IdError),
    ) -> Option<AgentIdsRef<'a>> {
        let mut ok = true;
        for s in list.iter() {
            // The id rules live with the type; the copy is dropped at once.
            if let Err(e) = AgentId::new(s) {
                bad(e);
                ok = false;
            }
        }
        ok.then_some(AgentIdsRef(Agents::Listed(list)))
    }

    /// The ids as text.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        let (listed, ids) = match self.0 {
            Agents::Listed(l) => (Some(l.iter()), None),
            Agents::Ids(v) => (None, Some(v.iter().map(AgentId::as_str))),
        };
        listed
            .into_iter()
            .flatten()
            .chain(ids.into_iter().flatten())
    }

    /// The ids, owned.
    pub fn to_vec(self) -> Vec<AgentId> {
        match self.0 {
            Agents::Ids(v) => v.to_vec(),
            Agents::Listed(l) => l
                .iter()
                .map(|s| AgentId::new(s).expect("checked when the list was made"))
                .collect(),
        }
    }
}

impl serde::Serialize for AgentIdsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// An entity-library row as it is imported: checked, its text borrowed from the row it was
/// read from (a million-row import copies none of it). [`EntityRef::to_entity`] makes the
/// [`Entity`].
#[derive(Debug, Clone)]
pub struct EntityRef<'a> {
    /// 统一社会信用代码, the key.
    pub code: std::borrow::Cow<'a, CreditCode>,
    /// Registered name (one line).
    pub name: &'a str,
    /// Which feed it belongs to.
    pub domain: Domain,
    /// District.
    pub district: &'a str,
    /// Registered address.
    pub address: &'a str,
    /// Contact.
    pub contact: &'a str,
    /// Credit-risk class.
    pub risk: RiskRef<'a>,
    /// Agents bound to it.
    pub agents: AgentIdsRef<'a>,
}

impl EntityRef<'_> {
    /// The `registry_entities` columns in the table's order (code, name, domain, district,
    /// address, contact, risk, agents), the agents as a JSON array written into `json`, a
    /// buffer the caller keeps across rows.
    pub fn columns<'s>(&'s self, json: &'s mut Vec<u8>) -> [&'s str; 8] {
        json.clear();
        serde_json::to_writer(&mut *json, &self.agents).expect("agent ids serialise");
        let agents = std::str::from_utf8(json).expect("serde_json writes UTF-8");
        [
            self.code.as_str(),
            self.name,
            self.domain.as_str(),
            self.district,
            self.address,
            self.contact,
            self.risk.as_str(),
            agents,
        ]
    }

    /// The entity, owned.
    pub fn to_entity(&self) -> Entity {
        Entity {
            code: self.code.clone().into_owned(),
            name: self.name.to_owned(),
            domain: self.domain,
            district: self.district.to_owned(),
            address: self.address.to_owned(),
            contact: self.contact.to_owned(),
            risk: self.risk.to_class(),
            agents: self.agents.to_vec(),
        }
    }
}

impl<'a> From<&'a Entity> for EntityRef<'a> {
    fn from(e: &'a Entity) -> EntityRef<'a> {
        EntityRef {
            code: std::borrow::Cow::Borrowed(&e.code),
            name: &e.name,
            domain: e.domain,
            district: &e.district,
            address: &e.address,
            contact: &e.contact,
            risk: e.risk.borrowed(),
            agents: AgentIdsRef(Agents::Ids(&e.agents)),
        }
    }
}

/// General or key item (一般 / 重点检查事项).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// The sampling ratio is limited.
    General,
    /// Safety, quality, public interest: no upper limit.
    Key,
}

/// How an item is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// From the readings, through a rule pack.
    Remote,
    /// By a visit.
    OnSite,
    /// Either, or both.
    Both,
}

/// An entry of the item list (一单).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its id.
    pub id: ItemId,
    /// Its name.
    pub name: String,
    /// Who inspects it.
    pub department: Department,
    /// Legal basis (an item without one is not allowed).
    pub legal_basis: String,
    /// General or key.
    pub kind: ItemKind,
    /// Remote, on-site or both.
    pub method: Method,
    /// The rule pack used for a remote check, if any.
    pub rule_pack: Option<String>,
}

/// An entry of the entity library (市场主体名录库).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// 统一社会信用代码, the key.
    pub code: CreditCode,
    /// Registered name.
    pub name: String,
    /// Which feed it belongs to.
    pub domain: Domain,
    /// District (区), e.g. 南山区.
    pub district: String,
    /// Registered address.
    pub address: String,
    /// Contact (person and phone).
    pub contact: String,
    /// Credit-risk class (internal, not public).
    pub risk: RiskClass,
    /// Agents bound to it. Ingest still takes bindings from the collector config.
    pub agents: Vec<AgentId>,
}

/// An entry of the inspector library (执法检查人员名录库).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspector {
    /// Public staff id.
    pub id: InspectorId,
    /// Name.
    pub name: String,
    /// Law-enforcement certificate number (not published in draws).
    pub certificate: CertificateNo,
    /// Department.
    pub department: Department,
    /// Fields of enforcement (执法领域), as domains.
    pub fields: BTreeSet<Domain>,
    /// Whether they may be drawn.
    pub active: bool,
    /// Entities they must recuse from (回避).
    pub conflicts: BTreeSet<CreditCode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_refuse_tabs_and_empty_values() {
        assert!(Department::new("health").is_ok());
        assert!(Department::new("Health").is_err());
        assert!(InspectorId::new("hb\t1").is_err());
        assert!(RiskClass::new("").is_err());
        let e = RiskClass::new("a").unwrap_err();
        assert!(e.to_string().contains("risk class \"a\""), "{e}");
    }
}

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
                let ok: fn(char) -> bool = $ok;
                if s.is_empty() || s.len() > $max || !s.chars().all(ok) {
                    return Err(TokenError { what: $what, found: s, rule: $rule });
                }
                Ok($name(s))
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

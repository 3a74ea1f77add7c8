//! Identifiers that travel on the wire and inside topics.
//!
//! Every id is checked once, when it is made: a value of these types can always be put into a
//! topic level without escaping, because the charset excludes the MQTT wildcards `+` and `#`,
//! the level separator `/`, and anything outside printable ASCII.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id accepted, in bytes (ids are ASCII, so also in characters).
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("id is empty; use 1 to {MAX_ID_LEN} characters from A-Z a-z 0-9 - _")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("id is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Length of the rejected id.
        len: usize,
    },
    /// The id holds a character outside `A-Z a-z 0-9 - _`.
    #[error("id holds {ch:?} at position {pos}; only A-Z a-z 0-9 - _ are allowed (no MQTT wildcards or '/')")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its character position, counting from 0.
        pos: usize,
    },
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some((pos, ch)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadChar { ch, pos });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: s.len() });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` against the id rules and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A field agent, unique across the deployment; it is also the agent's MQTT client id.
    AgentId
);
id_type!(
    /// A supervised entity (a pool, a game operator, an internet hospital) in the entity library.
    EntityId
);
id_type!(
    /// An operator's own id for a discrete record (a game session, a consultation, a payment).
    RecordId
);
id_type!(
    /// A pseudonymous person id chosen by the operator (player, doctor, pharmacist).
    ///
    /// Spotcheck never needs a real name or an id card number on the wire; operators send a
    /// stable pseudonym so that rules can relate records of the same person.
    PersonRef
);

/// The supervised field an entity belongs to; it is the first level after `spotcheck/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Public swimming pools (health bureau; GB 37488-2019).
    Pool,
    /// Online-game operators (culture bureau; minors' protection notices 2019 and 2021).
    Game,
    /// Internet hospitals (health bureau; 互联网诊疗监管细则（试行）2022).
    Hospital,
}

impl Domain {
    /// Every domain, in a fixed order.
    pub const ALL: [Domain; 3] = [Domain::Pool, Domain::Game, Domain::Hospital];

    /// The topic level and JSON spelling of the domain.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Pool => "pool",
            Domain::Game => "game",
            Domain::Hospital => "hospital",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Domain`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown domain {0:?}; expected one of pool, game, hospital")]
pub struct UnknownDomain(pub String);

impl std::str::FromStr for Domain {
    type Err = UnknownDomain;
    fn from_str(s: &str) -> Result<Self, UnknownDomain> {
        Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDomain(s.to_owned()))
    }
}

/// A per-agent sequence number of a batch: it increases by one for every batch an agent makes,
/// across restarts, so that the collector can drop redelivered duplicates by (agent, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_charset() {
        assert!(AgentId::new("pool-agent_01").is_ok());
        assert!(EntityId::new("a".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn ids_reject_wildcards_separators_and_overlong_values() {
        for bad in ["a+b", "a#", "a/b", "a b", "ä", "$SYS"] {
            assert!(
                matches!(AgentId::new(bad), Err(IdError::BadChar { .. })),
                "{bad}"
            );
        }
        assert_eq!(AgentId::new(""), Err(IdError::Empty));
        assert_eq!(
            AgentId::new("a".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong {
                len: MAX_ID_LEN + 1
            })
        );
    }

    #[test]
    fn domains_round_trip_through_their_names() {
        for d in Domain::ALL {
            assert_eq!(d.as_str().parse::<Domain>(), Ok(d));
        }
        assert!("pools".parse::<Domain>().is_err());
    }
}

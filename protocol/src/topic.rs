//! MQTT topics: the only place where they are built and parsed.
//!
//! ```text
//! spotcheck/v1/{domain}/{entity}/{agent}/readings   agent → collector, QoS 1
//! spotcheck/v1/{domain}/{entity}/{agent}/events     agent → collector, QoS 1
//! spotcheck/v1/agents/{agent}/status                agent (and its last will), retained
//! spotcheck/v1/agents/{agent}/ack                   collector → agent, QoS 1
//! ```
//!
//! `agents` cannot collide with a domain level because [`Domain`] has no such variant.

use std::fmt;

use crate::ids::{AgentId, Domain, EntityId, IdError};

/// The first two levels of every Spotcheck topic.
pub const PREFIX: &str = "spotcheck/v1";

/// A parsed Spotcheck topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A batch of numeric readings from `agent` about `entity`.
    Readings {
        /// The entity's domain.
        domain: Domain,
        /// The supervised entity the readings are about.
        entity: EntityId,
        /// The agent that publishes them.
        agent: AgentId,
    },
    /// A batch of discrete event records from `agent` about `entity`.
    Events {
        /// The entity's domain.
        domain: Domain,
        /// The supervised entity the records are about.
        entity: EntityId,
        /// The agent that publishes them.
        agent: AgentId,
    },
    /// The retained online/offline status of an agent.
    Status {
        /// The agent the status is about.
        agent: AgentId,
    },
    /// The collector's confirmation of the sequence numbers it has committed for an agent.
    Ack {
        /// The agent the confirmation is for.
        agent: AgentId,
    },
}

/// What a batch topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Numeric readings.
    Readings,
    /// Discrete event records.
    Events,
}

/// Why a string is not a Spotcheck topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with `spotcheck/v1/`.
    #[error("topic does not start with {PREFIX}/")]
    Prefix,
    /// The topic has the wrong number of levels or an unknown last level.
    #[error("topic has an unknown shape; expected {PREFIX}/{{domain}}/{{entity}}/{{agent}}/readings|events or {PREFIX}/agents/{{agent}}/status|ack")]
    Shape,
    /// The domain level names no known domain.
    #[error("topic level 3 is {0:?}, not a domain (pool, game, hospital)")]
    Domain(String),
    /// The entity level is not a valid id.
    #[error("topic's entity level is invalid: {0}")]
    Entity(IdError),
    /// The agent level is not a valid id.
    #[error("topic's agent level is invalid: {0}")]
    Agent(IdError),
}

impl Topic {
    /// A readings or events topic for `stream`.
    pub fn batch(stream: Stream, domain: Domain, entity: EntityId, agent: AgentId) -> Topic {
        match stream {
            Stream::Readings => Topic::Readings {
                domain,
                entity,
                agent,
            },
            Stream::Events => Topic::Events {
                domain,
                entity,
                agent,
            },
        }
    }

    /// Parses a topic name as received from the broker.
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        let rest = s
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::Prefix)?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["agents", agent, kind] => {
                let agent = AgentId::new(*agent).map_err(TopicError::Agent)?;
                match *kind {
                    "status" => Ok(Topic::Status { agent }),
                    "ack" => Ok(Topic::Ack { agent }),
                    _ => Err(TopicError::Shape),
                }
            }
            [domain, entity, agent, kind] => {
                let stream = match *kind {
                    "readings" => Stream::Readings,
                    "events" => Stream::Events,
                    _ => return Err(TopicError::Shape),
                };
                let domain = domain
                    .parse::<Domain>()
                    .map_err(|_| TopicError::Domain((*domain).to_owned()))?;
                let entity = EntityId::new(*entity).map_err(TopicError::Entity)?;
                let agent = AgentId::new(*agent).map_err(TopicError::Agent)?;
                Ok(Topic::batch(stream, domain, entity, agent))
            }
            _ => Err(TopicError::Shape),
        }
    }

    /// The agent named in the topic.
    pub fn agent(&self) -> &AgentId {
        match self {
            Topic::Readings { agent, .. }
            | Topic::Events { agent, .. }
            | Topic::Status { agent }
            | Topic::Ack { agent } => agent,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Readings {
                domain,
                entity,
                agent,
            } => {
                write!(f, "{PREFIX}/{domain}/{entity}/{agent}/readings")
            }
            Topic::Events {
                domain,
                entity,
                agent,
            } => {
                write!(f, "{PREFIX}/{domain}/{entity}/{agent}/events")
            }
            Topic::Status { agent } => write!(f, "{PREFIX}/agents/{agent}/status"),
            Topic::Ack { agent } => write!(f, "{PREFIX}/agents/{agent}/ack"),
        }
    }
}

/// Subscription filters, built here so that no caller spells a wildcard by hand.
pub mod filter {
    use super::PREFIX;

    /// Every readings topic of every domain, entity and agent.
    pub fn all_readings() -> String {
        format!("{PREFIX}/+/+/+/readings")
    }

    /// Every events topic of every domain, entity and agent.
    pub fn all_events() -> String {
        format!("{PREFIX}/+/+/+/events")
    }

    /// Every agent's status topic.
    pub fn all_status() -> String {
        format!("{PREFIX}/agents/+/status")
    }

    /// `filter` as an MQTT 5 shared subscription of `group`, so that N collectors split the load.
    pub fn shared(group: &str, filter: &str) -> String {
        format!("$share/{group}/{filter}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (EntityId, AgentId) {
        (
            EntityId::new("pool-1").unwrap(),
            AgentId::new("agent-1").unwrap(),
        )
    }

    #[test]
    fn every_topic_round_trips_through_its_string() {
        let (entity, agent) = ids();
        let topics = [
            Topic::batch(
                Stream::Readings,
                Domain::Pool,
                entity.clone(),
                agent.clone(),
            ),
            Topic::batch(Stream::Events, Domain::Game, entity, agent.clone()),
            Topic::Status {
                agent: agent.clone(),
            },
            Topic::Ack { agent },
        ];
        for t in topics {
            assert_eq!(Topic::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn readings_topic_has_the_documented_form() {
        let (entity, agent) = ids();
        let t = Topic::batch(Stream::Readings, Domain::Hospital, entity, agent);
        assert_eq!(
            t.to_string(),
            "spotcheck/v1/hospital/pool-1/agent-1/readings"
        );
    }

    #[test]
    fn malformed_topics_are_rejected_with_the_level_named() {
        assert_eq!(Topic::parse("other/v1/x"), Err(TopicError::Prefix));
        assert_eq!(
            Topic::parse("spotcheck/v1/pool/e/a/other"),
            Err(TopicError::Shape)
        );
        assert_eq!(
            Topic::parse("spotcheck/v1/pool/e/a"),
            Err(TopicError::Shape)
        );
        assert!(matches!(
            Topic::parse("spotcheck/v1/zoo/e/a/readings"),
            Err(TopicError::Domain(_))
        ));
        assert!(matches!(
            Topic::parse("spotcheck/v1/pool/e+/a/readings"),
            Err(TopicError::Entity(_))
        ));
        assert!(matches!(
            Topic::parse("spotcheck/v1/agents/a#/status"),
            Err(TopicError::Agent(_))
        ));
    }
}

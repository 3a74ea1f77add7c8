//! Who may publish what: the agent → entity bindings, and which agents are online.
//!
//! For now the bindings come from configuration; the entity library records the agents bound
//! to each entity too, but ingest still reads the configuration's `[[agents]]`.
//!
//! The item list and the two libraries (一单两库):
//!
//! Agent credentials ([`credentials`]): each agent's HMAC key and broker password.
//!
//! - [`credit_code`]: the unified social credit code (GB 32100-2015).
//! - [`model`]: items, entities, inspectors and their typed fields.
//! - [`import`]: CSV and JSON import with every bad row reported by line and field;
//!   [`csv_file`] reads a CSV file's rows in place, [`parse`] turns one row into one typed
//!   record.
//! - [`store`]: the libraries in SQLite, replaced or extended atomically; [`handoff`] writes
//!   an entity file on one thread while another reads and checks it.

pub mod credentials;
pub mod credit_code;
pub mod csv_file;
pub mod handoff;
pub mod import;
pub mod model;
pub mod parse;
pub mod store;

pub use credit_code::{CreditCode, CreditCodeError};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use spotcheck_protocol::{AgentId, AgentState, Domain, EntityId};

use crate::config::AgentBinding;

/// The entity an agent is registered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The entity.
    pub entity: EntityId,
    /// Its domain.
    pub domain: Domain,
}

/// Agent → entity bindings, read-only once ingest starts.
#[derive(Debug, Clone, Default)]
pub struct Bindings(Arc<HashMap<AgentId, Binding>>);

impl Bindings {
    /// Builds the map from configuration entries (validated to be unique).
    pub fn new(entries: &[AgentBinding]) -> Bindings {
        Bindings(Arc::new(
            entries
                .iter()
                .map(|a| {
                    (
                        a.id.clone(),
                        Binding {
                            entity: a.entity.clone(),
                            domain: a.domain,
                        },
                    )
                })
                .collect(),
        ))
    }

    /// The binding of `agent`, if it is registered.
    pub fn get(&self, agent: &AgentId) -> Option<&Binding> {
        self.0.get(agent)
    }

    /// Every registered agent.
    pub fn ids(&self) -> Vec<AgentId> {
        self.0.keys().cloned().collect()
    }

    /// How many agents are registered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The last status each agent published (its retained status topic).
#[derive(Debug, Clone, Default)]
pub struct Presence(Arc<Mutex<HashMap<AgentId, (AgentState, StatusOrder)>>>);

/// A status's `(epoch, counter)`: where it stands in its agent's sequence of statuses.
pub type StatusOrder = (u64, u64);

impl Presence {
    /// Records `state` for `agent` unless a status later in the agent's sequence (a higher
    /// `order`, see `Status::order`) was recorded already; returns how many agents are online
    /// now, or `None` for a stale status (a replay), which changes nothing.
    pub fn set(&self, agent: AgentId, state: AgentState, order: StatusOrder) -> Option<usize> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&agent) {
            Some((_, last)) if *last > order => return None,
            _ => {}
        }
        map.insert(agent, (state, order));
        Some(
            map.values()
                .filter(|(s, _)| *s == AgentState::Online)
                .count(),
        )
    }

    /// Every agent seen, with its state, sorted by id.
    pub fn all(&self) -> Vec<(AgentId, AgentState)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(a, (s, _))| (a.clone(), *s)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

//! What `/healthz` reports: each long-running part of the collector says whether it is up,
//! and a part that stops for any reason — a clean exit, an error, a panic — says so by
//! dropping its [`Alive`] guard, so a dead commit thread can never leave a stale "ok" behind.
//!
//! A part can also be alive but failing (the commit thread retrying a transaction on a full
//! disk): [`Alive::failing`] records the reason until [`Alive::ok`] clears it.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// The parts `/healthz` reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The broker link: the embedded broker's in-process link or the MQTT connections.
    BrokerLink,
    /// Ingest's commit thread, the writer of the readings (and of anomaly tasks).
    CommitThread,
    /// The store, as a reader sees it.
    Store,
    /// The rule engine's clock (inactivity and sliding windows), on the commit thread.
    RuleTicker,
    /// This collector's part in the leadership of the work done once (the sink, retention,
    /// the rule ticker, notifications): up while it leads, standby while another does.
    Leader,
}

impl Part {
    const ALL: [Part; 5] = [
        Part::BrokerLink,
        Part::CommitThread,
        Part::Store,
        Part::RuleTicker,
        Part::Leader,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// How one part is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PartState {
    /// Not started (yet), or not used by this configuration.
    Off {
        /// Why.
        reason: String,
    },
    /// Running and doing its work.
    Up,
    /// Ready, while another collector does this work (a leader's work on a standby).
    Standby {
        /// Who does it, and when this one takes over.
        reason: String,
    },
    /// Running, but its work fails.
    Failing {
        /// The last error.
        reason: String,
    },
    /// Stopped.
    Down {
        /// How it stopped.
        reason: String,
    },
}

impl PartState {
    /// Whether this state makes the collector unhealthy. A part that is off by configuration
    /// is not a fault.
    pub fn is_fault(&self) -> bool {
        matches!(self, PartState::Failing { .. } | PartState::Down { .. })
    }
}

/// The state of every part. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    parts: Arc<[Mutex<PartState>; 5]>,
}

impl Default for Health {
    fn default() -> Health {
        let off = || {
            Mutex::new(PartState::Off {
                reason: "not started".into(),
            })
        };
        Health {
            parts: Arc::new([off(), off(), off(), off(), off()]),
        }
    }
}

impl Health {
    fn set(&self, part: Part, state: PartState) {
        // A poisoned lock only means a panic while holding it; the state is still a value.
        let mut slot = self.parts[part.index()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *slot = state;
    }

    /// Marks `part` up for as long as the returned guard lives.
    pub fn alive(&self, part: Part) -> Alive {
        self.set(part, PartState::Up);
        Alive {
            health: self.clone(),
            part,
        }
    }

    /// Marks `part` as not used by this configuration.
    pub fn off(&self, part: Part, reason: impl Into<String>) {
        self.set(
            part,
            PartState::Off {
                reason: reason.into(),
            },
        );
    }

    /// Records a fault of a part that has no guard of its own (the store, probed per request).
    pub fn report(&self, part: Part, state: PartState) {
        self.set(part, state);
    }

    /// Every part and its state.
    pub fn parts(&self) -> Vec<(Part, PartState)> {
        Part::ALL
            .iter()
            .map(|&p| {
                let s = self.parts[p.index()]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                (p, s)
            })
            .collect()
    }

    /// Whether no part is failing or down.
    pub fn is_healthy(&self) -> bool {
        self.parts().iter().all(|(_, s)| !s.is_fault())
    }
}

/// A part's presence: while it lives the part is up (or failing); dropping it — by returning,
/// by an error, or by unwinding from a panic — marks the part down.
#[derive(Debug)]
pub struct Alive {
    health: Health,
    part: Part,
}

impl Alive {
    /// The part is running but its work fails.
    pub fn failing(&self, reason: impl Into<String>) {
        self.health.set(
            self.part,
            PartState::Failing {
                reason: reason.into(),
            },
        );
    }

    /// The part is running, but another collector does its work (it leads).
    pub fn standby(&self, reason: impl Into<String>) {
        self.health.set(
            self.part,
            PartState::Standby {
                reason: reason.into(),
            },
        );
    }

    /// The part's work succeeds again.
    pub fn ok(&self) {
        self.health.set(self.part, PartState::Up);
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            "panicked"
        } else {
            "stopped"
        };
        self.health.set(
            self.part,
            PartState::Down {
                reason: reason.into(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_down_once_its_thread_panics() {
        let health = Health::default();
        let alive = health.alive(Part::CommitThread);
        assert!(health.is_healthy());
        let t = std::thread::spawn(move || {
            let _alive = alive;
            panic!("commit thread dies");
        });
        assert!(t.join().is_err());
        assert!(!health.is_healthy());
        assert_eq!(
            health.parts()[Part::CommitThread.index()].1,
            PartState::Down {
                reason: "panicked".into()
            }
        );
    }

    #[test]
    fn failing_is_a_fault_until_ok_and_off_is_none() {
        let health = Health::default();
        health.off(Part::RuleTicker, "rules disabled");
        let alive = health.alive(Part::CommitThread);
        alive.failing("disk full");
        assert!(!health.is_healthy());
        alive.ok();
        assert!(health.is_healthy());
    }

    #[test]
    fn a_standby_is_healthy() {
        let health = Health::default();
        health.report(
            Part::Leader,
            PartState::Standby {
                reason: "another collector leads".into(),
            },
        );
        assert!(health.is_healthy());
        let leader = &health.parts()[Part::Leader.index()];
        assert_eq!(serde_json::to_value(&leader.1).unwrap()["state"], "standby");
    }
}

//! The work done once (store/leader.rs), run while this collector leads: started when it
//! gains the leadership, stopped when it loses it, drained when the collector stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::StartError;
use crate::config::Config;
use crate::health::{Health, Part, PartState};
use crate::rulebook::Rulebook;
use crate::store::db::DbUrl;
use crate::store::leader::{Lead, Status};
use crate::telemetry::Stats;

/// The work done once, run while this collector leads: the time-series sink (if configured)
/// and the notification worker. Retention and the rule ticker run on the commit thread,
/// which asks the leadership itself.
pub(super) struct LeaderWork {
    sink: Option<crate::sink::Sink>,
    notifier: crate::notify::Notifier,
}

pub(super) type StartWork = Arc<dyn Fn() -> Result<LeaderWork, StartError> + Send + Sync>;

impl LeaderWork {
    /// Starts the work (blocking: connects to the store).
    pub(super) fn start(
        config: &Config,
        url: &DbUrl,
        stats: &Stats,
        rulebook: &Rulebook,
        lead: &Lead,
    ) -> Result<LeaderWork, StartError> {
        // Reads what ingest commits, from the store; ingest does not know it exists.
        let sink = match config.sink.clone() {
            Some(c) => Some(crate::sink::Sink::start_led(
                c,
                &config.data_dir,
                url,
                stats.sink.clone(),
                lead.clone(),
            )?),
            None => None,
        };
        // Reads the outbox that ingest and the API write; nothing waits for it.
        let notifier = crate::notify::Notifier::start_led(
            url,
            config.notify.clone(),
            crate::notify::scan::ScanSettings {
                publish_within_days: config.publication.within_days,
            },
            rulebook.clone(),
            lead.clone(),
        )?;
        Ok(LeaderWork { sink, notifier })
    }

    /// Stops the work (blocking): `drain` lets the sink deliver what is committed first (a
    /// collector shutting down); without it the sink stops at once (the leadership is lost).
    fn stop(self, drain: bool) {
        if let Some(s) = self.sink {
            if drain {
                s.stop();
            } else {
                s.abandon();
            }
        }
        self.notifier.stop();
    }
}

/// Runs the leader's work while `lead` leads: starts it on gaining the leadership (again a
/// second later if that fails), stops it on losing it, and restarts it for a new term (the
/// leadership lost and won back between two looks); reports the leadership in `/healthz` and
/// `spotcheck_leader`. On `stop`, stops the work, letting the sink drain.
pub(super) fn spawn_leader_work(
    lead: Lead,
    start: StartWork,
    first: Option<(i64, LeaderWork)>,
    (health, stats): (Health, Stats),
    retry: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let off = |w: LeaderWork, drain: bool| tokio::task::spawn_blocking(move || w.stop(drain));
    tokio::spawn(async move {
        let mut status = lead.watch();
        let mut work = first;
        loop {
            let now = status.borrow_and_update().clone();
            let (state, leading) = match &now {
                Status::Leading { .. } => (PartState::Up, 1),
                Status::Standby => (
                    PartState::Standby {
                        reason: format!(
                            "another collector leads; this one tries to take over every {} ms",
                            retry.as_millis()
                        ),
                    },
                    0,
                ),
                Status::Unreachable(reason) => (
                    PartState::Failing {
                        reason: format!("cannot campaign for the leadership: {reason}"),
                    },
                    0,
                ),
            };
            health.report(Part::Leader, state);
            stats.leader.set(leading);
            let term = match now {
                Status::Leading { term } => Some(term),
                _ => None,
            };
            if let Some((t, w)) = work.take() {
                if Some(t) == term {
                    work = Some((t, w));
                } else {
                    info!(message = "Stopping the leader's work: this collector no longer leads in its term.", term = t);
                    let _ = off(w, false).await;
                }
            }
            if let (Some(term), None) = (term, &work) {
                let start = start.clone();
                match tokio::task::spawn_blocking(move || start()).await {
                    Ok(Ok(w)) => {
                        info!(message = "Leader's work started.", term);
                        work = Some((term, w));
                    }
                    Ok(Err(error)) => {
                        tracing::error!(message = "Starting the leader's work failed; trying again.", %error);
                    }
                    Err(_) => {}
                }
            }
            let again = term.is_some() && work.is_none();
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = status.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(Duration::from_secs(1)), if again => {}
            }
        }
        if let Some((_, w)) = work {
            let _ = off(w, true).await;
        }
    })
}

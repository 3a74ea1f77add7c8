//! The publisher stage: sources' batches into the spool, pending records out to the broker,
//! the collector's acks back into the spool.
//!
//! Its states: **offline** (not connected: batches are only spooled), **catch-up** (just
//! connected: every pending record is re-sent in seq order, `max_in_flight` at a time),
//! **normal** (new records are published as they are spooled), and **shutdown** (stop taking
//! batches once the sources have finished, publish the status `offline`, disconnect, flush).

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use spotcheck_protocol::{
    with_after, Ack, AgentId, AgentState, Batch, Domain, EntityId, Seq, Stream, Topic,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{NetEvent, PublishError};
use crate::credential::Signer;
use crate::sources::Submission;
use crate::spool::{Spool, SpoolError};
use crate::AgentStats;

/// How the publisher left the connection at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownState {
    /// A DISCONNECT was queued; the connection task ends once it has gone out.
    Disconnecting,
    /// Not connected; the connection task can be stopped at once.
    Offline,
}

/// The publisher stage. See the module docs.
pub struct Publisher {
    agent: AgentId,
    entity: EntityId,
    domain: Domain,
    client: AsyncClient,
    spool: Spool,
    batches: Option<mpsc::Receiver<Submission>>,
    net: mpsc::Receiver<NetEvent>,
    shutdown: CancellationToken,
    ack_timeout: Duration,
    max_in_flight: usize,
    connected: bool,
    /// Published, unconfirmed records and when they were last sent.
    in_flight: BTreeMap<u64, Instant>,
    /// Pending records from this seq on have not been published since the last connect.
    cursor: u64,
    resent: u64,
    stats: watch::Sender<AgentStats>,
    signer: Signer,
    /// The current connection's online status counter.
    status_counter: u64,
    /// A batch the spool could not take because the disk is full: while it waits, no more are
    /// taken from the sources (they wait on their bounded queue: paused), and acks keep
    /// freeing space; it is appended again on every tick and after every ack.
    stalled: Option<Submission>,
}

/// The identity and tuning of a [`Publisher`].
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// The agent.
    pub agent: AgentId,
    /// The entity it publishes for.
    pub entity: EntityId,
    /// The entity's domain.
    pub domain: Domain,
    /// Re-send a record unconfirmed for this long.
    pub ack_timeout: Duration,
    /// Most published, unconfirmed records.
    pub max_in_flight: usize,
    /// Signs batches and statuses.
    pub signer: Signer,
}

fn stream_of(batch: &Batch) -> Stream {
    match batch {
        Batch::Readings(_) => Stream::Readings,
        Batch::Events(_) => Stream::Events,
    }
}

fn with_seq(batch: Batch, seq: Seq) -> Batch {
    match batch {
        Batch::Readings(mut b) => {
            b.seq = seq;
            Batch::Readings(b)
        }
        Batch::Events(mut b) => {
            b.seq = seq;
            Batch::Events(b)
        }
    }
}

impl Publisher {
    /// A publisher owning `spool`, fed by `batches` and `net`, until `shutdown`.
    pub fn new(
        settings: PublisherSettings,
        client: AsyncClient,
        spool: Spool,
        batches: mpsc::Receiver<Submission>,
        net: mpsc::Receiver<NetEvent>,
        shutdown: CancellationToken,
        stats: watch::Sender<AgentStats>,
    ) -> Publisher {
        Publisher {
            agent: settings.agent,
            entity: settings.entity,
            domain: settings.domain,
            client,
            spool,
            batches: Some(batches),
            net,
            shutdown,
            ack_timeout: settings.ack_timeout,
            max_in_flight: settings.max_in_flight.max(1),
            connected: false,
            in_flight: BTreeMap::new(),
            cursor: 0,
            resent: 0,
            stats,
            signer: settings.signer,
            status_counter: 0,
            stalled: None,
        }
    }

    /// Runs until `shutdown`, then drains the sources, says goodbye and flushes the spool.
    pub async fn run(mut self) -> Result<ShutdownState, PublishError> {
        let period =
            (self.ack_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.report();
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                event = self.net.recv() => match event {
                    Some(event) => self.on_net(event)?,
                    // The connection task ended on its own; nothing more can be published.
                    None => break,
                },
                batch = recv(&mut self.batches), if self.stalled.is_none() => match batch {
                    Some(batch) => self.on_batch(batch)?,
                    None => {
                        debug!(message = "All sources finished.");
                        self.batches = None;
                    }
                },
                _ = tick.tick() => {
                    self.retry_stalled()?;
                    self.resend_expired()?;
                }
            }
            self.pump()?;
            self.report();
            if self.batches.is_none() && self.spool.pending_len() == 0 {
                // Finite sources (`batches = N`) are done and the collector has confirmed
                // everything: there is nothing left to do, so stop like a one-shot run.
                info!(message = "All sources finished and every batch is confirmed; stopping.");
                break;
            }
        }
        self.finish().await
    }

    async fn finish(mut self) -> Result<ShutdownState, PublishError> {
        // The sources watch the same token; take whatever they still produce, until they are
        // all gone (each drops its sender when it stops).
        if let Some(mut rx) = self.batches.take() {
            let drain = async {
                while let Some(batch) = rx.recv().await {
                    self.on_batch(batch)?;
                }
                Ok::<_, PublishError>(())
            };
            if tokio::time::timeout(Duration::from_secs(5), drain)
                .await
                .is_err()
            {
                warn!(message = "Sources did not stop within 5 s; their last batches are lost.");
            }
        }
        self.pump()?;
        let state = if self.connected {
            let status =
                self.signer
                    .status(&self.agent, AgentState::Offline, self.status_counter + 1);
            let topic = Topic::Status {
                agent: self.agent.clone(),
            };
            if let Err(error) =
                self.client
                    .try_publish(topic.to_string(), QoS::AtLeastOnce, true, status)
            {
                warn!(message = "Could not queue the offline status; the last will covers it.", %error);
            }
            match self.client.try_disconnect() {
                Ok(()) => ShutdownState::Disconnecting,
                Err(_) => ShutdownState::Offline,
            }
        } else {
            ShutdownState::Offline
        };
        self.spool.flush()?;
        self.report();
        info!(
            message = "Publisher stopped.",
            pending = self.spool.pending_len(),
            next_seq = self.spool.next_seq().0
        );
        Ok(state)
    }

    /// Appends the stalled batch again, if there is one; resumes the sources once it fits.
    fn retry_stalled(&mut self) -> Result<(), PublishError> {
        if let Some(submission) = self.stalled.take() {
            self.append(submission, true)?;
            if self.stalled.is_none() {
                info!(
                    message = "Disk space is back; the sources resume.",
                    pending = self.spool.pending_len()
                );
            }
        }
        Ok(())
    }

    /// Appends a source's batch and tells the source the outcome when it asked to be told.
    /// On a full disk the batch waits in `stalled` and the sources pause (see there).
    fn on_batch(&mut self, submission: Submission) -> Result<(), PublishError> {
        self.append(submission, false)
    }

    fn append(&mut self, submission: Submission, retrying: bool) -> Result<(), PublishError> {
        let stream = stream_of(&submission.batch);
        let mark = submission
            .mark
            .as_ref()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let result = self.spool.append_marked(stream, mark, |seq| {
            with_seq(submission.batch.clone(), seq).encode()
        });
        if let Err(e) = &result {
            if e.is_disk_full() {
                if !retrying {
                    crate::telemetry::spool_full();
                    warn!(message = "Disk full: the sources pause while batches are published and acks free space.", error = %e, pending = self.spool.pending_len());
                }
                self.stalled = Some(submission);
                return Ok(());
            }
        }
        let appended = submission.appended;
        let reply = |r: Result<Seq, String>| {
            if let Some(tx) = appended {
                // The source may have given up waiting (e.g. an HTTP client hung up).
                let _ = tx.send(r);
            }
        };
        match result {
            Ok(seq) => {
                reply(Ok(seq));
                Ok(())
            }
            Err(error @ SpoolError::RecordTooLarge { .. }) => {
                error!(message = "Batch dropped.", %error);
                reply(Err(error.to_string()));
                Ok(())
            }
            Err(e) => {
                reply(Err(e.to_string()));
                Err(e.into())
            }
        }
    }

    fn on_net(&mut self, event: NetEvent) -> Result<(), PublishError> {
        match event {
            NetEvent::Connected { counter } => {
                self.connected = true;
                self.status_counter = counter;
                // A new clean session: nothing is in flight any more; re-send all pending.
                self.in_flight.clear();
                self.cursor = 0;
                let ack = Topic::Ack {
                    agent: self.agent.clone(),
                };
                if let Err(error) = self.client.try_subscribe(ack.to_string(), QoS::AtLeastOnce) {
                    error!(message = "Could not subscribe to the ack topic; batches will be re-sent until acks arrive.", %error);
                }
                let status = self.signer.status(&self.agent, AgentState::Online, counter);
                let topic = Topic::Status {
                    agent: self.agent.clone(),
                };
                if let Err(error) =
                    self.client
                        .try_publish(topic.to_string(), QoS::AtLeastOnce, true, status)
                {
                    warn!(message = "Could not publish the online status.", %error);
                }
                if self.spool.pending_len() > 0 {
                    info!(
                        message = "Re-sending pending batches.",
                        pending = self.spool.pending_len()
                    );
                }
            }
            NetEvent::Disconnected => self.connected = false,
            NetEvent::Acked(ack) => {
                self.on_ack(&ack)?;
                self.retry_stalled()?;
            }
        }
        Ok(())
    }

    /// Confirms every pending seq the ack names; walks the pending records, not the ranges,
    /// so that an absurd range costs nothing.
    fn on_ack(&mut self, ack: &Ack) -> Result<(), PublishError> {
        for range in &ack.seqs {
            let mut from = range.first();
            while let Some(seq) = self.spool.first_pending_from(from) {
                if seq > range.last() {
                    break;
                }
                self.spool.ack(seq)?;
                self.in_flight.remove(&seq.0);
                from = Seq(seq.0 + 1);
            }
        }
        if let Some(next) = ack.next {
            if self.spool.advance_to(next)? {
                warn!(
                    message = "The collector has stored sequence numbers beyond this agent's counter (was the spool lost or reset?); new batches continue from the collector's next.",
                    next = next.0
                );
            }
        }
        Ok(())
    }

    /// Publishes one pending record; `false` if it could not be queued now.
    fn publish(&mut self, seq: Seq) -> Result<bool, PublishError> {
        let Some(record) = self.spool.read(seq)? else {
            return Ok(false);
        };
        let topic = Topic::batch(
            record.stream,
            self.domain,
            self.entity.clone(),
            self.agent.clone(),
        );
        // Tell the collector the lowest record still unconfirmed here, so that it stores this
        // one only after everything from there on (in order, even across a broker restart).
        let lowest = self.spool.first_pending_from(Seq(0)).unwrap_or(seq);
        // Signed now, over the exact bytes sent (`after` is spliced in at send time).
        let payload = self.signer.batch(&with_after(&record.payload, lowest));
        match self
            .client
            .try_publish(topic.to_string(), QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => Ok(true),
            Err(error) => {
                debug!(message = "Client request queue full; publishing later.", %error);
                Ok(false)
            }
        }
    }

    /// Publishes pending records not yet sent in this session, up to `max_in_flight`.
    fn pump(&mut self) -> Result<(), PublishError> {
        while self.connected && self.in_flight.len() < self.max_in_flight {
            let Some(seq) = self.spool.first_pending_from(Seq(self.cursor)) else {
                break;
            };
            if !self.in_flight.contains_key(&seq.0) {
                if !self.publish(seq)? {
                    break;
                }
                self.in_flight.insert(seq.0, Instant::now());
            }
            self.cursor = seq.0 + 1;
        }
        Ok(())
    }

    /// Re-sends, in seq order, in-flight records unconfirmed for `ack_timeout`.
    fn resend_expired(&mut self) -> Result<(), PublishError> {
        self.in_flight.retain(|&s, _| self.spool.is_pending(Seq(s)));
        if !self.connected {
            return Ok(());
        }
        let now = Instant::now();
        let due: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, &sent)| now.duration_since(sent) >= self.ack_timeout)
            .map(|(&s, _)| s)
            .collect();
        if !due.is_empty() {
            debug!(
                message = "Re-sending unconfirmed batches.",
                count = due.len(),
                first_seq = due[0]
            );
        }
        for seq in due {
            if !self.publish(Seq(seq))? {
                break;
            }
            self.in_flight.insert(seq, now);
            self.resent += 1;
        }
        Ok(())
    }

    fn report(&self) {
        let s = self.spool.stats();
        self.stats.send_replace(AgentStats {
            next_seq: s.next_seq,
            pending: s.pending,
            in_flight: self.in_flight.len(),
            dropped: s.dropped,
            damaged: self.spool.damaged(),
            resent: self.resent,
            connected: self.connected,
            sources_done: self.batches.is_none(),
        });
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<Submission>>) -> Option<Submission> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

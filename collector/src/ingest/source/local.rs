//! Ingest from the embedded broker in-process, through rumqttd's local link.
//!
//! Over TCP, every message costs the broker an encode and a socket write, and us a read, a
//! decode and a PUBACK back; with shared subscriptions rumqttd also re-reads each message once
//! per member. The local link skips all of it: the router puts up to 200 messages at a time in
//! a buffer this task swaps out.
//!
//! The link subscribes at QoS 0, so nothing is acknowledged to the broker, and that loses
//! nothing: rumqttd has already acknowledged the agent's publish and holds it only in this
//! process's memory. What makes a batch safe is the agent's confirmation after commit; until
//! then the agent keeps it and sends it again.
//!
//! Backpressure: when the queue to the commit stage is full this task waits; the router stops
//! forwarding once the link's buffer is full and resumes when the task says it is ready again.
//!
//! Each chunk the link yields is checked on a task of its own and settled in the order it was
//! read ([`super::check`]).

use std::sync::Arc;

use rumqttd::local::{LinkError, LinkRx, LinkTx};
use rumqttd::Notification;
use spotcheck_protocol::topic::filter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::check::{self, spawn_check};
use super::{ready_now, BrokerAck, Received};
use crate::ingest::commit::Validated;
use crate::ingest::validate::Validator;
use crate::ingest::CHUNK;

/// Subscribes the link to every readings, events and status topic. The error is rumqttd's,
/// as text (its error type carries a whole router event).
pub fn subscribe(tx: &mut LinkTx) -> Result<(), String> {
    for f in [
        filter::all_readings(),
        filter::all_events(),
        filter::all_status(),
    ] {
        tx.subscribe(f.clone())
            .map_err(|e: LinkError| format!("{f}: {e}"))?;
    }
    Ok(())
}

/// Validates what the link receives and forwards it into `out` in groups (everything the link
/// has ready, up to [`CHUNK`]) until `stop` fires or the broker drops the link.
pub async fn run(
    mut rx: LinkRx,
    validator: Validator,
    out: mpsc::Sender<Vec<Validated>>,
    stop: CancellationToken,
) {
    let validator = Arc::new(validator);
    let (checking, forwarder) = check::start(validator.clone(), out, stop.clone());
    let mut chunk = Vec::with_capacity(CHUNK);
    'link: loop {
        let first = tokio::select! {
            n = rx.next() => n,
            _ = stop.cancelled() => break,
        };
        let mut next = Some(first);
        while let Some(n) = next.take() {
            match n {
                Ok(Some(Notification::Forward(f))) => chunk.push(Received {
                    topic: f.publish.topic,
                    payload: f.publish.payload,
                    ack: BrokerAck::Nothing,
                    at: std::time::Instant::now(),
                }),
                // The router paused us after filling the buffer; everything before this
                // notification has been taken, so ask for more.
                Ok(Some(Notification::Unschedule)) => {
                    if rx.wake().await.is_err() {
                        break 'link;
                    }
                }
                Ok(Some(_)) | Ok(None) => {}
                Err(e) => {
                    warn!(message = "The embedded broker dropped ingest's in-process link; ingest stops.", error = %e);
                    break 'link;
                }
            }
            if chunk.len() < CHUNK {
                next = ready_now(rx.next()).await;
            }
        }
        if chunk.is_empty() {
            continue;
        }
        let raw = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
        let check = spawn_check(&validator, raw);
        // Waiting here is the backpressure (the forwarder waits for the commit stage); stop
        // still interrupts it.
        tokio::select! {
            sent = checking.send(check) => if sent.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    drop(checking);
    if let Err(e) = forwarder.await {
        warn!(message = "Ingest's forwarding task failed.", error = %e);
    }
    info!(message = "In-process ingest link stopped.");
}

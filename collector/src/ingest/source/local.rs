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
//! Checking a message (decoding it, verifying its agent's MAC) is most of the CPU a message
//! costs here, and one task reads the whole link: checked on that task alone, ingest used one
//! core while the other idled (at batches of 100, the MAC's HMAC-SHA256 alone cost a fifth of
//! the throughput). So each chunk the link yields is checked on a task of its own, up to
//! [`CHECKING`] chunks at once, and a forwarding task takes the results in the order the chunks
//! arrived, settles them (presence, quotas: [`Validator::settle`], which must see messages in
//! order) and hands them to the commit stage. Messages reach the commit stage in exactly the
//! order the link delivered them.

use std::sync::Arc;

use rumqttd::local::{LinkError, LinkRx, LinkTx};
use rumqttd::Notification;
use spotcheck_protocol::topic::filter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ready_now, BrokerAck, Received};
use crate::ingest::commit::Validated;
use crate::ingest::validate::{Validator, Verdict};
use crate::ingest::CHUNK;

/// Chunks being checked at once: enough for every worker thread of a small machine to have
/// one while the link task reads the next.
const CHECKING: usize = 4;

/// A chunk's messages with their verdicts, not yet settled.
type Checked = Vec<(Received, Verdict)>;

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
    let (checking, in_order) = mpsc::channel::<JoinHandle<Checked>>(CHECKING);
    let forwarder = tokio::spawn(forward(in_order, validator.clone(), out, stop.clone()));
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

/// Checks a chunk's messages on a task of its own.
fn spawn_check(validator: &Arc<Validator>, raw: Vec<Received>) -> JoinHandle<Checked> {
    let v = validator.clone();
    tokio::spawn(async move {
        raw.into_iter()
            .map(|r| {
                let verdict = v.check(&r);
                (r, verdict)
            })
            .collect()
    })
}

/// Takes checked chunks in the order they were read, settles each message and hands the chunk
/// to the commit stage.
async fn forward(
    mut in_order: mpsc::Receiver<JoinHandle<Checked>>,
    validator: Arc<Validator>,
    out: mpsc::Sender<Vec<Validated>>,
    stop: CancellationToken,
) {
    while let Some(check) = in_order.recv().await {
        let checked = match check.await {
            Ok(c) => c,
            Err(e) => {
                // A panic while checking: the chunk's messages are not confirmed, so their
                // agents send them again.
                warn!(message = "Checking a chunk of messages failed; its agents will resend it.", error = %e);
                continue;
            }
        };
        let chunk: Vec<Validated> = checked
            .into_iter()
            .map(|(r, verdict)| validator.settle(r, verdict))
            .collect();
        tokio::select! {
            sent = out.send(chunk) => if sent.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentBinding;
    use crate::ingest::bound::Bounds;
    use crate::ingest::validate::Auth;
    use crate::registry::{Bindings, Presence};
    use crate::telemetry::Stats;
    use spotcheck_protocol::{AgentId, AgentState, Domain, EntityId, Limits};

    fn validator() -> Arc<Validator> {
        Arc::new(Validator {
            bindings: Bindings::new(&[AgentBinding {
                id: AgentId::new("a1").unwrap(),
                entity: EntityId::new("pool-1").unwrap(),
                domain: Domain::Pool,
            }]),
            presence: Presence::default(),
            stats: Stats::default(),
            limits: Limits::default(),
            auth: Auth::off(),
            bounds: Arc::new(Bounds::new(1 << 30)),
        })
    }

    fn status(state: &str, counter: u64) -> Received {
        Received {
            topic: "spotcheck/v1/agents/a1/status".into(),
            payload: format!(
                r#"{{"v":1,"agent":"a1","state":"{state}","epoch":1,"counter":{counter}}}"#
            )
            .into_bytes()
            .into(),
            ack: BrokerAck::Nothing,
        }
    }

    /// A batch of `n` readings: slow to check when `n` is large.
    fn batch(seq: u64, n: usize) -> Received {
        let start = spotcheck_protocol::UnixMillis::now().0 - 60_000;
        let readings: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"metric":"ph","value":7.2,"unit":"pH","ts_ms":{},"quality":"good"}}"#,
                    start + i as i64
                )
            })
            .collect();
        Received {
            topic: "spotcheck/v1/pool/pool-1/a1/readings".into(),
            payload: format!(
                r#"{{"v":1,"agent":"a1","seq":{seq},"readings":[{}]}}"#,
                readings.join(",")
            )
            .into_bytes()
            .into(),
            ack: BrokerAck::Nothing,
        }
    }

    /// A slow chunk read first and a quick one read after it are checked at once, the quick
    /// one finishing first; the commit stage still gets them in the order they were read, and
    /// the agent's two statuses are settled in that order: it ends online, and the older
    /// status is not taken for a replay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_checked_at_once_reach_the_commit_stage_in_the_order_they_were_read() {
        let v = validator();
        let (checking, in_order) = mpsc::channel(CHECKING);
        let (out, mut commit) = mpsc::channel(8);
        let forwarder = tokio::spawn(forward(in_order, v.clone(), out, CancellationToken::new()));
        let mut slow: Vec<Received> = (1..=CHUNK as u64 - 1).map(|s| batch(s, 1_000)).collect();
        slow.push(status("offline", 1));
        checking.send(spawn_check(&v, slow)).await.unwrap();
        checking
            .send(spawn_check(&v, vec![status("online", 2)]))
            .await
            .unwrap();
        drop(checking);

        let first = commit.recv().await.unwrap();
        assert_eq!(first.len(), CHUNK);
        for (i, m) in first[..CHUNK - 1].iter().enumerate() {
            match &m.verdict {
                Verdict::Accept { batch, .. } => assert_eq!(batch.get().seq().0, i as u64 + 1),
                other => panic!("message {i}: {other:?}"),
            }
        }
        assert!(matches!(
            first[CHUNK - 1].verdict,
            Verdict::Status {
                state: AgentState::Offline,
                ..
            }
        ));
        let second = commit.recv().await.unwrap();
        assert!(
            matches!(
                second[..],
                [Validated {
                    verdict: Verdict::Status {
                        state: AgentState::Online,
                        ..
                    },
                    ..
                }]
            ),
            "{second:?}"
        );
        forwarder.await.unwrap();
        assert!(commit.recv().await.is_none());
        assert_eq!(
            v.presence.all(),
            [(AgentId::new("a1").unwrap(), AgentState::Online)]
        );
    }
}

//! Checking messages on several threads and settling them in order.
//!
//! Checking a message (decoding it, verifying its agent's MAC) is most of the CPU a message
//! costs in ingest. A source that checked every message on its own task used one core while
//! the others idled (at batches of 100 the MAC's HMAC-SHA256 alone cost a fifth of the
//! throughput, BENCHMARKS.md). So a source hands each chunk it reads to [`spawn_check`], which
//! checks it on a task of its own, up to [`CHECKING`] chunks at once, and [`forward`] takes the
//! results in the order the chunks were read, settles them (presence, quotas:
//! [`Validator::settle`], which must see messages in order) and hands them to the commit stage.
//! Messages reach the commit stage in exactly the order the source read them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Received;
use crate::ingest::commit::Validated;
use crate::ingest::validate::{Validator, Verdict};

/// Chunks being checked at once per source: enough for every worker thread of a small
/// machine to have one while the source reads the next.
pub const CHECKING: usize = 4;

/// A chunk's messages with their verdicts, not yet settled.
pub type Checked = Vec<(Received, Verdict)>;

/// Chunks being checked, in the order they were read.
pub type InOrder = mpsc::Sender<JoinHandle<Checked>>;

/// Starts the forwarding task of a source: it settles checked chunks in the order they are
/// sent on the returned queue and hands them to `out`. It ends when the queue is closed (or
/// `out` is, or `stop` fires while it waits for `out`).
pub fn start(
    validator: Arc<Validator>,
    out: mpsc::Sender<Vec<Validated>>,
    stop: CancellationToken,
) -> (InOrder, JoinHandle<()>) {
    let (checking, in_order) = mpsc::channel(CHECKING);
    let forwarder = tokio::spawn(forward(in_order, validator, out, stop));
    (checking, forwarder)
}

/// Checks a chunk's messages on a task of its own.
pub fn spawn_check(validator: &Arc<Validator>, raw: Vec<Received>) -> JoinHandle<Checked> {
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
    use super::super::BrokerAck;
    use super::*;
    use crate::config::AgentBinding;
    use crate::ingest::bound::Bounds;
    use crate::ingest::validate::Auth;
    use crate::ingest::CHUNK;
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
            at: std::time::Instant::now(),
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
            at: std::time::Instant::now(),
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

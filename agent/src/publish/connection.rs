//! The connection stage: polls the rumqttc event loop, reports what matters, backs off.

use std::time::Duration;

use rand::Rng;
use rumqttc::{Event, EventLoop, Outgoing, Packet};
use spotcheck_protocol::{AgentId, Topic};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{last_will, NetEvent};
use crate::credential::Signer;

/// Exponential backoff with jitter: each delay is drawn from `[d/2, d]` where `d` doubles from
/// `base` up to `cap`; [`Backoff::reset`] after a successful connect.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            current: base,
        }
    }

    /// The next delay, with jitter; doubles the nominal delay for next time.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.cap);
        let half = d / 2;
        half + Duration::from_millis(rng.random_range(0..=half.as_millis() as u64))
    }

    /// Back to `base`.
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

/// The connection stage: owns the event loop and the sender of [`NetEvent`]s.
pub struct Connection {
    eventloop: EventLoop,
    agent: AgentId,
    broker: String,
    events: mpsc::Sender<NetEvent>,
    stop: CancellationToken,
    backoff: Backoff,
    signer: Signer,
}

impl Connection {
    /// A stage polling `eventloop` for `agent` until it sends DISCONNECT or `stop` fires.
    pub fn new(
        eventloop: EventLoop,
        agent: AgentId,
        broker: String,
        events: mpsc::Sender<NetEvent>,
        stop: CancellationToken,
        signer: Signer,
    ) -> Connection {
        Connection {
            eventloop,
            agent,
            broker,
            events,
            stop,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            signer,
        }
    }

    /// Polls until a DISCONNECT has gone out (clean shutdown) or `stop` fires.
    pub async fn run(self) {
        let Connection {
            mut eventloop,
            agent,
            broker,
            events,
            stop,
            mut backoff,
            signer,
        } = self;
        // The publisher may already be gone during shutdown; nothing to report to then.
        let report = |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event).await;
            }
        };
        let ack_topic = Topic::Ack {
            agent: agent.clone(),
        }
        .to_string();
        let mut connected = false;
        // The k-th connection's statuses are 2k (online) and 2k + 1 (offline, last will).
        let mut k: u64 = 0;
        loop {
            let polled = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                polled = eventloop.poll() => polled,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(message = "Connected to the broker.", broker = %broker);
                    backoff.reset();
                    connected = true;
                    report(NetEvent::Connected { counter: 2 * k }).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                    // Only an ack the collector provably sent releases spooled data.
                    match signer.ack(&p.payload) {
                        Ok(ack) if ack.agent == agent => report(NetEvent::Acked(ack)).await,
                        Ok(ack) => warn!(
                            message = "Ack for another agent on this agent's ack topic; ignored.",
                            other = %ack.agent
                        ),
                        Err(error) => warn!(
                            message = "Ack not signed by the collector, or undecodable; ignored (unconfirmed batches will be re-sent).",
                            %error
                        ),
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    debug!(message = "Disconnected from the broker.", broker = %broker);
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    if connected {
                        connected = false;
                        k += 1;
                        eventloop
                            .mqtt_options
                            .set_last_will(last_will(&signer, &agent, 2 * k + 1));
                        report(NetEvent::Disconnected).await;
                    }
                    let wait = backoff.next_delay(&mut rand::rng());
                    // One warning per attempt: the backoff rate-limits them.
                    warn!(
                        message = "Broker connection failed; retrying.",
                        broker = %broker,
                        %error,
                        retry_in_ms = wait.as_millis() as u64
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay(&mut rng)).collect();
        let nominal = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, n) in delays.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(*d >= n / 2 && *d <= n, "{d:?} not in [{:?}, {n:?}]", n / 2);
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));
    }
}

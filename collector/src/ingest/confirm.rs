//! The confirm stage: after a commit, acknowledge each message to the broker (in arrival
//! order, as MQTT requires) and tell each agent which of its sequence numbers are now safe.

use rumqttc::{AsyncClient, QoS};
use spotcheck_protocol::{Ack, Topic};
use tokio::sync::mpsc;
use tracing::warn;

use super::commit::Committed;

/// Runs until `rx` closes (the commit stage has finished). `clients[i]` is connection `i`;
/// agents' acks go out on connection 0.
pub async fn run(clients: Vec<AsyncClient>, mut rx: mpsc::Receiver<Committed>) {
    let client = &clients[0];
    while let Some(c) = rx.recv().await {
        for (conn, p) in &c.publishes {
            if let Err(e) = clients[*conn].ack(p).await {
                warn!(message = "Could not queue a PUBACK; the broker will redeliver.", error = %e);
            }
        }
        for (agent, seqs) in c.confirmations {
            let topic = Topic::Ack {
                agent: agent.clone(),
            }
            .to_string();
            let payload = Ack::new(agent, seqs).encode();
            if let Err(e) = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                warn!(message = "Could not queue a confirmation; the agent will re-send and be confirmed then.", error = %e);
            }
        }
    }
}

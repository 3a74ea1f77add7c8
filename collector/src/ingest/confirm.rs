//! The confirm stage: after a commit, acknowledge each message to the broker (in arrival
//! order, as MQTT requires) and tell each agent which of its sequence numbers are now safe.

use rumqttc::{AsyncClient, Publish, QoS};
use rumqttd::local::LinkTx;
use spotcheck_protocol::{Ack, AgentId, Seq, Topic};
use tokio::sync::mpsc;
use tracing::warn;

use super::commit::Committed;
use super::source::BrokerAck;
use super::validate::Auth;
use crate::registry::credentials::KeyLookupRef;

/// Where acknowledgements and confirmations go.
pub enum Sink {
    /// MQTT connections: `clients[i]` is connection `i`, which acknowledges what came on it;
    /// agents' confirmations go out on connection 0.
    Mqtt(Vec<AsyncClient>),
    /// The embedded broker's in-process link: nothing to acknowledge, confirmations only.
    InProcess(LinkTx),
}

/// Runs until `rx` closes (the commit stage has finished).
///
/// Each agent's `Ack` is signed with its current key; an agent without a live key gets none
/// when authentication is required (it could not believe it anyway), an unsigned one otherwise.
pub async fn run(sink: Sink, rx: mpsc::Receiver<Committed>, auth: Auth) {
    match sink {
        Sink::Mqtt(clients) => run_mqtt(clients, rx, auth).await,
        // rumqttd's link sends with a blocking channel: keep it off the async workers.
        Sink::InProcess(tx) => {
            let _ = tokio::task::spawn_blocking(move || run_in_process(tx, rx, auth)).await;
        }
    }
}

/// What a connection's forwarder hands its rumqttc client, in order.
enum Outgoing {
    Ack { pkid: u16, qos: QoS },
    Confirmation { topic: String, payload: Vec<u8> },
}

/// Acknowledgements never wait here for room in a client's request queue: that queue drains
/// only while the connection's event loop is polled, and a source holding its most messages
/// polls only once the commit stage takes them, which it does only once this stage has taken
/// the previous commit. So each connection gets a forwarder task fed without waiting. What
/// waits in it is at most what the broker has delivered and we have not acknowledged yet:
/// the broker's in-flight window bounds it, not this queue. Bounding it here was tried: with
/// Mosquitto sending past its window (a 400,000-message backlog, one connection), waiting for
/// room deadlocked as before, and dropping acks when full dropped about 100,000 per run.
async fn run_mqtt(clients: Vec<AsyncClient>, mut rx: mpsc::Receiver<Committed>, auth: Auth) {
    let (senders, forwarders): (Vec<_>, Vec<_>) = clients
        .into_iter()
        .map(|client| {
            let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
            (tx, tokio::spawn(forward(client, rx)))
        })
        .unzip();
    while let Some(c) = rx.recv().await {
        for ack in &c.acks {
            if let BrokerAck::Mqtt { conn, pkid, qos } = *ack {
                let _ = senders[conn].send(Outgoing::Ack { pkid, qos });
            }
        }
        for (agent, seqs) in c.confirmations {
            let next = c.next.get(&agent).copied();
            if let Some((topic, payload)) = confirmation(&auth, agent, seqs, next) {
                let _ = senders[0].send(Outgoing::Confirmation { topic, payload });
            }
        }
    }
    drop(senders);
    for f in forwarders {
        let _ = f.await;
    }
}

async fn forward(client: AsyncClient, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Ack { pkid, qos } => {
                // rumqttc builds the PUBACK from a publish's QoS and packet id only.
                let mut p = Publish::new("", qos, Vec::new());
                p.pkid = pkid;
                if let Err(e) = client.ack(&p).await {
                    warn!(message = "Could not queue a PUBACK; the broker will redeliver.", error = %e);
                }
            }
            Outgoing::Confirmation { topic, payload } => {
                if let Err(e) = client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                {
                    warn!(message = "Could not queue a confirmation; the agent will re-send and be confirmed then.", error = %e);
                }
            }
        }
    }
}

fn run_in_process(mut tx: LinkTx, mut rx: mpsc::Receiver<Committed>, auth: Auth) {
    while let Some(c) = rx.blocking_recv() {
        for (agent, seqs) in c.confirmations {
            let next = c.next.get(&agent).copied();
            let Some((topic, payload)) = confirmation(&auth, agent, seqs, next) else {
                continue;
            };
            if let Err(e) = tx.publish(topic, payload) {
                warn!(message = "Could not hand a confirmation to the embedded broker; the agent will re-send and be confirmed then.", error = %e);
            }
        }
    }
}

/// The topic and signed payload of `agent`'s confirmation; none for an agent without a live key
/// when authentication is required.
fn confirmation(
    auth: &Auth,
    agent: AgentId,
    seqs: Vec<Seq>,
    next: Option<Seq>,
) -> Option<(String, Vec<u8>)> {
    let topic = Topic::Ack {
        agent: agent.clone(),
    }
    .to_string();
    let mut ack = Ack::new(agent, seqs);
    ack.next = next;
    let payload = auth.table.with_key(&ack.agent, |k| match k {
        KeyLookupRef::Current(key) => {
            Some(ack.encode_signed_with(auth.answers.algorithm(&ack.agent), key))
        }
        KeyLookupRef::Revoked | KeyLookupRef::None if auth.required => None,
        KeyLookupRef::Revoked | KeyLookupRef::None => Some(ack.encode()),
    })?;
    Some((topic, payload))
}

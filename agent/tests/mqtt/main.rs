//! The agent against a real broker (Mosquitto), with the test playing the collector.

mod helpers;

use std::collections::BTreeSet;

use helpers::{agent_config, collector, free_port, Broker, Seen, WAIT};
use spotcheck_agent::{run_with_stats, spool, AgentStats};
use spotcheck_protocol::{AgentState, Seq};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Receives batch seqs until `want` distinct ones arrived; returns every delivery.
async fn batches_until(seen: &mut tokio::sync::mpsc::Receiver<Seen>, want: usize) -> Vec<Seq> {
    let mut all = Vec::new();
    let mut distinct = BTreeSet::new();
    timeout(WAIT, async {
        while distinct.len() < want {
            if let Seen::Batch(seq) = seen.recv().await.expect("collector runs") {
                all.push(seq);
                distinct.insert(seq);
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of {want} batches arrived: {distinct:?}",
            distinct.len()
        )
    });
    all
}

async fn wait_for_stats(
    stats: &mut watch::Receiver<AgentStats>,
    what: impl Fn(&AgentStats) -> bool,
) {
    let matched = timeout(WAIT, stats.wait_for(|s| what(s))).await.is_ok();
    assert!(matched, "stats never matched; last {:?}", *stats.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_arrives_once_acked_and_the_spool_ends_empty() {
    let port = free_port();
    let _broker = Broker::start(port).await;
    let mut seen = collector(port, |_, _| true).await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (stats_tx, mut stats) = watch::channel(AgentStats::default());
    let agent = tokio::spawn(run_with_stats(
        agent_config(port, dir.path(), 20, 10_000),
        shutdown.clone(),
        stats_tx,
    ));

    let got = batches_until(&mut seen, 20).await;
    let distinct: BTreeSet<Seq> = got.into_iter().collect();
    assert_eq!(distinct, (1..=20).map(Seq).collect());
    wait_for_stats(&mut stats, |s| s.sources_done && s.pending == 0).await;
    shutdown.cancel();
    timeout(WAIT, agent).await.unwrap().unwrap().unwrap();

    assert_eq!(spool::spool_next_seq(dir.path()).unwrap(), 21);
    assert_eq!(spool::inspect(dir.path()).unwrap().pending, 0);
    // The clean shutdown published the retained offline status.
    timeout(WAIT, async {
        loop {
            if let Some(Seen::Status(s)) = seen.recv().await {
                if s.state == AgentState::Offline {
                    return;
                }
            }
        }
    })
    .await
    .expect("offline status after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_made_while_the_broker_is_down_are_sent_when_it_comes_up() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (stats_tx, mut stats) = watch::channel(AgentStats::default());
    let agent = tokio::spawn(run_with_stats(
        agent_config(port, dir.path(), 5, 10_000),
        shutdown.clone(),
        stats_tx,
    ));
    wait_for_stats(&mut stats, |s| {
        s.sources_done && s.pending == 5 && !s.connected
    })
    .await;

    let _broker = Broker::start(port).await;
    let mut seen = collector(port, |_, _| true).await;
    batches_until(&mut seen, 5).await;
    wait_for_stats(&mut stats, |s| s.pending == 0).await;
    shutdown.cancel();
    timeout(WAIT, agent).await.unwrap().unwrap().unwrap();
    assert_eq!(spool::spool_next_seq(dir.path()).unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_left_unconfirmed_is_resent_after_the_ack_timeout() {
    let port = free_port();
    let _broker = Broker::start(port).await;
    // The collector "loses" the first delivery of seq 2.
    let mut seen = collector(port, |seq, delivery| seq != Seq(2) || delivery > 1).await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (stats_tx, mut stats) = watch::channel(AgentStats::default());
    let agent = tokio::spawn(run_with_stats(
        agent_config(port, dir.path(), 3, 300),
        shutdown.clone(),
        stats_tx,
    ));
    let mut deliveries = batches_until(&mut seen, 3).await;
    wait_for_stats(&mut stats, |s| s.sources_done && s.pending == 0).await;
    while let Ok(Seen::Batch(s)) = seen.try_recv() {
        deliveries.push(s);
    }
    assert!(
        deliveries.iter().filter(|&&s| s == Seq(2)).count() >= 2,
        "{deliveries:?}"
    );
    assert!(stats.borrow().resent >= 1);
    shutdown.cancel();
    timeout(WAIT, agent).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn unconfirmed_batches_survive_a_restart_and_keep_their_numbers() {
    // No broker at all: the agent spools, stops, and a second run continues the numbering.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=2u64 {
        let shutdown = CancellationToken::new();
        let (stats_tx, mut stats) = watch::channel(AgentStats::default());
        let agent = tokio::spawn(run_with_stats(
            agent_config(port, dir.path(), 4, 10_000),
            shutdown.clone(),
            stats_tx,
        ));
        wait_for_stats(&mut stats, |s| s.sources_done).await;
        shutdown.cancel();
        timeout(WAIT, agent).await.unwrap().unwrap().unwrap();
        let s = spool::inspect(dir.path()).unwrap();
        assert_eq!((s.next_seq, s.pending), (1 + 4 * round, 4 * round as usize));
    }
}

//! Several `spotcheck-collector serve` processes on one PostgreSQL store: exactly one leads the
//! work done once (store/leader.rs). Only the leader writes points to the time-series store,
//! runs retention and evaluates the time-driven rules; a leader killed with SIGKILL mid-stream
//! is replaced within the retry interval and the new leader's sink continues from the cursor
//! in the store, so every committed reading arrives. And the fence itself: a deposed leader's
//! next transaction is refused, and a new leader's term waits for the one in progress.
//!
//! Needs PostgreSQL and VictoriaMetrics (skipped without them unless
//! `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::path::Path;
use std::time::{Duration, Instant};

use spotcheck_collector::store::db::{self, args, DbUrl, Mode, Sql};
use spotcheck_collector::store::leader::{Leadership, Role};
use spotcheck_e2e::cluster_leader::{gauge, issue_credential, leader_part, leads, start_member};
use spotcheck_e2e::postgres::Postgres;
use spotcheck_e2e::tsdb::VictoriaMetrics;
use spotcheck_e2e::*;

/// `store.leader_retry_ms` of the members: a standby tries to take over this often.
const RETRY_MS: u64 = 500;
/// What a loaded test machine adds to the retry interval: the process's reaping, PostgreSQL
/// ending the dead session, the new leader's term, and this test's polling of `/metrics`.
const SLACK: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(60);
const AGENT: &str = "pool-agent-1";
const BATCHES: u64 = 500;
/// The pool simulator sends six readings per batch.
const READINGS_PER_BATCH: i64 = 6;

fn store_keys() -> String {
    format!("leader_retry_ms = {RETRY_MS}")
}

fn one(url: &str, sql: &str) -> i64 {
    let url: DbUrl = url.parse().unwrap();
    let conn = db::connect(&url, Mode::Read).unwrap();
    conn.query_row(sql, args![], |r| r.get(0)).unwrap()
}

/// Waits until exactly one of `members` says it leads; its index and how long it took.
fn new_leader(members: &mut [&mut Collector]) -> (usize, Duration) {
    let since = Instant::now();
    let i = wait_for("a new leader", WAIT, || {
        let leading: Vec<usize> = (0..members.len())
            .filter(|&i| {
                members[i].proc.assert_running();
                leads(members[i])
            })
            .collect();
        (leading.len() == 1).then(|| leading[0])
    });
    (i, since.elapsed())
}

fn start_agent_on(dir: &Path, member: &Collector) -> Proc {
    let config = agent_config(dir, AGENT, "pool-1", "pool", member.mqtt_port, BATCHES, 20);
    start_agent(dir, "agent", &config)
}

#[test]
fn one_member_leads_only_it_writes_points_and_a_killed_leader_is_replaced_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = Postgres::start(dir.path()) else {
        return;
    };
    let Some(vm) = VictoriaMetrics::start(dir.path(), &[]) else {
        return;
    };
    let url = pg.create_database("cluster");
    let sink = format!(
        "[sink]\nurl = \"{}\"\nflush_interval_ms = 100\nbatch_points = 300\n",
        vm.url()
    );
    let mut a = start_member(dir.path(), "a", &url, &store_keys(), &sink);
    wait_for("the first member to lead", WAIT, || leads(&a).then_some(()));
    // The agent publishes to b's embedded broker: ingest goes on through b whoever leads.
    issue_credential(&url, &dir.path().join("b"), AGENT);
    let b_extra = format!("{sink}{}", agent_binding(AGENT, "pool-1", "pool"));
    let mut b = start_member(dir.path(), "b", &url, &store_keys(), &b_extra);
    let mut c = start_member(dir.path(), "c", &url, &store_keys(), &sink);

    assert_eq!([leads(&a), leads(&b), leads(&c)], [true, false, false]);
    assert_eq!(leader_part(&a)["state"], "up");
    for m in [&b, &c] {
        let part = leader_part(m);
        assert_eq!(part["state"], "standby", "{part}");
    }
    // The store names the leader and its term.
    let holder = format!(":{}", a.proc.pid());
    assert_eq!(
        one(
            &url,
            "SELECT term FROM leader_terms WHERE role = 'collector'"
        ),
        1
    );
    let url_parsed: DbUrl = url.parse().unwrap();
    let held: String = db::connect(&url_parsed, Mode::Read)
        .unwrap()
        .query_row(
            "SELECT holder FROM leader_terms WHERE role = 'collector'",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert!(held.ends_with(&holder), "{held} is not a's process");

    let b_dir = dir.path().join("b");
    let mut agent = start_agent_on(&b_dir, &b);
    // Mid-stream: a's sink has delivered some of it.
    wait_for("the leader's first points in VictoriaMetrics", WAIT, || {
        agent.assert_running();
        (vm.export("pool_value").len() >= 120).then_some(())
    });
    assert!(gauge(&a, "spotcheck_sink_points_written_total") > 0.0);
    for m in [&b, &c] {
        assert_eq!(
            gauge(m, "spotcheck_sink_points_written_total"),
            0.0,
            "a standby wrote points"
        );
    }
    let stored_before_kill = one(
        &url,
        "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks",
    );
    assert!(
        stored_before_kill < BATCHES as i64 * READINGS_PER_BATCH,
        "the stream had ended before the kill; nothing was mid-stream"
    );

    a.proc.signal_and_wait("KILL");
    let (i, failover) = new_leader(&mut [&mut b, &mut c]);
    eprintln!("failover after SIGKILL of the leader: {failover:?} (retry {RETRY_MS} ms)");
    assert!(
        failover <= Duration::from_millis(RETRY_MS) + SLACK,
        "the new leader took {failover:?}; the stated bound is the retry interval ({RETRY_MS} ms)"
    );
    let (leader, standby) = if i == 0 { (&b, &c) } else { (&c, &b) };
    assert_eq!(leader_part(leader)["state"], "up");
    assert_eq!(
        one(
            &url,
            "SELECT term FROM leader_terms WHERE role = 'collector'"
        ),
        2
    );

    let status = agent.wait(Duration::from_secs(120));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    let readings = one(
        &url,
        "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks",
    );
    assert_eq!(readings, BATCHES as i64 * READINGS_PER_BATCH);
    // Every committed reading arrives (the export keys by series and timestamp: a point sent
    // again by the new leader is one key; a reading lost changes the count).
    wait_for(
        "VictoriaMetrics to hold as many distinct reading points as the store has readings",
        WAIT,
        || (vm.export("pool_value").len() as i64 == readings).then_some(()),
    );
    assert!(gauge(leader, "spotcheck_sink_points_written_total") > 0.0);
    assert_eq!(
        gauge(standby, "spotcheck_sink_points_written_total"),
        0.0,
        "the remaining standby wrote points"
    );
    // The new leader's cursor in the store reaches the newest chunk.
    wait_for("the sink's cursor at the newest chunk", WAIT, || {
        (one(&url, "SELECT coalesce(max(chunk), 0) FROM sink_cursors")
            == one(&url, "SELECT max(rowid) FROM reading_chunks"))
        .then_some(())
    });
    for m in [&mut b, &mut c] {
        let status = m.proc.signal_and_wait("TERM");
        assert!(status.success(), "{}", m.proc.log());
    }
}

#[test]
fn retention_and_the_rule_ticker_run_on_the_leader_only_and_move_with_it_on_a_kill_and_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = Postgres::start(dir.path()) else {
        return;
    };
    let url = pg.create_database("cluster");
    let rules = "[rules]\ntick_s = 1\n";
    let mut a = start_member(dir.path(), "a", &url, &store_keys(), rules);
    wait_for("the first member to lead", WAIT, || leads(&a).then_some(()));
    let mut b = start_member(dir.path(), "b", &url, &store_keys(), rules);
    let mut c = start_member(dir.path(), "c", &url, &store_keys(), rules);
    // While all three run, the leader ticks three times more: each standby had as many
    // chances and took none.
    let ticks = gauge(&a, "spotcheck_rule_ticks_total");
    wait_for("three more ticks on the leader", WAIT, || {
        (gauge(&a, "spotcheck_rule_ticks_total") >= ticks + 3.0).then_some(())
    });
    assert!(gauge(&a, "spotcheck_retention_runs_total") >= 1.0);
    for m in [&b, &c] {
        assert_eq!(
            gauge(m, "spotcheck_rule_ticks_total"),
            0.0,
            "a standby ticked"
        );
        assert_eq!(
            gauge(m, "spotcheck_retention_runs_total"),
            0.0,
            "a standby pruned"
        );
        let body: serde_json::Value = ureq::get(&format!("http://{}/healthz", m.http))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let ticker = body["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["part"] == "rule_ticker")
            .unwrap();
        assert_eq!(ticker["state"], "standby", "{body}");
    }

    // The leader is killed: the work moves to one member, and only to it.
    a.proc.signal_and_wait("KILL");
    let (i, _) = new_leader(&mut [&mut b, &mut c]);
    let (leader, standby) = if i == 0 { (&b, &c) } else { (&c, &b) };
    wait_for("the new leader to prune and tick", WAIT, || {
        (gauge(leader, "spotcheck_retention_runs_total") >= 1.0
            && gauge(leader, "spotcheck_rule_ticks_total") >= 3.0)
            .then_some(())
    });
    assert_eq!(gauge(standby, "spotcheck_rule_ticks_total"), 0.0);
    assert_eq!(gauge(standby, "spotcheck_retention_runs_total"), 0.0);

    // The new leader's lock connection is cut (a network failure), its process lives on: it
    // steps down, a leader of a new term takes over, and from then on only that one ticks.
    let url_parsed: DbUrl = url.parse().unwrap();
    let admin = db::connect(&url_parsed, Mode::Write).unwrap();
    let cut: i64 = admin
        .query_row(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND objsubid = 1
               AND ((classid::bigint << 32) | objid::bigint) = $1",
            args![Role::Collector.lock_key()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cut, 1);
    wait_for("a leader in the third term", WAIT, || {
        let term: i64 = admin
            .query_row(
                "SELECT term FROM leader_terms WHERE role = 'collector'",
                args![],
                |r| r.get(0),
            )
            .unwrap();
        let leading = [leads(&b), leads(&c)];
        (term == 3 && leading.iter().filter(|l| **l).count() == 1).then_some(leading)
    });
    let (leader, standby) = if leads(&b) { (&b, &c) } else { (&c, &b) };
    let standing = gauge(standby, "spotcheck_rule_ticks_total");
    let ticks = gauge(leader, "spotcheck_rule_ticks_total");
    wait_for("two more ticks on the third term's leader", WAIT, || {
        (gauge(leader, "spotcheck_rule_ticks_total") >= ticks + 2.0).then_some(())
    });
    assert_eq!(
        gauge(standby, "spotcheck_rule_ticks_total"),
        standing,
        "a collector that lost its lock went on ticking"
    );
    assert_eq!(leader_part(standby)["state"], "standby");
    for m in [&mut b, &mut c] {
        m.proc.signal_and_wait("TERM");
    }
}

#[test]
fn a_deposed_leaders_next_transaction_is_refused_and_a_new_term_waits_for_the_one_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = Postgres::start(dir.path()) else {
        return;
    };
    let url: DbUrl = pg.create_database("fence").parse().unwrap();
    // a checks its lock's connection only every minute: after the cut it goes on believing
    // it leads, which is what the fence is for.
    let a = Leadership::campaign_as(&url, Role::Collector, Duration::from_secs(60), "a".into());
    wait_for("a to lead", WAIT, || a.is_leader().then_some(()));
    let a_lead = a.lead();
    assert_eq!(a_lead.term(), Some(1));
    let a_work = db::connect(&url, Mode::Write).unwrap();
    let in_progress = a_work.transaction_concurrent().unwrap();
    assert!(a_lead.fence(&in_progress).unwrap());

    // a's lock connection is cut (a network failure); b takes the lock at once.
    let admin = db::connect(&url, Mode::Write).unwrap();
    let cut: i64 = admin
        .query_row(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND objsubid = 1
               AND ((classid::bigint << 32) | objid::bigint) = $1",
            args![Role::Collector.lock_key()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cut, 1);
    let b = Leadership::campaign_as(
        &url,
        Role::Collector,
        Duration::from_millis(100),
        "b".into(),
    );
    // b holds the lock, but its new term waits for a's transaction in progress.
    wait_for("b's term to wait for a's transaction", WAIT, || {
        let waiting: i64 = admin
            .query_row(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO leader_terms%'",
                args![],
                |r| r.get(0),
            )
            .unwrap();
        (waiting == 1).then_some(())
    });
    assert!(!b.is_leader());
    in_progress
        .execute(
            "INSERT INTO plans (id, body) VALUES ('by-a', '{}')",
            args![],
        )
        .unwrap();
    in_progress.commit().unwrap();
    wait_for("b to lead", WAIT, || b.is_leader().then_some(()));
    assert_eq!(b.lead().term(), Some(2));

    // a still believes it leads; its next transaction is refused, b's passes.
    assert!(
        a.is_leader(),
        "a noticed the cut already; the test shows nothing"
    );
    let next = a_work.transaction_concurrent().unwrap();
    assert!(
        !a_lead.fence(&next).unwrap(),
        "a deposed leader passed the fence"
    );
    drop(next);
    let b_work = db::connect(&url, Mode::Write).unwrap();
    let tx = b_work.transaction_concurrent().unwrap();
    assert!(b.lead().fence(&tx).unwrap());
    drop(tx);
    let (term, holder): (i64, String) = admin
        .query_row(
            "SELECT term, holder FROM leader_terms WHERE role = 'collector'",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((term, holder.as_str()), (2, "b"));
    assert_eq!(
        admin
            .query_row("SELECT count(*) FROM plans", args![], |r| r.get::<i64>(0))
            .unwrap(),
        1
    );
}

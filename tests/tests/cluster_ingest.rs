//! Three `spotcheck-collector serve` processes on one PostgreSQL, reading one Mosquitto
//! through a shared subscription (`mqtt.shared_group`), fed by several real agents; midway one
//! collector is killed with SIGKILL (first run: one that is not the leader; second run: the
//! leader). Every reading is stored exactly once, every agent's spool drains (an agent exits
//! only when every batch it sent is confirmed, and confirmations follow commits), no anomaly
//! task is opened twice, a draw made through one collector's API happens once, a result
//! published through two collectors at once is published once, the audit chain verifies, and no collector panics. Needs PostgreSQL and Mosquitto (skipped without
//! them unless `SPOTCHECK_REQUIRE_SERVERS=1`). The size of a run: [`BATCHES`].

use std::time::{Duration, Instant};

use spotcheck_collector::plan::{Batch, ClassRatio, Plan, PlanDate};
use spotcheck_collector::registry::model::{Department, DrawId, ItemId};
use spotcheck_collector::store::db::{self, args, DbUrl, Mode, Sql};
use spotcheck_e2e::cluster::{lock_holder, one, AgentSpec, Cluster};
use spotcheck_e2e::{api, wait_for};
use spotcheck_protocol::Domain;

/// Collectors in the cluster.
const COLLECTORS: usize = 3;
/// Agents feeding it.
const AGENTS: u64 = 6;
/// Samples per batch: 166 × 6 = 996 readings, batches near the protocol's default bound of
/// 1,000 readings, as an agent sends a backlog.
const SAMPLES: u64 = 166;
/// Batches per agent: 6 × 168 × 996 = 1,003,968 readings in all, the issue's million. What
/// bounds a run is each agent's order (a batch waits for its predecessor's commit on another
/// collector), so large batches carry the million in few round trips.
/// `SPOTCHECK_CLUSTER_BATCHES` sets another count.
const BATCHES: u64 = 168;

fn batches() -> u64 {
    std::env::var("SPOTCHECK_CLUSTER_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BATCHES)
}

fn agents() -> Vec<AgentSpec> {
    (0..AGENTS)
        .map(|i| AgentSpec {
            id: format!("pool-agent-{i}"),
            entity: format!("pool-{i}"),
            batches: batches(),
            samples: SAMPLES,
            // 1 ms between samples: the rules see a plausible clock (a rate rule divides by it).
            interval_ms: SAMPLES,
        })
        .collect()
}

/// Which collector the test kills midway.
#[derive(Debug, Clone, Copy)]
enum Victim {
    /// One that does not lead.
    Follower,
    /// The leader: the one holding `store::leader`'s lock (any, while `serve` does not
    /// campaign).
    Leader,
}

#[test]
fn three_collectors_store_every_reading_once_when_one_is_killed_midway() {
    cluster_run(Victim::Follower);
}

#[test]
fn three_collectors_store_every_reading_once_when_the_leader_is_killed_midway() {
    cluster_run(Victim::Leader);
}

/// The two runs take turns: each starts eleven processes, and side by side on a small CI
/// machine they would each take more than twice as long.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cluster_run(victim: Victim) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let agents = agents();
    let Some(mut cluster) = Cluster::start(dir.path(), COLLECTORS, &agents) else {
        return;
    };
    libraries(&cluster.url);
    let total = cluster.readings_sent();
    // Each wait's limit: two minutes, or a second per thousand readings for a larger run.
    let budget = Duration::from_secs((total / 1_000).max(120));
    let started = Instant::now();
    let mut procs = cluster.start_agents();

    // The leader as the store shows it; `None` while `serve` does not campaign.
    let leader = cluster.leader();
    let killed = match (victim, leader) {
        (Victim::Leader, Some(l)) => l,
        (Victim::Leader, None) => 0,
        (Victim::Follower, Some(l)) => (l + 1) % COLLECTORS,
        (Victim::Follower, None) => 1,
    };
    eprintln!("{victim:?}: leader {leader:?}, killing collector-{killed}");
    let others: Vec<usize> = (0..COLLECTORS).filter(|i| *i != killed).collect();

    // Midway, with the victim busy committing: its uncommitted batches, unconfirmed to their
    // agents, must reach the others.
    let mut shown = Instant::now();
    wait_for("half the readings", budget, || {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        let ingested = cluster.ingested();
        if shown.elapsed() >= Duration::from_secs(5) {
            eprintln!("{:?}: {ingested} readings committed", started.elapsed());
            shown = Instant::now();
        }
        (ingested >= total / 2).then_some(())
    });
    assert!(
        cluster.nodes[killed].stat("readings_ingested") > 0,
        "collector-{killed} took no share of the readings"
    );
    // A draw through one collector while the readings stream; revealing it again through
    // another is refused.
    let (a, b) = (others[0], others[1]);
    let drawn = draw_once(&cluster, a, b);
    cluster.nodes[killed].kill();
    eprintln!(
        "killed collector-{killed} after {:?} at {} readings",
        started.elapsed(),
        cluster.ingested()
    );

    for p in procs.iter_mut() {
        let status = p.wait(budget);
        assert!(status.success(), "an agent failed:\n{}", p.log());
    }
    eprintln!("agents drained after {:?}", started.elapsed());

    let store = cluster.store();
    assert_eq!(
        one(
            &store,
            "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks"
        ) as u64,
        total,
        "every reading stored once"
    );
    assert_eq!(
        one(&store, "SELECT count(*) FROM batches") as u64,
        cluster.batches_sent()
    );
    assert_eq!(
        one(
            &store,
            "SELECT count(*) FROM (SELECT DISTINCT agent, seq FROM batches) AS d"
        ) as u64,
        cluster.batches_sent()
    );
    let per_agent: Vec<(i64, i64)> = store
        .query(
            "SELECT count(*), max(seq) FROM batches GROUP BY agent ORDER BY agent",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        per_agent,
        vec![(batches() as i64, batches() as i64); AGENTS as usize],
        "each agent's batches 1..=N, each once"
    );
    // Refused batches: only kept-back ones let go (they were never confirmed, and their
    // agents sent them again: all are stored above). A batch stored twice with other content
    // would be `seq_reused`; a collector reading another's batch as foreign, anything else.
    let refused: Vec<(String, i64)> = store
        .query(
            "SELECT code, count(*) FROM dead_letters GROUP BY code ORDER BY code",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    eprintln!("dead letters: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|(code, _)| code == "gap_not_filled" || code == "held_full"),
        "batches refused: {refused:?}"
    );
    assert_eq!(one(&store, "SELECT count(*) FROM seq_gaps"), 0);

    // Anomaly tasks: the load trips rules; each (entity, rule) has one task, opened once.
    let anomalies = one(&store, "SELECT count(*) FROM tasks WHERE kind = 'anomaly'");
    assert!(anomalies > 0, "the load tripped no rule");
    assert_eq!(
        one(
            &store,
            "SELECT count(*) FROM (SELECT entity, rule FROM tasks WHERE kind = 'anomaly'
             GROUP BY entity, rule HAVING count(*) > 1) AS d"
        ),
        0,
        "an anomaly task duplicated"
    );
    assert_eq!(
        one(
            &store,
            "SELECT count(*) FROM audit_log WHERE kind = 'task_opened' AND body LIKE '%\"kind\":\"anomaly\"%'"
        ),
        anomalies,
        "each anomaly task's opening recorded once"
    );

    // The draw happened once, and every collector serves the same record.
    assert_eq!(one(&store, "SELECT count(*) FROM draws"), 1);
    assert_eq!(
        one(&store, "SELECT count(*) FROM tasks WHERE draw IS NOT NULL"),
        drawn,
        "one task per drawn entity"
    );
    assert_eq!(
        one(
            &store,
            "SELECT count(*) FROM audit_log WHERE kind = 'draw_revealed'"
        ),
        1
    );

    // A result published through two collectors at once is published once.
    publish_once(&cluster, others[0], others[1]);

    // One chain: the CLI and each live collector's API verify it.
    let verified = cluster.audit_verify();
    eprintln!("audit: {verified}");
    for n in cluster.live() {
        let (status, body) = n.call("GET", "/api/v1/audit/verify", "");
        assert_eq!(status, 200, "{}: {body}", n.name);
        assert_eq!(body["ok"], true, "{}: {body}", n.name);
    }
    cluster.assert_no_panics();
    eprintln!(
        "{victim:?} run: {total} readings, {anomalies} anomaly tasks, {drawn} drawn tasks in {:?}",
        started.elapsed()
    );
    for n in cluster.nodes.iter_mut().filter(|n| !n.killed) {
        n.proc.signal_and_wait("TERM");
    }
}

/// The plan's pools, inspectors and item, written straight into the store as an import would.
fn libraries(url: &str) {
    let url: DbUrl = url.parse().unwrap();
    let c = db::connect(&url, Mode::Write).unwrap();
    c.execute(
        "INSERT INTO registry_items (id, name, department, legal_basis, kind, method, rule_pack)
         VALUES ('pool-water-quality', '游泳场所水质卫生', 'health', 'GB 37488-2019',
                 '\"general\"', '\"both\"', 'pool')",
        args![],
    )
    .unwrap();
    for i in 0..24u32 {
        let code =
            spotcheck_collector::registry::CreditCode::complete(&format!("91440300MA{i:07}"))
                .unwrap();
        c.execute(
            "INSERT INTO registry_entities (code, name, domain, district, address, contact, risk, agents)
             VALUES ($1, $2, 'pool', '南山区', '某路', '某人', $3, '[]')",
            args![
                code.as_str(),
                format!("南山游泳馆{i:02}有限公司"),
                ["A", "B", "C", "D"][i as usize % 4]
            ],
        )
        .unwrap();
    }
    for i in 1..=4 {
        let id = format!("hb-{i:03}");
        c.execute(
            "INSERT INTO registry_inspectors (id, name, certificate, department, fields, active, conflicts)
             VALUES ($1, $2, $3, 'health', '[\"pool\"]', 1, '[]')",
            args![id.clone(), format!("检查员{id}"), format!("CERT-{id}")],
        )
        .unwrap();
    }
}

/// Saves a plan and draws its first batch through collector `a`; revealing it again through
/// collector `b` is refused. Returns how many entities were drawn.
fn draw_once(cluster: &Cluster, a: usize, b: usize) -> i64 {
    let plan = Plan {
        id: DrawId::new("2026-health-pool").unwrap(),
        year: 2026,
        department: Department::new("health").unwrap(),
        item: ItemId::new("pool-water-quality").unwrap(),
        domain: Domain::Pool,
        district: None,
        ratios: ClassRatio::defaults(),
        inspectors_per_entity: 2,
        batches: vec![Batch {
            label: "b1".into(),
            start: PlanDate::new("2026-03-01").unwrap(),
            end: PlanDate::new("2026-04-30").unwrap(),
        }],
        partners: vec![],
    };
    let (a, b) = (&cluster.nodes[a], &cluster.nodes[b]);
    let (status, body) = a.call(
        "PUT",
        "/api/v1/plans",
        &serde_json::to_string(&plan).unwrap(),
    );
    assert!(
        status < 300,
        "save the plan through {}: {status} {body}",
        a.name
    );
    let batch = "/api/v1/plans/2026-health-pool/batches/b1";
    let (status, body) = a.call("POST", &format!("{batch}/commit"), "");
    assert!(status < 300, "commit through {}: {status} {body}", a.name);
    let (status, record) = a.call("POST", &format!("{batch}/reveal"), "");
    assert!(status < 300, "reveal through {}: {status} {record}", a.name);
    assert!(
        !record["draws"].as_array().unwrap().is_empty(),
        "nothing drawn: {record}"
    );
    let (status, body) = b.call("POST", &format!("{batch}/reveal"), "");
    assert!(
        (400..500).contains(&status),
        "a second reveal through {} was not refused: {status} {body}",
        b.name
    );
    let (status, seen) = b.call("GET", "/api/v1/draws", "");
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen.as_array().map(Vec::len),
        Some(1),
        "{} serves the one draw: {seen}",
        b.name
    );
    record["draws"].as_array().unwrap().len() as i64
}

/// Resolves one anomaly task through collector `a`, then publishes it through `a` and `b` at the
/// same moment: one request publishes it, the other is refused (409), and the store holds one
/// publication of it, in the task and in the audit chain.
fn publish_once(cluster: &Cluster, a: usize, b: usize) {
    let (a, b) = (&cluster.nodes[a], &cluster.nodes[b]);
    let store = cluster.store();
    let task = one(&store, "SELECT min(id) FROM tasks WHERE kind = 'anomaly'");
    let (status, body) = a.call("POST", &format!("/api/v1/tasks/{task}/acknowledge"), "");
    assert_eq!(status, 200, "acknowledge through {}: {body}", a.name);
    let (status, body) = a.call(
        "POST",
        &format!("/api/v1/tasks/{task}/resolve"),
        r#"{"result": "no_problem", "comment": "checked remotely"}"#,
    );
    assert_eq!(status, 200, "resolve through {}: {body}", a.name);
    let publication = format!(r#"{{"tasks": [{task}]}}"#);
    let start = std::sync::Barrier::new(2);
    let statuses: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let both = [a, b].map(|node| {
            let (start, publication) = (&start, &publication);
            s.spawn(move || {
                start.wait();
                node.call("POST", "/api/v1/publications", publication)
            })
        });
        both.map(|h| h.join().unwrap()).into()
    });
    let mut codes: Vec<u16> = statuses.iter().map(|(s, _)| *s).collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![200, 409],
        "one publication, one refusal: {statuses:?}"
    );
    assert_eq!(
        one(
            &store,
            &format!("SELECT count(*) FROM tasks WHERE id = {task} AND status = 'published'")
        ),
        1
    );
    assert_eq!(
        one(
            &store,
            &format!(
                "SELECT count(*) FROM audit_log WHERE kind = 'publication' AND subject = 'task:{task}'"
            )
        ),
        1,
        "task {task} published once in the audit chain"
    );
}

/// A collector killed in a shared group leaves it: the broker gives every new batch to the
/// others, none to the dead member's session (which, persistent, would queue its share until
/// it came back). The batches have no `after`, and nobody sends them again: a share queued to
/// the dead session would never be stored.
#[test]
fn a_killed_collectors_share_of_new_batches_goes_to_the_others() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spotcheck_e2e::have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentSpec {
        id: api::AGENT.into(),
        entity: api::ENTITY.into(),
        batches: 0,
        samples: 1,
        interval_ms: 1,
    };
    let Some(mut cluster) = Cluster::start(dir.path(), 2, &[agent]) else {
        return;
    };
    cluster.nodes[1].kill();
    let key = spotcheck_e2e::credential(dir.path(), api::AGENT).key;
    let start = spotcheck_protocol::UnixMillis::now().0 - 3_600_000;
    for seq in 1..=20u64 {
        let batch = api::chlorine(seq, start + seq as i64 * 60_000, &[0.5]);
        let signed = spotcheck_protocol::mac::sign(&key, &batch);
        spotcheck_e2e::mosquitto_pub(cluster.mosquitto.port, api::TOPIC, &signed);
    }
    let store = cluster.store();
    wait_for(
        "the survivor to store all 20 batches",
        Duration::from_secs(30),
        || (one(&store, "SELECT count(*) FROM batches") == 20).then_some(()),
    );
    cluster.assert_no_panics();
}

/// What a kept-back batch waits for is looked at every 20 ms in shared mode; on PostgreSQL
/// each look reads every agent's highest stored number from the end of the primary key, not
/// by aggregating the agent's stored batches (whose number grows all day).
#[test]
fn the_highest_stored_number_of_an_agent_is_read_from_the_end_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = spotcheck_e2e::postgres::Postgres::start(dir.path()) else {
        return;
    };
    let url: DbUrl = pg.create_database("order").parse().unwrap();
    let c = db::connect(&url, Mode::Write).unwrap();
    c.execute_batch(
        "INSERT INTO agents (name, entity, domain) VALUES ('a1', 'e1', 'pool'), ('a2', 'e2', 'pool');
         INSERT INTO batches (agent, seq, stream, items, received_ms)
         SELECT a.id, s, 'readings', 1, 0 FROM agents a, generate_series(1, 100000) AS s;
         ANALYZE agents; ANALYZE batches;",
    )
    .unwrap();
    let sql = spotcheck_collector::ingest::order::highest_stored_sql("'a1', 'a2'");
    let plan: Vec<String> = c
        .query(&format!("EXPLAIN {sql}"), args![], |r| r.get(0))
        .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Only Scan Backward using batches_pkey") && !plan.contains("Aggregate"),
        "{plan}"
    );
    let highs: Vec<(String, Option<i64>)> = c
        .query(&sql, args![], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(highs.len(), 2);
    assert!(highs.iter().all(|(_, h)| *h == Some(100_000)), "{highs:?}");
}

/// The test finds "the leader" as the process whose connection holds the leader's advisory
/// lock: here the test process itself takes the lock, and is found among other pids.
#[test]
fn the_holder_of_the_leaders_lock_is_found_by_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = spotcheck_e2e::postgres::Postgres::start(dir.path()) else {
        return;
    };
    let url: DbUrl = pg.create_database("lock").parse().unwrap();
    let key = spotcheck_collector::store::leader::Role::Collector.lock_key();
    let looker = db::connect(&url, Mode::Read).unwrap();
    let me = Some(std::process::id());
    assert_eq!(
        lock_holder(&looker, key, &[Some(1), me]),
        None,
        "nobody holds it"
    );
    let holder = db::connect(&url, Mode::Read).unwrap();
    holder
        .query_row(
            "SELECT 1 FROM (SELECT pg_advisory_lock($1)) AS l",
            args![key],
            |r| r.get::<i64>(0),
        )
        .unwrap();
    assert_eq!(lock_holder(&looker, key, &[None, Some(1), me]), Some(2));
    assert_eq!(lock_holder(&looker, key + 1, &[me]), None, "another key");
}

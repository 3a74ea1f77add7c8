//! `spotcheck-demo`: the embedded broker, the collector and simulated agents for every feed,
//! all in one process but talking real MQTT, with state under one data directory. A crate of
//! its own, so that the collector depends neither on the agent's runtime nor on generated
//! data: nothing in the collector reads [`generate`].
//! Agents run the real agent code (`spotcheck_agent::run`) with their spools in
//! `DATA/agents/{id}`, so a killed demo resumes where it stopped and loses nothing.
//!
//! It also loads a generated registry and annual plans and runs one committed-then-revealed
//! draw per plan ([`load_registry_and_draw`]); ingest still takes the agent bindings from the
//! configuration, the entity library records them too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod generate;

use spotcheck_agent::AgentConfig;
use spotcheck_protocol::{AgentId, Domain, EntityId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use spotcheck_collector::config::{AgentBinding, BrokerChoice, Config, RawConfig, Synchronous};
use spotcheck_collector::topology::{Collector, StartError};

/// The demo's command-line settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Embedded broker listen address.
    pub mqtt: SocketAddr,
    /// Data directory.
    pub data: PathBuf,
    /// Simulated entities per domain.
    pub per_domain: usize,
    /// Send readings to this time-series store (`demo --influx URL`).
    pub influx: Option<InfluxTarget>,
}

/// The demo's time-series sink: the v2 write API (org and bucket `spotcheck`), or v1 into a
/// database. A token, if the server needs one, is read from `SPOTCHECK_SINK_TOKEN`.
#[derive(Debug, Clone)]
pub struct InfluxTarget {
    /// The server's base URL.
    pub url: String,
    /// v1 mode into this database (InfluxDB 1.x); absent: v2.
    pub v1_database: Option<String>,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The collector did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A demo option made the configuration invalid (e.g. a bad `--influx` URL).
    #[error(transparent)]
    Config(#[from] spotcheck_collector::config::ConfigError),
    /// Loading the generated registry or running the demo draws failed.
    #[error("demo registry and draws: {0}")]
    Draws(String),
    /// The demo's users could not be created.
    #[error("demo users: {0}")]
    Users(String),
    /// A simulated agent's config was refused (a bug in the demo).
    #[error("simulated agent {agent}: {reason}")]
    Agent {
        /// The agent.
        agent: String,
        /// Why.
        reason: String,
    },
}

/// One simulated site: an entity and the agent that serves it.
#[derive(Debug, Clone)]
pub struct Site {
    /// The entity.
    pub entity: EntityId,
    /// The agent.
    pub agent: AgentId,
    /// The domain.
    pub domain: Domain,
}

/// Entities in the demo's generated entity library, per domain.
const LIBRARY_PER_DOMAIN: usize = 120;

/// The demo's sites: the first `per_domain` entities of each domain in the generated entity
/// library, each served by one agent that reports under the entity's credit code, so that
/// drawn tasks, anomaly tasks and readings all name an entity the same way.
pub fn sites(per_domain: usize) -> Vec<Site> {
    use crate::generate;
    generate::entities(LIBRARY_PER_DOMAIN, per_domain, 2026)
        .into_iter()
        .filter_map(|e| {
            let agent = e.agents.first()?.clone();
            Some(Site {
                entity: EntityId::new(e.code.as_str()).expect("credit codes are valid entity ids"),
                agent,
                domain: e.domain,
            })
        })
        .collect()
}

/// The collector configuration the demo runs with.
pub fn collector_config(
    opts: &DemoOptions,
) -> Result<Config, spotcheck_collector::config::ConfigError> {
    let mut raw = RawConfig::parse("", Path::new("<demo>")).expect("the empty config parses");
    raw.data_dir = opts.data.clone();
    raw.http.listen = opts.http.to_string();
    raw.mqtt.embedded_listen = opts.mqtt.to_string();
    if let Some(t) = &opts.influx {
        raw.sink.url = Some(t.url.clone());
        if let Some(db) = &t.v1_database {
            raw.sink.api = spotcheck_collector::sink::config::Api::V1;
            raw.sink.database = db.clone();
        }
        if std::env::var_os("SPOTCHECK_SINK_TOKEN").is_some() {
            raw.sink.token_env = Some("SPOTCHECK_SINK_TOKEN".into());
        }
        // A local server that restarts comes back within seconds: retry often.
        raw.sink.max_backoff_s = 2;
    }
    raw.agents = sites(opts.per_domain)
        .into_iter()
        .map(|s| AgentBinding {
            id: s.agent,
            entity: s.entity,
            domain: s.domain,
        })
        .collect();
    let mut config = raw.validate()?;
    config.broker = BrokerChoice::Embedded(opts.mqtt);
    Ok(config)
}

/// The agent configuration of one simulated site.
pub fn agent_config(
    site: &Site,
    broker: &str,
    spool: &Path,
    credential: &Path,
    seed: u64,
) -> Result<AgentConfig, DemoError> {
    let interval_ms = match site.domain {
        Domain::Pool => 1000,
        Domain::Game | Domain::Hospital => 2000,
    };
    let toml = format!(
        r#"
[agent]
id = "{agent}"
entity = "{entity}"
domain = "{domain}"
credential_file = {credential:?}

[mqtt]
broker = "{broker}"
ack_timeout_ms = 5000

[spool]
dir = {spool:?}

[[sources]]
type = "simulate"
feed = "{domain}"
interval_ms = {interval_ms}
seed = {seed}
"#,
        agent = site.agent,
        entity = site.entity,
        domain = site.domain,
        spool = spool.display().to_string(),
        credential = credential.display().to_string(),
    );
    AgentConfig::from_toml_str(&toml).map_err(|e| DemoError::Agent {
        agent: site.agent.to_string(),
        reason: e.to_string(),
    })
}

/// Gives every simulated agent a credential (audited, as `agents add` would), written to
/// `DATA/credentials/{agent}.credential`; a restarted demo keeps the ones it has.
fn issue_credentials(data: &Path, sites: &[Site]) -> Result<Vec<PathBuf>, DemoError> {
    use spotcheck_collector::registry::credentials::{self, CredentialError};
    let fail = |e: String| DemoError::Draws(format!("issuing agent credentials: {e}"));
    let dir = data.join("credentials");
    std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
    let conn =
        store_conn(&spotcheck_collector::store::db_path(data)).map_err(|e| fail(e.to_string()))?;
    let mut paths = Vec::with_capacity(sites.len());
    for site in sites {
        let path = dir.join(format!("{}.credential", site.agent));
        if !path.exists() {
            let now = spotcheck_protocol::UnixMillis::now();
            let issued = match credentials::add(&conn, &site.agent, now) {
                Err(CredentialError::Exists(_)) => credentials::rotate(&conn, &site.agent, now),
                other => other,
            }
            .map_err(|e| fail(e.to_string()))?;
            spotcheck_collector::cli::write_secret(&path, &issued.to_file_text())
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Runs the demo until `stop` fires, then stops agents first (so their last batches are
/// spooled and, with luck, confirmed) and the collector after them.
pub async fn run(opts: DemoOptions, stop: CancellationToken) -> Result<(), DemoError> {
    // Before ingest starts, so that loading the registry never makes ingest's commits wait.
    std::fs::create_dir_all(&opts.data).map_err(|e| DemoError::Draws(e.to_string()))?;
    let drawn = load_registry_and_draw(&opts.data, opts.per_domain)?;
    let sites = sites(opts.per_domain);
    let credentials = issue_credentials(&opts.data, &sites)?;
    let collector = Collector::start(collector_config(&opts)?).await?;
    let broker = collector.broker_url().to_string();
    let agents_stop = CancellationToken::new();
    let mut agents = JoinSet::new();
    for (i, (site, credential)) in sites.into_iter().zip(credentials).enumerate() {
        let spool = opts.data.join("agents").join(site.agent.as_str());
        let config = agent_config(&site, &broker, &spool, &credential, 1000 + i as u64)?;
        let token = agents_stop.clone();
        let agent = site.agent.clone();
        agents.spawn(async move {
            if let Err(e) = spotcheck_agent::run(config, token).await {
                error!(message = "Simulated agent stopped with an error.", %agent, error = %e);
            }
        });
    }

    let http = collector.http_addr();
    let token = collector.admin_token().to_owned();
    let logins = demo_users(&spotcheck_collector::store::db_path(&opts.data))?;
    println!("Spotcheck demo is running.");
    println!("  console:     http://{http}/  log in as (new passwords at every start):");
    for (name, what, password) in &logins {
        println!("               {name:<11} {password}   {what}");
    }
    println!("  API:         http://{http}/api/v1/stats");
    println!("  metrics:     http://{http}/metrics");
    println!("  MQTT broker: {broker}");
    println!(
        "  admin token: {token}  (also in {})",
        opts.data.join("admin.token").display()
    );
    println!("  data:        {}", opts.data.display());
    if let Some(t) = &opts.influx {
        println!(
            "  time series: {} (docs/tsdb.md; dashboards in dashboards/)",
            t.url
        );
    }
    println!("  draws:       http://{http}/api/v1/public/draws (commitments: /api/v1/public/draw-commitments)");
    for path in &drawn {
        println!(
            "               spotcheck-collector draw verify {}",
            path.display()
        );
    }
    println!(
        "               (after a recusal: spotcheck-collector draw export --data {})",
        opts.data.display()
    );
    println!("  tasks:       http://{http}/api/v1/tasks  (Authorization: Bearer {token})");
    println!("  results:     http://{http}/api/v1/public/results  (?format=csv)");
    println!(
        "  In about {} s the demo runs remote checks, records inspectors' decisions and publishes results.",
        SHOWCASE_AFTER.as_secs()
    );
    println!("Press Ctrl-C to stop.");

    let showcase = {
        let data = opts.data.clone();
        let stop = stop.clone();
        let started = spotcheck_protocol::UnixMillis::now();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SHOWCASE_AFTER) => {}
            }
            let db = spotcheck_collector::store::db_path(&data);
            match tokio::task::spawn_blocking(move || showcase(&db, started)).await {
                Ok(Ok(s)) => {
                    println!("Demo: {s}");
                    info!(message = "Demo showcase done.", summary = %s);
                }
                Ok(Err(e)) => error!(message = "Demo showcase failed.", error = %e),
                Err(e) => error!(message = "Demo showcase panicked.", error = %e),
            }
        })
    };

    stop.cancelled().await;
    showcase.abort();
    info!(message = "Stopping the demo: agents first, then the collector.");
    agents_stop.cancel();
    while agents.join_next().await.is_some() {}
    collector.shutdown().await;
    Ok(())
}

/// How long after start the demo shows checks, decisions and publication: long enough for
/// the simulated agents to have sent a useful window of data.
pub const SHOWCASE_AFTER: std::time::Duration = std::time::Duration::from_secs(40);

/// The item each domain's sites are checked for.
fn item_of(domain: Domain) -> &'static str {
    match domain {
        Domain::Pool => "pool-water-quality",
        Domain::Game => "game-minors",
        Domain::Hospital => "ihosp-prescriptions",
    }
}

/// The second half of the demo, as a bureau would do it through the API: referral tasks for
/// the monitored sites, with two inspectors each; remote checks of those and of some drawn
/// tasks (whose inspection windows hold no data, so they come back "cannot be verified
/// remotely"); the first inspector's decision on each verdict that can be accepted; one
/// anomaly task acknowledged and resolved; every resolved task published.
pub fn showcase(db: &Path, since: spotcheck_protocol::UnixMillis) -> Result<String, String> {
    // The demo stands in for the people here; the audit log says so (`"by":"demo"`).
    // Through the process's workflow writer, as the API's writes go (store::access).
    spotcheck_collector::store::access::of(db)
        .write_db(|conn| {
            spotcheck_collector::audit::acting_as("demo", || showcase_steps(conn, since))
        })
        .map_err(|e| e.to_string())?
}

/// One user per role with a fresh random password each start: (name, role, password).
/// The inspector is linked to the first active health inspector of the registry.
pub fn demo_users(db: &Path) -> Result<Vec<(String, String, String)>, DemoError> {
    use spotcheck_collector::store::db::Sql;
    use spotcheck_collector::users::store::{self as users, NewUser};
    use spotcheck_collector::users::Role;
    let e = |e: &dyn std::fmt::Display| DemoError::Users(e.to_string());
    let conn = store_conn(db).map_err(|x| e(&x))?;
    let inspector: String = conn
        .query_row(
            "SELECT id FROM registry_inspectors WHERE department = 'health' AND active = 1 ORDER BY id LIMIT 1",
            spotcheck_collector::store::db::args![],
            |r| r.get(0),
        )
        .map_err(|x| e(&x))?;
    let now = spotcheck_protocol::UnixMillis::now();
    let wanted = [
        ("admin", Role::Admin, None, None),
        ("supervisor", Role::Supervisor, Some("health"), None),
        ("inspector", Role::Inspector, None, Some(inspector.as_str())),
        ("auditor", Role::Auditor, None, None),
    ];
    let mut out = Vec::new();
    spotcheck_collector::audit::acting_as("demo", || {
        for (name, role, department, inspector) in wanted {
            let password = spotcheck_collector::users::random_secret()[..16].to_owned();
            match users::by_name(&conn, name).map_err(|x| e(&x))? {
                Some(u) => users::set_password(&conn, u.id, &password, now),
                None => users::create(
                    &conn,
                    &NewUser {
                        name,
                        role: Some(role),
                        department,
                        inspector,
                        password: Some(&password),
                    },
                    now,
                )
                .map(drop),
            }
            .map_err(|x| e(&x))?;
            let what = match (department, inspector) {
                (Some(d), _) => format!("{role} of {d}"),
                (_, Some(i)) => format!("{role} {i}"),
                _ => role.to_string(),
            };
            out.push((name.to_owned(), what, password));
        }
        Ok(out)
    })
}

fn showcase_steps(
    conn: &spotcheck_collector::store::db::Conn,
    since: spotcheck_protocol::UnixMillis,
) -> Result<String, String> {
    use spotcheck_collector::check::{self, Decision};
    use spotcheck_collector::results::{self, Category};
    use spotcheck_collector::store::db::{args, Sql};
    use spotcheck_collector::tasks::{store as tasks, TaskFilter, TaskKind, TaskStatus};
    use spotcheck_protocol::UnixMillis;

    let err = |e: &dyn std::fmt::Display| e.to_string();
    let book = spotcheck_collector::rulebook::Rulebook::load(None).map_err(|e| err(&e))?;
    let (rules, calendar) = (book.rules(), book.calendar());
    let now = UnixMillis::now;
    let per_domain = conn
        .query_row("SELECT count(*) FROM agents", args![], |r| r.get::<i64>(0))
        .map_err(|e| err(&e))? as usize
        / Domain::ALL.len();
    let mut checked = Vec::new();
    for site in sites(per_domain.max(1)) {
        let department = crate::generate::department_of(site.domain).to_string();
        let referral = tasks::NewReferral {
            entity: site.entity.as_str(),
            department: &department,
            item: item_of(site.domain),
            reason: "demo: routine remote check of a monitored site",
            entered_by: "demo",
        };
        let task = tasks::create_referral(conn, &referral, now()).map_err(|e| err(&e))?;
        let pool: Vec<(String, String)> = conn
            .query(
                "SELECT id, conflicts FROM registry_inspectors WHERE department = $1 AND active = 1
                 ORDER BY id",
                args![department],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| err(&e))?;
        let inspectors: Vec<String> = pool
            .into_iter()
            .filter(|(_, conflicts)| {
                serde_json::from_str::<Vec<String>>(conflicts)
                    .is_ok_and(|c| !c.iter().any(|c| c == site.entity.as_str()))
            })
            .map(|(id, _)| id)
            .take(2)
            .collect();
        tasks::assign_checked(conn, task.id, &inspectors, now()).map_err(|e| err(&e))?;
        let c = check::run(
            conn,
            &rules,
            &calendar,
            task.id,
            Some((since.0, now().0)),
            now(),
        )
        .map_err(|e| err(&e))?;
        checked.push((c, inspectors.first().cloned()));
    }
    let drawn = tasks::list(
        conn,
        &TaskFilter {
            kind: Some(TaskKind::Random),
            status: Some(TaskStatus::Drawn),
            limit: 5,
            ..TaskFilter::default()
        },
    )
    .map_err(|e| err(&e))?;
    for t in drawn {
        let c = check::run(conn, &rules, &calendar, t.id, None, now()).map_err(|e| err(&e))?;
        checked.push((c, t.inspectors.first().map(|i| i.to_string())));
    }
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut to_publish = Vec::new();
    for (c, inspector) in &checked {
        *tally.entry(c.outcome.clone()).or_default() += 1;
        let Some(inspector) = inspector else { continue };
        if c.outcome == "cannot_verify" {
            continue; // An on-site check is needed; the inspector overrides after it.
        }
        let d = Decision::Accept {
            result: None,
            comment: Some("demo: remote verdict accepted".into()),
        };
        let by = check::Decider::Inspector(inspector.clone());
        check::decide(conn, c.id.0, &by, d, now()).map_err(|e| err(&e))?;
        to_publish.push(c.task.0);
    }
    let anomalies = tasks::list(
        conn,
        &TaskFilter {
            kind: Some(TaskKind::Anomaly),
            status: Some(TaskStatus::Open),
            limit: 1,
            ..TaskFilter::default()
        },
    )
    .map_err(|e| err(&e))?;
    for t in anomalies {
        tasks::acknowledge(conn, t.id, "demo supervisor", now()).map_err(|e| err(&e))?;
        tasks::resolve(
            conn,
            t.id,
            Category::Corrected,
            "demo: the operator was told to correct it and confirmed",
            "demo supervisor",
            now(),
        )
        .map_err(|e| err(&e))?;
        to_publish.push(t.id.0);
    }
    results::publish(conn, &to_publish, now()).map_err(|e| err(&e))?;
    Ok(format!(
        "{} remote checks ({}), {} results published",
        checked.len(),
        tally
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        to_publish.len()
    ))
}

/// Loads the generated registry (120 entities per domain, the first `per_domain` bound to the
/// simulated agents; 24 inspectors per bureau, some with conflicts), the item list and the
/// annual plans, then commits and afterwards reveals batch `b1` of every plan. Every revealed
/// record is then exported from the store to `DATA/draws/{id}.json` for `draw verify`
/// ([`spotcheck_collector::cli::export_draws`]; export again after a recusal). A batch already drawn by an
/// earlier run is kept as it is.
pub fn load_registry_and_draw(data: &Path, per_domain: usize) -> Result<Vec<PathBuf>, DemoError> {
    use crate::generate;
    use rusqlite::OptionalExtension;
    use spotcheck_collector::plan::store as plans;
    use spotcheck_collector::registry::{import::Records, store as registry};

    let err = |e: &dyn std::fmt::Display| DemoError::Draws(e.to_string());
    let conn = spotcheck_collector::store::open_for_writing(
        &spotcheck_collector::store::db_path(data),
        Synchronous::Full,
    )
    .map_err(|e| err(&e))?;
    // The libraries, plans and draws through the store interface.
    let db = store_conn(&spotcheck_collector::store::db_path(data)).map_err(|e| err(&e))?;
    let entities = generate::entities(LIBRARY_PER_DOMAIN, per_domain, 2026);
    let inspectors = generate::inspectors(24, &entities, 2026);
    for records in [
        Records::Entities(entities),
        Records::Inspectors(inspectors),
        Records::Items(generate::items()),
    ] {
        registry::write(&db, &records).map_err(|e| err(&e))?;
    }
    let dir = data.join("draws");
    std::fs::create_dir_all(&dir).map_err(|e| err(&e))?;
    let now = || spotcheck_protocol::UnixMillis::now().0;
    for plan in generate::plans(2026) {
        plans::save(&conn, &plan).map_err(|e| err(&e))?;
        let id = format!("{}-b1", plan.id);
        // None: not committed; Some(false): committed only (an interrupted run); Some(true).
        let state: Option<bool> = conn
            .query_row(
                "SELECT record IS NOT NULL FROM draws WHERE id = ?1",
                [&id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| err(&e))?;
        if state.is_none() {
            let c = plans::commit_batch(&db, plan.id.as_str(), "b1", now()).map_err(|e| err(&e))?;
            info!(message = "Demo draw committed.", draw = %id, commitment = %c.commitment);
        }
        if state != Some(true) {
            let r = plans::reveal_batch(&db, plan.id.as_str(), "b1", now()).map_err(|e| err(&e))?;
            info!(message = "Demo draw revealed.", draw = %id, drawn = r.draws.len());
        }
    }
    drop(conn);
    // Rendered from the store, the one source of the records: after a recusal, run
    // `spotcheck-collector draw export` again.
    let written = spotcheck_collector::cli::export_draws(data, &dir).map_err(|e| err(&e))?;
    Ok(written)
}

/// A connection through the store interface to the SQLite file `db` (the collector's modules
/// that have moved to it take one).
fn store_conn(
    db: &Path,
) -> Result<spotcheck_collector::store::db::Conn, spotcheck_collector::store::db::DbError> {
    use spotcheck_collector::store::db::{connect, DbUrl, Mode};
    connect(&DbUrl::Sqlite(db.to_owned()), Mode::Write)
}

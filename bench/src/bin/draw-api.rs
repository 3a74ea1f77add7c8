//! `draw-api`: a draw over 1,000,000 entities through the HTTP API, end to end (issue 17).
//!
//! Builds (untimed) a data directory with `--entities` pool entities in four risk classes
//! (30/40/20/10 %), `--inspectors` health inspectors of the pool field with `--conflicts`
//! conflicts (回避) among them, the item list and a one-batch plan at the upper bounds of the
//! default ratios (A 5 %, B 20 %, C 60 %, D 100 %) whose inspection window has ended, through
//! the collector's own store API (`registry::store::write`, `plan::store::save`). Each round
//! copies that directory, serves the API over the copy in-process on 127.0.0.1 (as
//! `tasks-list` does), and times, each as the wall time of one request with its whole
//! response read:
//!
//! 1. `POST /api/v1/plans/{plan}/batches/b1/commit`;
//! 2. `POST /api/v1/plans/{plan}/batches/b1/reveal` (the draw, its record, the tasks and
//!    their inspectors, the record file in `DATA/draws/`; the response is the full record);
//! 3. `GET /api/v1/public/draws?limit=1` (the public form of that record), twice: the first
//!    request after the reveal, then the same request again.
//!
//! Prints the medians over `--rounds` rounds and every round's figure as a Markdown table.
//! `--template DIR` keeps the generated directory in DIR (made if missing, reused if
//! present), so a baseline and a candidate build can be run in turn over the same data.
//! The store is SQLite with `synchronous = full`, as the collector runs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use spotcheck_collector::api::{router, AppState};
use spotcheck_collector::plan::{Batch, ClassRatio, Plan, PlanDate};
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::registry::model::{
    CertificateNo, Department, DrawId, Entity, Inspector, InspectorId, Item, ItemId, ItemKind,
    Method, RiskClass,
};
use spotcheck_collector::registry::CreditCode;
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store;
use spotcheck_collector::store::db::{connect, DbUrl, Mode};
use spotcheck_protocol::{Domain, UnixMillis};

#[derive(Parser)]
#[command(about = "A draw over many entities through the HTTP API: commit, reveal, public record")]
struct Args {
    /// Pool entities in the library (all candidates of the plan).
    #[arg(long, default_value_t = 1_000_000)]
    entities: u32,
    /// Health inspectors of the pool field.
    #[arg(long, default_value_t = 5_000)]
    inspectors: u32,
    /// Conflicts (inspector, entity) spread over the inspectors.
    #[arg(long, default_value_t = 10_000)]
    conflicts: u32,
    /// Rounds (each over a fresh copy of the generated data directory).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep the generated data directory here and reuse it when it exists.
    #[arg(long)]
    template: Option<PathBuf>,
    /// Keep the last round's data directory here (for looking at the store afterwards).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Label printed with the table (e.g. the build's commit).
    #[arg(long, default_value = "")]
    label: String,
}

const ADMIN: &str = "bench-admin-token-0123456789abcdef";
const PLAN: &str = "2020-health-pool";

fn code(i: u32) -> CreditCode {
    CreditCode::complete(&format!("91440305MA{i:07}")).expect("a valid credit code")
}

/// splitmix64: a fixed, seeded sequence, so every template holds the same library.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// Fills the data directory `dir`: the libraries, the plan and the admin's token.
fn generate(dir: &Path, args: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let db = store::db_path(dir);
    let conn = connect(&DbUrl::Sqlite(db), Mode::Write)?;
    let health = Department::new("health").expect("valid");
    let item = ItemId::new("pool-water-quality").expect("valid");
    let write = |r: &Records| spotcheck_collector::registry::store::write(&conn, r);
    write(&Records::Items(vec![Item {
        id: item.clone(),
        name: "游泳场所水质卫生".into(),
        department: health.clone(),
        legal_basis: "GB 37488-2019".into(),
        kind: ItemKind::General,
        method: Method::Both,
        rule_pack: Some("pool".into()),
    }]))?;
    let mut rng = Mix(17);
    let classes = RiskClass::defaults();
    let entities = (0..args.entities)
        .map(|i| Entity {
            code: code(i),
            name: format!("游泳馆{i}"),
            domain: Domain::Pool,
            district: "南山区".into(),
            address: format!("深圳市南山区{i}号"),
            contact: String::new(),
            risk: classes[match rng.below(10) {
                0..=2 => 0,
                3..=6 => 1,
                7..=8 => 2,
                _ => 3,
            }]
            .clone(),
            agents: Vec::new(),
        })
        .collect();
    write(&Records::Entities(entities))?;
    let mut inspectors: Vec<Inspector> = (0..args.inspectors)
        .map(|i| Inspector {
            id: InspectorId::new(format!("hb-{i:05}")).expect("valid"),
            name: format!("检查员{i}"),
            certificate: CertificateNo::new(format!("CERT-{i:06}")).expect("valid"),
            department: health.clone(),
            fields: [Domain::Pool].into(),
            active: true,
            conflicts: Default::default(),
        })
        .collect();
    for _ in 0..args.conflicts {
        let e = code(rng.below(args.entities));
        let i = rng.below(args.inspectors) as usize;
        inspectors[i].conflicts.insert(e);
    }
    write(&Records::Inspectors(inspectors))?;
    let upper = [500, 2000, 6000, 10_000];
    let plan = Plan {
        id: DrawId::new(PLAN).expect("valid"),
        year: 2020,
        department: health,
        item,
        domain: Domain::Pool,
        district: None,
        ratios: ClassRatio::defaults()
            .into_iter()
            .zip(upper)
            .map(|(r, bp)| ClassRatio { ratio_bp: bp, ..r })
            .collect(),
        inspectors_per_entity: 2,
        // One batch: it draws the whole annual target. Its window has ended, so the public
        // record is out at once.
        batches: vec![Batch {
            label: "b1".into(),
            start: PlanDate::new("2020-03-01").expect("valid"),
            end: PlanDate::new("2020-04-30").expect("valid"),
        }],
        partners: Vec::new(),
    };
    spotcheck_collector::plan::store::save(&conn, &plan)?;
    spotcheck_collector::users::store::bootstrap_with(&conn, ADMIN, UnixMillis::now())?;
    // Closing the last connection checkpoints the WAL into the file, so a plain copy of the
    // directory is the whole store.
    drop(conn);
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Serves the API over data directory `dir` on a free port; abort the handle to stop it.
fn serve(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    runtime.block_on(async {
        let state = AppState {
            credentials: Default::default(),
            stats: Default::default(),
            bindings: Default::default(),
            presence: Default::default(),
            store: DbUrl::Sqlite(store::db_path(dir)),
            data_dir: dir.to_owned(),
            people: Default::default(),
            rulebook: Rulebook::load(None).expect("default rule packs"),
            publish_within_days: 20,
            health: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        anyhow::Ok((addr, server))
    })
}

/// One request with its whole response read: (seconds, body).
fn timed(agent: &ureq::Agent, method: &str, url: &str) -> anyhow::Result<(f64, Vec<u8>)> {
    let auth = format!("Bearer {ADMIN}");
    let t = Instant::now();
    let mut r = match method {
        "POST" => agent
            .post(url)
            .header("Authorization", &auth)
            .send_empty()?,
        _ => agent.get(url).call()?,
    };
    let status = r.status();
    let body = r.body_mut().with_config().limit(u64::MAX).read_to_vec()?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        status == 200,
        "{method} {url}: {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(2000)])
    );
    Ok((secs, body))
}

struct Round {
    commit: f64,
    reveal: f64,
    public: f64,
    public_again: f64,
    reveal_mb: f64,
    public_mb: f64,
    drawn: usize,
}

fn round(runtime: &tokio::runtime::Runtime, dir: &Path, check: bool) -> anyhow::Result<Round> {
    let (addr, server) = serve(runtime, dir)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("http://{addr}");
    let (commit, _) = timed(
        &agent,
        "POST",
        &format!("{base}/api/v1/plans/{PLAN}/batches/b1/commit"),
    )?;
    let (reveal, record) = timed(
        &agent,
        "POST",
        &format!("{base}/api/v1/plans/{PLAN}/batches/b1/reveal"),
    )?;
    let (public, body) = timed(
        &agent,
        "GET",
        &format!("{base}/api/v1/public/draws?limit=1"),
    )?;
    let (public_again, again) = timed(
        &agent,
        "GET",
        &format!("{base}/api/v1/public/draws?limit=1"),
    )?;
    server.abort();
    anyhow::ensure!(
        again == body,
        "the second public request differs from the first"
    );
    let full: spotcheck_collector::draw::DrawRecord =
        serde_json::from_slice(&record).context("the reveal's response is a record")?;
    if check {
        // Untimed: the figures are of a draw that verifies, publicly and in full, and the
        // public form is the full record's.
        let public: Vec<spotcheck_collector::draw::PublicRecord> =
            serde_json::from_slice(&body).context("the public draws")?;
        anyhow::ensure!(public.len() == 1, "one public record, got {}", public.len());
        let check = spotcheck_collector::draw::verify_public(&public[0]);
        anyhow::ensure!(check.mismatches.is_empty(), "{:?}", check.mismatches);
        anyhow::ensure!(spotcheck_collector::draw::verify(&full).is_empty());
        anyhow::ensure!(full.to_public() == public[0], "public form differs");
    }
    Ok(Round {
        commit,
        reveal,
        public,
        public_again,
        reveal_mb: record.len() as f64 / 1e6,
        public_mb: body.len() as f64 / 1e6,
        drawn: full.draws.len(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let template = args
        .template
        .clone()
        .unwrap_or_else(|| scratch.path().join("template"));
    if !store::db_path(&template).exists() {
        let t = Instant::now();
        generate(&template, &args).context("generating the data directory")?;
        println!(
            "generated {} entities, {} inspectors, {} conflicts in {:.1} s ({})",
            args.entities,
            args.inspectors,
            args.conflicts,
            t.elapsed().as_secs_f64(),
            template.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rounds = Vec::new();
    for i in 0..args.rounds {
        let dir = scratch.path().join(format!("round-{i}"));
        copy_dir(&template, &dir)?;
        let r = round(&runtime, &dir, i == 0).with_context(|| format!("round {i}"))?;
        println!(
            "round {i}: commit {:.3} s, reveal {:.3} s, public {:.3} s, again {:.3} s",
            r.commit, r.reveal, r.public, r.public_again
        );
        rounds.push(r);
        match &args.keep {
            Some(keep) if i + 1 == args.rounds => {
                copy_dir(&dir, keep)?;
                println!("kept round {i} in {}", keep.display());
            }
            _ => {}
        }
        std::fs::remove_dir_all(&dir)?;
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    let first = &rounds[0];
    println!();
    println!(
        "{}{} entities, {} drawn, {} inspectors, {} conflicts; medians of {} rounds; full record {:.1} MB, public {:.1} MB",
        if args.label.is_empty() { String::new() } else { format!("{}: ", args.label) },
        args.entities,
        first.drawn,
        args.inspectors,
        args.conflicts,
        rounds.len(),
        first.reveal_mb,
        first.public_mb
    );
    println!();
    println!("| step | median s | rounds (s) |");
    println!("|---|---:|---|");
    let row = |name: &str, f: fn(&Round) -> f64| {
        let v: Vec<f64> = rounds.iter().map(f).collect();
        let each: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
        println!("| {name} | {:.3} | {} |", median(v.clone()), each.join(" "));
    };
    row("commit", |r| r.commit);
    row("reveal", |r| r.reveal);
    row("commit + reveal", |r| r.commit + r.reveal);
    row("public record", |r| r.public);
    row("public record, again", |r| r.public_again);
    Ok(())
}

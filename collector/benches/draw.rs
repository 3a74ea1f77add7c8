//! Draw benchmark (issue 4): a draw over 1,000,000 entities in four risk classes with 5,000
//! inspectors and conflicts, its verification, and a joint merge over 100,000 tasks.
//!
//! `cargo bench -p spotcheck-collector --bench draw` (timings are printed; no harness).
//! With `SPOTCHECK_BENCH_RECORD=FILE` the record is also written to FILE, to time
//! `spotcheck-collector draw verify FILE`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotcheck_collector::draw::{
    verify, Candidate, Conflict, DrawInput, DrawRecord, Parameters, PoolInspector, Quota, SaltKey,
    Seed, Sha256, Stratum,
};
use spotcheck_collector::joint::{self, Task};
use spotcheck_collector::plan::PlanDate;
use spotcheck_collector::registry::model::{Department, DrawId, InspectorId, ItemId, RiskClass};
use spotcheck_collector::registry::CreditCode;

const ENTITIES: u32 = 1_000_000;
const INSPECTORS: u32 = 5_000;
const CONFLICTS: u32 = 10_000;
const TASKS: u32 = 100_000;

fn code(i: u32) -> CreditCode {
    CreditCode::complete(&format!("91440305MA{i:07}")).expect("valid")
}

fn input(rng: &mut ChaCha8Rng) -> DrawInput {
    let classes = RiskClass::defaults();
    let candidates = (0..ENTITIES)
        .map(|i| Candidate {
            code: code(i),
            class: classes[match rng.random_range(0..10) {
                0..=2 => 0,
                3..=6 => 1,
                7..=8 => 2,
                _ => 3,
            }]
            .clone(),
        })
        .collect();
    let inspectors: Vec<PoolInspector> = (0..INSPECTORS)
        .map(|i| PoolInspector {
            id: InspectorId::new(format!("hb-{i:05}")).expect("valid"),
            name: format!("检查员{i}"),
        })
        .collect();
    let conflicts = (0..CONFLICTS)
        .map(|_| Conflict {
            entity: code(rng.random_range(0..ENTITIES)),
            inspector: inspectors[rng.random_range(0..INSPECTORS) as usize]
                .id
                .clone(),
        })
        .collect();
    // The upper bounds of the default ranges: A 5 %, B 20 %, C 60 %, D 100 %.
    let strata = classes
        .into_iter()
        .zip([500, 2000, 6000, 10_000])
        .map(|(class, bp)| Stratum {
            class,
            quota: Quota::RatioBp(bp),
        })
        .collect();
    let parameters = Parameters {
        draw_id: DrawId::new("bench-1m").expect("valid"),
        department: Department::new("health").expect("valid"),
        item: ItemId::new("pool-water-quality").expect("valid"),
        inspectors_per_entity: 2,
        strata,
    };
    DrawInput::new(parameters, candidates, inspectors, conflicts).expect("valid input")
}

fn tasks(rng: &mut ChaCha8Rng) -> Vec<Task> {
    let departments: Vec<Department> = ["health", "culture", "fire", "market", "ecology"]
        .into_iter()
        .map(|d| Department::new(d).expect("valid"))
        .collect();
    (0..TASKS)
        .map(|id| {
            let month = rng.random_range(1..=11);
            let dept = &departments[rng.random_range(0..departments.len())];
            Task {
                id: i64::from(id),
                entity: code(rng.random_range(0..40_000)),
                department: dept.clone(),
                item: ItemId::new(format!("{dept}-item")).expect("valid"),
                start: PlanDate::new(&format!("2026-{month:02}-01")).expect("valid"),
                end: PlanDate::new(&format!("2026-{:02}-28", month + 1)).expect("valid"),
                drawn: true,
            }
        })
        .collect()
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    println!("{label:<44} {:>9.3} s", t.elapsed().as_secs_f64());
    out
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let input = time("generate + canonicalise 1M candidates", || input(&mut rng));
    // The seed: SHA-256 of a label, so anyone can rebuild it.
    let seed = Seed(Sha256::of(b"spotcheck bench").0);
    let draws = time("draw (phases 1 and 2)", || {
        spotcheck_collector::draw::draw(&seed, &input).expect("possible")
    });
    println!(
        "  drawn {} entities, {} assignments, {} conflicts in the input",
        draws.len(),
        draws.len() * 2,
        input.conflicts.len()
    );
    let record = time("make record (draw + 6 digests, 1M salted hashes)", || {
        DrawRecord::make(
            seed,
            SaltKey(Sha256::of(b"spotcheck bench salt key").0),
            &input,
        )
        .expect("possible")
    });
    let mismatches = time("verify record (digests + recompute)", || verify(&record));
    assert!(mismatches.is_empty(), "{mismatches:?}");
    let json = time("serialise record to JSON", || {
        serde_json::to_vec(&record).expect("serialises")
    });
    println!("  record JSON: {:.1} MB", json.len() as f64 / 1e6);
    if let Some(path) = std::env::var_os("SPOTCHECK_BENCH_RECORD") {
        // For timing `spotcheck-collector draw verify` on the same record.
        std::fs::write(&path, &json).expect("the record file is writable");
    }
    let parsed: DrawRecord = time("parse record JSON", || {
        serde_json::from_slice(&json).expect("parses")
    });
    let mismatches = time("verify parsed record", || verify(&parsed));
    assert!(mismatches.is_empty());
    let public = time("public form (1M salts and salted hashes)", || {
        record.to_public()
    });
    let check = time("verify the public form", || {
        spotcheck_collector::draw::verify_public(&public)
    });
    assert!(check.mismatches.is_empty(), "{check:?}");
    println!(
        "  passed over for undisclosed conflicts: {}",
        check.passed_over
    );
    let public_json = time("serialise the public form to JSON", || {
        serde_json::to_vec(&public).expect("serialises")
    });
    println!(
        "  public record JSON: {:.1} MB",
        public_json.len() as f64 / 1e6
    );

    let tasks = time("generate 100k tasks", || tasks(&mut rng));
    let joint = time("joint merge of 100k tasks", || joint::merge(&tasks));
    let per_department = joint::joint_per_department(&joint);
    println!(
        "  {} joint tasks covering {} tasks; per department {:?}",
        joint.len(),
        joint.iter().map(|j| j.tasks.len()).sum::<usize>(),
        per_department.values().collect::<Vec<_>>()
    );
}

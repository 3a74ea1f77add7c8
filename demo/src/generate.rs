//! A generated but realistic registry for the demo, tests and benchmarks: Nanshan entities of
//! the three domains across risk classes, health- and culture-bureau inspectors with some
//! conflicts of interest, the item list and an annual plan per department.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotcheck_protocol::{AgentId, Domain};

use spotcheck_collector::plan::{Batch, ClassRatio, Partner, Plan, PlanDate};
use spotcheck_collector::registry::credit_code::{CreditCode, ALPHABET};
use spotcheck_collector::registry::model::{
    CertificateNo, Department, DrawId, Entity, Inspector, InspectorId, Item, ItemId, ItemKind,
    Method, RiskClass,
};

const STREETS: [&str; 8] = [
    "粤海", "南头", "南山", "沙河", "蛇口", "招商", "西丽", "桃源",
];
const SURNAMES: [&str; 12] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
];
const GIVEN: [&str; 10] = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰"];

/// The department that inspects a domain: health for pools and internet hospitals, culture
/// for online games.
pub fn department_of(domain: Domain) -> Department {
    Department::new(match domain {
        Domain::Pool | Domain::Hospital => "health",
        Domain::Game => "culture",
    })
    .expect("valid department")
}

/// A Shenzhen enterprise credit code (91 = enterprise, 440305 = Nanshan) with a random
/// 9-character organisation code and a valid check character.
pub fn credit_code(rng: &mut impl Rng) -> CreditCode {
    let org: String = (0..9)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    CreditCode::complete(&format!("91440305{org}")).expect("generated codes are valid")
}

fn person(rng: &mut impl Rng) -> String {
    format!(
        "{}{}",
        SURNAMES[rng.random_range(0..SURNAMES.len())],
        GIVEN[rng.random_range(0..GIVEN.len())]
    )
}

/// A risk class drawn 30 % A, 40 % B, 20 % C, 10 % D.
fn risk(rng: &mut impl Rng) -> RiskClass {
    let c = match rng.random_range(0..10) {
        0..=2 => "A",
        3..=6 => "B",
        7..=8 => "C",
        _ => "D",
    };
    RiskClass::new(c).expect("valid class")
}

/// `per_domain` entities of each domain; the first `bound` of each domain are bound to the
/// demo's agents (`{domain}-agent-01` …).
pub fn entities(per_domain: usize, bound: usize, seed: u64) -> Vec<Entity> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for domain in Domain::ALL {
        for i in 1..=per_domain {
            let street = STREETS[rng.random_range(0..STREETS.len())];
            let name = match domain {
                Domain::Pool => format!("深圳市南山区{street}第{i}游泳馆有限公司"),
                Domain::Game => format!("深圳市{street}互动娱乐第{i}网络科技有限公司"),
                Domain::Hospital => format!("深圳{street}第{i}互联网医院有限公司"),
            };
            let agents = if i <= bound {
                vec![AgentId::new(format!("{domain}-agent-{i:02}")).expect("valid agent id")]
            } else {
                Vec::new()
            };
            out.push(Entity {
                code: credit_code(&mut rng),
                name,
                domain,
                district: "南山区".into(),
                address: format!("深圳市南山区{street}街道{}号", rng.random_range(1..300)),
                contact: format!(
                    "{} 0755-{:08}",
                    person(&mut rng),
                    rng.random_range(0..100_000_000)
                ),
                risk: risk(&mut rng),
                agents,
            });
        }
    }
    out
}

/// `per_department` inspectors of the health bureau, the culture bureau and the fire
/// department (every department of the item list); about one in ten has a conflict with an
/// entity of their field.
pub fn inspectors(per_department: usize, entities: &[Entity], seed: u64) -> Vec<Inspector> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (prefix, dept, fields) in [
        ("hb", "health", &[Domain::Pool, Domain::Hospital][..]),
        ("cb", "culture", &[Domain::Game][..]),
        // The fire department joins the health bureau's pool inspections (a joint plan).
        ("fb", "fire", &[Domain::Pool][..]),
    ] {
        let in_field: Vec<&Entity> = entities
            .iter()
            .filter(|e| fields.contains(&e.domain))
            .collect();
        for i in 1..=per_department {
            let mut conflicts = BTreeSet::new();
            if rng.random_range(0..10) == 0 && !in_field.is_empty() {
                conflicts.insert(in_field[rng.random_range(0..in_field.len())].code.clone());
            }
            out.push(Inspector {
                id: InspectorId::new(format!("{prefix}-{i:03}")).expect("valid id"),
                name: person(&mut rng),
                certificate: CertificateNo::new(format!(
                    "4403{:02}{i:05}",
                    match dept {
                        "health" => 10,
                        "culture" => 20,
                        _ => 30,
                    }
                ))
                .expect("valid certificate"),
                department: Department::new(dept).expect("valid department"),
                fields: fields.iter().copied().collect(),
                active: rng.random_range(0..20) != 0,
                conflicts,
            });
        }
    }
    out
}

/// The item list of the demo.
pub fn items() -> Vec<Item> {
    let item =
        |id: &str, name: &str, dept: &str, basis: &str, kind, method, pack: Option<&str>| Item {
            id: ItemId::new(id).expect("valid item id"),
            name: name.into(),
            department: Department::new(dept).expect("valid department"),
            legal_basis: basis.into(),
            kind,
            method,
            rule_pack: pack.map(str::to_owned),
        };
    vec![
        item(
            "pool-water-quality",
            "游泳场所水质卫生",
            "health",
            "GB 37488-2019; 公共场所卫生管理条例",
            ItemKind::General,
            Method::Both,
            Some("pool"),
        ),
        item(
            "ihosp-prescriptions",
            "互联网诊疗处方审核",
            "health",
            "互联网诊疗监管细则（试行）2022",
            ItemKind::Key,
            Method::Remote,
            Some("hospital"),
        ),
        item(
            "game-minors",
            "网络游戏防沉迷",
            "culture",
            "国新出发〔2019〕34号; 2021年通知",
            ItemKind::Key,
            Method::Remote,
            Some("game"),
        ),
        item(
            "pool-fire-safety",
            "游泳场所消防安全",
            "fire",
            "消防法",
            ItemKind::General,
            Method::OnSite,
            None,
        ),
    ]
}

/// The annual plans of `year`: health (pools, a joint plan with the fire department) and
/// culture (games), two batches each.
pub fn plans(year: u16) -> Vec<Plan> {
    let batches = || {
        vec![
            Batch {
                label: "b1".into(),
                start: PlanDate::new(&format!("{year}-03-01")).expect("valid date"),
                end: PlanDate::new(&format!("{year}-04-30")).expect("valid date"),
            },
            Batch {
                label: "b2".into(),
                start: PlanDate::new(&format!("{year}-09-01")).expect("valid date"),
                end: PlanDate::new(&format!("{year}-10-31")).expect("valid date"),
            },
        ]
    };
    let plan = |id: &str, dept: &str, item: &str, domain, partners: Vec<Partner>| Plan {
        id: DrawId::new(format!("{year}-{id}")).expect("valid plan id"),
        year,
        department: Department::new(dept).expect("valid department"),
        item: ItemId::new(item).expect("valid item"),
        domain,
        district: None,
        ratios: ClassRatio::defaults(),
        inspectors_per_entity: 2,
        batches: batches(),
        partners,
    };
    vec![
        plan(
            "health-pool",
            "health",
            "pool-water-quality",
            Domain::Pool,
            vec![Partner {
                department: Department::new("fire").expect("valid department"),
                item: ItemId::new("pool-fire-safety").expect("valid item"),
            }],
        ),
        plan(
            "culture-game",
            "culture",
            "game-minors",
            Domain::Game,
            vec![],
        ),
    ]
}

//! Builders of draw inputs for the tests.

use spotcheck_collector::draw::{
    Candidate, Conflict, DrawInput, Parameters, PoolInspector, Quota, Stratum,
};
use spotcheck_collector::registry::model::{Department, DrawId, InspectorId, ItemId, RiskClass};
use spotcheck_collector::registry::CreditCode;

/// The `i`-th synthetic credit code: a Shenzhen (440300) enterprise code with a valid check.
pub fn code(i: u32) -> CreditCode {
    CreditCode::complete(&format!("91440300MA{i:07}")).expect("synthetic codes are valid")
}

/// Class letter by index.
pub fn class(i: usize) -> RiskClass {
    RiskClass::new(["A", "B", "C", "D"][i % 4]).unwrap()
}

/// Inspector `i`.
pub fn inspector(i: u32) -> PoolInspector {
    PoolInspector {
        id: InspectorId::new(format!("hb-{i:04}")).unwrap(),
        name: format!("检查员{i}"),
    }
}

/// Parameters with the given quotas for A, B, C, D.
pub fn parameters(quotas: [Quota; 4], per_entity: u32) -> Parameters {
    Parameters {
        draw_id: DrawId::new("2026-health-pool-b1").unwrap(),
        department: Department::new("health").unwrap(),
        item: ItemId::new("pool-water-quality").unwrap(),
        inspectors_per_entity: per_entity,
        strata: quotas
            .into_iter()
            .enumerate()
            .map(|(i, quota)| Stratum {
                class: class(i),
                quota,
            })
            .collect(),
    }
}

/// An input with `classes[i]` as the class of candidate i, `pool` inspectors and the given
/// (candidate, inspector) conflicts.
pub fn input(
    classes: &[usize],
    pool: u32,
    conflicts: &[(u32, u32)],
    quotas: [Quota; 4],
    per_entity: u32,
) -> DrawInput {
    DrawInput::new(
        parameters(quotas, per_entity),
        classes
            .iter()
            .enumerate()
            .map(|(i, &c)| Candidate {
                code: code(i as u32),
                class: class(c),
            })
            .collect(),
        (0..pool).map(inspector).collect(),
        conflicts
            .iter()
            .map(|&(e, i)| Conflict {
                entity: code(e),
                inspector: inspector(i).id,
            })
            .collect(),
    )
    .expect("test inputs are valid")
}

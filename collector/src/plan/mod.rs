//! Annual plans (年度抽查计划): per department and item, the sampling ratio of each risk class
//! (configuration, within configured ranges), batches with dates, partner departments of a
//! joint plan, and progress against the plan.
//!
//! - this file: the plan and its validation, and building a batch's draw input from the
//!   libraries;
//! - [`store`]: plans in the store (SQLite or PostgreSQL), progress, committing and revealing
//!   a batch's draw.

pub mod store;

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use spotcheck_protocol::Domain;

use crate::draw::{
    Candidate, Conflict, DrawError, DrawInput, Parameters, PoolInspector, Quota, Stratum,
};
use crate::registry::model::{Department, DrawId, Entity, Inspector, ItemId, RiskClass};
use crate::registry::CreditCode;

/// A calendar date, `YYYY-MM-DD` (ordered as text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlanDate(String);

impl PlanDate {
    /// Parses `YYYY-MM-DD` with a plausible month and day.
    pub fn new(s: &str) -> Result<PlanDate, String> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && digits(0..4)
            && digits(5..7)
            && digits(8..10)
            && (1..=12).contains(&s[5..7].parse::<u32>().unwrap_or(0))
            && (1..=31).contains(&s[8..10].parse::<u32>().unwrap_or(0));
        if ok {
            Ok(PlanDate(s.to_owned()))
        } else {
            Err(format!("{s:?} is not a date; write YYYY-MM-DD"))
        }
    }

    /// The date as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PlanDate {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PlanDate::new(&s)
    }
}

impl From<PlanDate> for String {
    fn from(d: PlanDate) -> String {
        d.0
    }
}

/// The sampling ratio of one risk class, in basis points, and the range it must stay in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRatio {
    /// The class.
    pub class: RiskClass,
    /// Lowest allowed ratio.
    pub min_bp: u32,
    /// Highest allowed ratio.
    pub max_bp: u32,
    /// The ratio this plan uses.
    pub ratio_bp: u32,
}

impl ClassRatio {
    /// The default ranges of one county's published ratios: A ≤ 5 %, B 5–20 %, C 21–60 %,
    /// D 61–100 %, each at its lower bound (A at 5 %).
    pub fn defaults() -> Vec<ClassRatio> {
        let ranges = [
            (0, 500, 500),
            (500, 2000, 500),
            (2100, 6000, 2100),
            (6100, 10_000, 6100),
        ];
        RiskClass::defaults()
            .into_iter()
            .zip(ranges)
            .map(|(class, (min_bp, max_bp, ratio_bp))| ClassRatio {
                class,
                min_bp,
                max_bp,
                ratio_bp,
            })
            .collect()
    }
}

impl ClassRatio {
    /// How many of a class of `population` candidates the plan draws in its year: the ratio
    /// rounded to the nearest entity (halves up), then kept inside the class's allowed range
    /// — never above `max_bp` (so "A ≤ 5 %" holds for the year), and not below `min_bp`
    /// where the range allows it.
    pub fn annual_target(&self, population: u64) -> u64 {
        let of = |bp: u32| u128::from(population) * u128::from(bp);
        let nearest = ((of(self.ratio_bp) + 5_000) / 10_000) as u64;
        let ceiling = (of(self.max_bp) / 10_000) as u64;
        let floor = of(self.min_bp).div_ceil(10_000) as u64;
        nearest.max(floor.min(ceiling)).min(ceiling)
    }
}

/// What batch `k` (1-based) of `n` draws of a class whose annual target is `target`, when
/// earlier batches drew `drawn` of it: the cumulative share ⌈target · k / n⌉ less what was
/// drawn. Remainders go to the earlier batches, the last batch completes the target, and no
/// batch takes a class past it.
pub fn batch_share(target: u64, k: u64, n: u64, drawn: u64) -> u64 {
    let k = k.min(n).max(1);
    (u128::from(target) * u128::from(k))
        .div_ceil(u128::from(n.max(1)))
        .saturating_sub(u128::from(drawn)) as u64
}

/// A batch of a plan: one draw, one inspection window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Short label, e.g. `b1` (part of the draw id).
    pub label: String,
    /// First day of the inspection window.
    pub start: PlanDate,
    /// Last day.
    pub end: PlanDate,
}

/// A partner of a joint plan: another department inspecting its own item at the same visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// The department.
    pub department: Department,
    /// Its item.
    pub item: ItemId,
}

/// An annual plan of one department and item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Id, e.g. `2026-health-pool` (draw ids are `{id}-{batch}`).
    pub id: DrawId,
    /// The year.
    pub year: u16,
    /// The initiating department (it draws the entities and its inspectors).
    pub department: Department,
    /// The item.
    pub item: ItemId,
    /// Candidates are the library's entities of this domain …
    pub domain: Domain,
    /// … and, if set, of this district.
    #[serde(default)]
    pub district: Option<String>,
    /// Ratios per class, in draw order.
    pub ratios: Vec<ClassRatio>,
    /// Inspectors per entity.
    #[serde(default = "two")]
    pub inspectors_per_entity: u32,
    /// The batches.
    pub batches: Vec<Batch>,
    /// Departments joining the inspections (a joint plan, 部门联合抽查).
    #[serde(default)]
    pub partners: Vec<Partner>,
}

fn two() -> u32 {
    2
}

/// Every problem of a plan at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan {plan} is invalid: {}", problems.join("; "))]
pub struct PlanError {
    /// The plan.
    pub plan: String,
    /// What is wrong.
    pub problems: Vec<String>,
}

impl Plan {
    /// Checks what serde cannot, reporting every problem.
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut p = Vec::new();
        let mut classes = HashSet::new();
        for r in &self.ratios {
            if !classes.insert(&r.class) {
                p.push(format!("class {} is listed twice", r.class));
            }
            if r.min_bp > r.max_bp || r.max_bp > 10_000 {
                p.push(format!(
                    "class {}: range {}–{} bp is not within 0–10000 bp",
                    r.class, r.min_bp, r.max_bp
                ));
            }
            if r.ratio_bp < r.min_bp || r.ratio_bp > r.max_bp {
                p.push(format!(
                    "class {}: ratio {} bp is outside its range {}–{} bp",
                    r.class, r.ratio_bp, r.min_bp, r.max_bp
                ));
            }
        }
        if self.inspectors_per_entity < 2 {
            p.push("inspectors_per_entity must be at least 2".into());
        }
        let mut labels = HashSet::new();
        for b in &self.batches {
            let valid = !b.label.is_empty()
                && b.label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid {
                p.push(format!("batch label {:?} must be a-z and 0-9", b.label));
            }
            if !labels.insert(&b.label) {
                p.push(format!("batch {} is listed twice", b.label));
            }
            if b.start > b.end {
                p.push(format!(
                    "batch {} ends ({}) before it starts ({})",
                    b.label, b.end, b.start
                ));
            }
            if !b.start.as_str().starts_with(&self.year.to_string()) {
                p.push(format!("batch {} starts outside {}", b.label, self.year));
            }
        }
        if self.batches.is_empty() {
            p.push("a plan needs at least one batch".into());
        }
        if self
            .partners
            .iter()
            .any(|x| x.department == self.department)
        {
            p.push("a partner must be another department".into());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(PlanError {
                plan: self.id.to_string(),
                problems: p,
            })
        }
    }

    /// The batch labelled `label`.
    pub fn batch(&self, label: &str) -> Option<&Batch> {
        self.batches.iter().find(|b| b.label == label)
    }

    /// The draw id of a batch.
    pub fn draw_id(&self, batch: &Batch) -> Result<DrawId, DrawError> {
        DrawId::new(format!("{}-{}", self.id, batch.label))
            .map_err(|e| DrawError::Input(e.to_string()))
    }

    /// Whether `e` is a candidate of this plan.
    pub fn is_candidate(&self, e: &Entity) -> bool {
        e.domain == self.domain && self.district.as_ref().is_none_or(|d| &e.district == d)
    }

    /// The draw input of `batch`: the plan's candidates except those drawn in earlier
    /// batches (`already_drawn`), the department's active inspectors in the plan's field, and
    /// their conflicts. Each class draws the batch's share of its annual target
    /// ([`ClassRatio::annual_target`], [`batch_share`]), so no batch can push a class past
    /// the plan's ratio for the year.
    pub fn draw_input(
        &self,
        batch: &Batch,
        entities: &[Entity],
        inspectors: &[Inspector],
        already_drawn: &HashSet<CreditCode>,
    ) -> Result<DrawInput, DrawError> {
        let candidates = entities
            .iter()
            .filter(|e| self.is_candidate(e))
            .map(|e| Candidate {
                code: e.code.clone(),
                class: e.risk.clone(),
            })
            .collect();
        self.draw_input_over(batch, candidates, inspectors, already_drawn)
    }

    /// [`Plan::draw_input`] given the plan's candidates instead of the whole entity library:
    /// the code and class of every entity [`Plan::is_candidate`] accepts, drawn before or not
    /// (the classes' populations count them all). The store reads just these two columns of
    /// just these entities (at a million entities, reading the library with every column was
    /// a seventh of a draw's commit and reveal: BENCHMARKS.md, issue 17).
    pub fn draw_input_over(
        &self,
        batch: &Batch,
        plan_candidates: Vec<Candidate>,
        inspectors: &[Inspector],
        already_drawn: &HashSet<CreditCode>,
    ) -> Result<DrawInput, DrawError> {
        let position = self
            .batches
            .iter()
            .position(|b| b.label == batch.label)
            .ok_or_else(|| {
                DrawError::Input(format!("batch {} is not in plan {}", batch.label, self.id))
            })?;
        let strata = self
            .ratios
            .iter()
            .map(|r| {
                let (mut population, mut drawn) = (0u64, 0u64);
                for c in plan_candidates.iter().filter(|c| c.class == r.class) {
                    population += 1;
                    drawn += u64::from(already_drawn.contains(&c.code));
                }
                let target = r.annual_target(population);
                Stratum {
                    class: r.class.clone(),
                    quota: Quota::Count(batch_share(
                        target,
                        position as u64 + 1,
                        self.batches.len() as u64,
                        drawn,
                    )),
                }
            })
            .collect();
        let candidates = plan_candidates
            .into_iter()
            .filter(|c| !already_drawn.contains(&c.code))
            .collect();
        let pool: Vec<&Inspector> = inspectors
            .iter()
            .filter(|i| {
                i.active && i.department == self.department && i.fields.contains(&self.domain)
            })
            .collect();
        let conflicts = pool
            .iter()
            .flat_map(|i| {
                i.conflicts.iter().map(|c| Conflict {
                    entity: c.clone(),
                    inspector: i.id.clone(),
                })
            })
            .collect();
        let parameters = Parameters {
            draw_id: self.draw_id(batch)?,
            department: self.department.clone(),
            item: self.item.clone(),
            inspectors_per_entity: self.inspectors_per_entity,
            strata,
        };
        let pool = pool
            .into_iter()
            .map(|i| PoolInspector {
                id: i.id.clone(),
                name: i.name.clone(),
            })
            .collect();
        DrawInput::new(parameters, candidates, pool, conflicts)
    }
}

impl Plan {
    /// The draw id of partner `department`'s inspector draw in `batch`:
    /// `{plan}-{batch}-{department}`.
    pub fn partner_draw_id(
        &self,
        batch: &Batch,
        department: &Department,
    ) -> Result<DrawId, DrawError> {
        DrawId::new(format!("{}-{}-{department}", self.id, batch.label))
            .map_err(|e| DrawError::Input(e.to_string()))
    }

    /// The input of partner `partner`'s inspector draw in `batch` over `candidates`: every
    /// candidate is taken (one stratum per class, its whole count), and each gets
    /// `inspectors_per_entity` active inspectors of the partner's own department and field,
    /// none with a conflict. At the commit `candidates` are the joint draw's candidates (so
    /// the pool and the conflicts are fixed); at the reveal, the entities it drew.
    pub fn partner_input(
        &self,
        partner: &Partner,
        batch: &Batch,
        candidates: &[Candidate],
        inspectors: &[Inspector],
    ) -> Result<DrawInput, DrawError> {
        let strata =
            self.ratios
                .iter()
                .map(|r| Stratum {
                    class: r.class.clone(),
                    quota: Quota::Count(
                        candidates.iter().filter(|c| c.class == r.class).count() as u64
                    ),
                })
                .collect();
        let pool: Vec<&Inspector> = inspectors
            .iter()
            .filter(|i| {
                i.active && i.department == partner.department && i.fields.contains(&self.domain)
            })
            .collect();
        let conflicts = pool
            .iter()
            .flat_map(|i| {
                i.conflicts.iter().map(|c| Conflict {
                    entity: c.clone(),
                    inspector: i.id.clone(),
                })
            })
            .collect();
        let parameters = Parameters {
            draw_id: self.partner_draw_id(batch, &partner.department)?,
            department: partner.department.clone(),
            item: partner.item.clone(),
            inspectors_per_entity: self.inspectors_per_entity,
            strata,
        };
        let pool = pool
            .into_iter()
            .map(|i| PoolInspector {
                id: i.id.clone(),
                name: i.name.clone(),
            })
            .collect();
        DrawInput::new(parameters, candidates.to_vec(), pool, conflicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
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
                end: PlanDate::new("2026-03-31").unwrap(),
            }],
            partners: vec![],
        }
    }

    #[test]
    fn the_default_plan_is_valid() {
        plan().validate().unwrap();
    }

    #[test]
    fn every_problem_of_a_plan_is_reported_at_once() {
        let mut p = plan();
        p.ratios[0].ratio_bp = 600;
        p.inspectors_per_entity = 1;
        p.batches[0].end = PlanDate::new("2026-02-01").unwrap();
        let e = p.validate().unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
        assert!(
            e.to_string()
                .contains("ratio 600 bp is outside its range 0–500 bp"),
            "{e}"
        );
    }

    #[test]
    fn an_annual_target_never_exceeds_the_class_maximum() {
        let a = &ClassRatio::defaults()[0]; // A: 0–5 %, at 5 %
        assert_eq!(
            a.annual_target(30),
            1,
            "1.5 rounds up to 2 = 6.7 %, above 5 %"
        );
        assert_eq!(a.annual_target(100), 5);
        assert_eq!(a.annual_target(10), 0);
        let d = &ClassRatio::defaults()[3]; // D: 61–100 %, at 61 %
        assert_eq!(d.annual_target(10), 7, "6.1 rounds to 6 = 60 %, below 61 %");
    }

    #[test]
    fn batches_share_the_target_and_none_passes_it() {
        let shares: Vec<u64> = (1..=4)
            .scan(0, |drawn, k| {
                let s = batch_share(3, k, 4, *drawn);
                *drawn += s;
                Some(s)
            })
            .collect();
        assert_eq!(shares, vec![1, 1, 1, 0]);
        assert_eq!(
            batch_share(3, 2, 4, 3),
            0,
            "drawn past the cumulative share"
        );
        assert_eq!(
            batch_share(10, 4, 4, 7),
            3,
            "the last batch completes the target"
        );
    }

    #[test]
    fn dates_must_be_iso() {
        assert!(PlanDate::new("2026-13-01").is_err());
        assert!(PlanDate::new("2026/01/01").is_err());
    }
}

//! Joint inspections (部门联合抽查, 进一次门、查多项事): tasks of several departments for the same
//! entity in overlapping windows become one joint task — one visit or remote session, many
//! items — while each department keeps its own result; and the joint-task quota of the
//! Nanshan 2020 plan.
//!
//! Quota rule (the seed document, §二(三)): a department with at most 100 random tasks a
//! year plans 10 % of them as joint tasks, at least one; a department with more plans the
//! average of those small departments' joint quotas, or 3–5 % of its own tasks. Ten per cent
//! is rounded up here (`ceil`), as are the 3 % and 5 % bounds and the average.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::plan::PlanDate;
use crate::registry::model::{Department, ItemId};
use crate::registry::CreditCode;

/// A task that may join others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id.
    pub id: i64,
    /// The entity.
    pub entity: CreditCode,
    /// The department.
    pub department: Department,
    /// The item.
    pub item: ItemId,
    /// First day of its window.
    pub start: PlanDate,
    /// Last day.
    pub end: PlanDate,
    /// Whether a draw made it (a random task): only those count toward the joint quota.
    pub drawn: bool,
}

/// Tasks done in one visit: at least two departments, and a window common to all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JointTask {
    /// The entity.
    pub entity: CreditCode,
    /// The common window: the latest start …
    pub start: PlanDate,
    /// … and the earliest end.
    pub end: PlanDate,
    /// The member tasks (each department records its own result on its own task).
    pub tasks: Vec<i64>,
    /// The departments taking part.
    pub departments: BTreeSet<Department>,
    /// The items checked.
    pub items: BTreeSet<ItemId>,
}

/// Merges tasks into joint tasks. Per entity, tasks are taken in (start, end, id) order and
/// grouped greedily while the group's common window stays non-empty; a group becomes a joint
/// task when it has at least two departments. Tasks left alone are not returned.
pub fn merge(tasks: &[Task]) -> Vec<JointTask> {
    let mut by_entity: BTreeMap<&CreditCode, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        by_entity.entry(&t.entity).or_default().push(t);
    }
    let mut out = Vec::new();
    for (entity, mut list) in by_entity {
        list.sort_by(|a, b| (&a.start, &a.end, a.id).cmp(&(&b.start, &b.end, b.id)));
        let mut group: Vec<&Task> = Vec::new();
        let mut window: Option<(&PlanDate, &PlanDate)> = None;
        for t in list {
            match window {
                Some((s, e)) if t.start <= *e => {
                    window = Some((s.max(&t.start), e.min(&t.end)));
                    group.push(t);
                }
                _ => {
                    flush(entity, &group, window, &mut out);
                    group = vec![t];
                    window = Some((&t.start, &t.end));
                }
            }
        }
        flush(entity, &group, window, &mut out);
    }
    out
}

fn flush(
    entity: &CreditCode,
    group: &[&Task],
    window: Option<(&PlanDate, &PlanDate)>,
    out: &mut Vec<JointTask>,
) {
    let departments: BTreeSet<Department> = group.iter().map(|t| t.department.clone()).collect();
    if let (true, Some((start, end))) = (departments.len() >= 2, window) {
        out.push(JointTask {
            entity: entity.clone(),
            start: start.clone(),
            end: end.clone(),
            tasks: group.iter().map(|t| t.id).collect(),
            departments,
            items: group.iter().map(|t| t.item.clone()).collect(),
        });
    }
}

/// A department's joint-task quota for the year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// The department.
    pub department: Department,
    /// Its random tasks in the year.
    pub random_tasks: u64,
    /// The least number of joint tasks that meets the rule.
    pub required: u64,
    /// How the rule reads for it.
    pub rule: String,
    /// Joint tasks it has (planned or merged).
    pub joint_tasks: u64,
    /// Whether `joint_tasks ≥ required`.
    pub met: bool,
}

/// The quota of every department, given its random tasks and its joint tasks.
pub fn quotas(random: &BTreeMap<Department, u64>, joint: &BTreeMap<Department, u64>) -> Vec<Quota> {
    let small = |n: u64| if n == 0 { 0 } else { n.div_ceil(10).max(1) };
    let small_quotas: Vec<u64> = random
        .values()
        .filter(|&&n| n <= 100)
        .map(|&n| small(n))
        .collect();
    let average = (!small_quotas.is_empty()).then(|| {
        small_quotas
            .iter()
            .sum::<u64>()
            .div_ceil(small_quotas.len() as u64)
    });
    random
        .iter()
        .map(|(department, &n)| {
            let (required, rule) = if n <= 100 {
                (small(n), format!("≤ 100 random tasks: 10 % of {n}, at least 1"))
            } else {
                let (lo, hi) = ((n * 3).div_ceil(100), (n * 5).div_ceil(100));
                match average {
                    Some(avg) => (
                        avg.min(lo),
                        format!("> 100 random tasks: the small departments' average ({avg}) or 3–5 % of {n} ({lo}–{hi})"),
                    ),
                    None => (lo, format!("> 100 random tasks: 3–5 % of {n} ({lo}–{hi})")),
                }
            };
            let joint_tasks = joint.get(department).copied().unwrap_or(0);
            Quota {
                department: department.clone(),
                random_tasks: n,
                required,
                rule,
                joint_tasks,
                met: joint_tasks >= required,
            }
        })
        .collect()
}

/// Each department's quota in `year`, over the tasks drawn (random tasks) whose window starts
/// in that year: anomaly and referral tasks are not random tasks and count for nothing, and
/// only joint tasks made of drawn tasks count as joint.
pub fn year_quotas(tasks: &[Task], year: u16) -> Vec<Quota> {
    let prefix = format!("{year:04}-");
    let drawn: Vec<Task> = tasks
        .iter()
        .filter(|t| t.drawn && t.start.as_str().starts_with(&prefix))
        .cloned()
        .collect();
    let mut random: BTreeMap<Department, u64> = BTreeMap::new();
    for t in &drawn {
        *random.entry(t.department.clone()).or_default() += 1;
    }
    quotas(&random, &joint_per_department(&merge(&drawn)))
}

/// The quota of every department over the annual plans: a plan's planned entities count as
/// random tasks of its department and of each partner, and as joint tasks of all of them
/// when the plan has partners. `plans` pairs each plan with its planned entities.
pub fn plan_quotas(plans: &[(crate::plan::Plan, u64)]) -> Vec<Quota> {
    let mut random: BTreeMap<Department, u64> = BTreeMap::new();
    let mut joint: BTreeMap<Department, u64> = BTreeMap::new();
    for (plan, planned) in plans {
        let departments =
            std::iter::once(&plan.department).chain(plan.partners.iter().map(|p| &p.department));
        for d in departments {
            *random.entry(d.clone()).or_default() += planned;
            if !plan.partners.is_empty() {
                *joint.entry(d.clone()).or_default() += planned;
            }
        }
    }
    quotas(&random, &joint)
}

/// Joint tasks per department.
pub fn joint_per_department(joint: &[JointTask]) -> BTreeMap<Department, u64> {
    let mut out = BTreeMap::new();
    for j in joint {
        for d in &j.departments {
            *out.entry(d.clone()).or_default() += 1;
        }
    }
    out
}

/// Every task in the store of an entity of the library, as a [`Task`] (read by the tasks
/// module, which owns the table).
pub fn stored_tasks(
    conn: &(impl crate::store::db::Sql + ?Sized),
) -> Result<Vec<Task>, crate::tasks::TaskError> {
    crate::tasks::store::scheduled(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: i64, entity: u32, dept: &str, start: &str, end: &str) -> Task {
        Task {
            id,
            entity: CreditCode::complete(&format!("91440300MA{entity:07}")).unwrap(),
            department: Department::new(dept).unwrap(),
            item: ItemId::new(format!("{dept}-item")).unwrap(),
            start: PlanDate::new(start).unwrap(),
            end: PlanDate::new(end).unwrap(),
            drawn: true,
        }
    }

    #[test]
    fn tasks_of_two_departments_in_overlapping_windows_merge() {
        let tasks = [
            task(1, 1, "health", "2026-03-01", "2026-03-31"),
            task(2, 1, "culture", "2026-03-15", "2026-04-15"),
            task(3, 1, "health", "2026-06-01", "2026-06-30"),
            task(4, 2, "health", "2026-03-01", "2026-03-31"),
        ];
        let joint = merge(&tasks);
        assert_eq!(joint.len(), 1);
        assert_eq!(joint[0].tasks, vec![1, 2]);
        assert_eq!(joint[0].start.as_str(), "2026-03-15");
        assert_eq!(joint[0].end.as_str(), "2026-03-31");
    }

    #[test]
    fn one_department_alone_makes_no_joint_task() {
        let tasks = [
            task(1, 1, "health", "2026-03-01", "2026-03-31"),
            task(2, 1, "health", "2026-03-10", "2026-03-20"),
        ];
        assert!(merge(&tasks).is_empty());
    }

    #[test]
    fn a_joint_plan_counts_for_its_department_and_its_partners() {
        let plan = |id: &str, dept: &str, partners: Vec<crate::plan::Partner>| crate::plan::Plan {
            id: crate::registry::model::DrawId::new(id).unwrap(),
            year: 2026,
            department: Department::new(dept).unwrap(),
            item: ItemId::new(format!("{dept}-item")).unwrap(),
            domain: spotcheck_protocol::Domain::Pool,
            district: None,
            ratios: crate::plan::ClassRatio::defaults(),
            inspectors_per_entity: 2,
            batches: vec![],
            partners,
        };
        let fire = crate::plan::Partner {
            department: Department::new("fire").unwrap(),
            item: ItemId::new("pool-fire-safety").unwrap(),
        };
        let plans = [
            plan("2026-health-pool", "health", vec![fire]),
            plan("2026-culture-game", "culture", vec![]),
        ];
        let q = plan_quotas(&[(plans[0].clone(), 30), (plans[1].clone(), 12)]);
        let by: BTreeMap<_, _> = q
            .iter()
            .map(|q| {
                (
                    q.department.as_str(),
                    (q.random_tasks, q.joint_tasks, q.met),
                )
            })
            .collect();
        assert_eq!(by["health"], (30, 30, true));
        assert_eq!(by["fire"], (30, 30, true));
        assert_eq!(by["culture"], (12, 0, false));
    }

    #[test]
    fn only_drawn_tasks_of_the_year_count_toward_the_quota() {
        let mut referral = task(9, 3, "culture", "2026-05-01", "2026-05-31");
        referral.drawn = false;
        let tasks = [
            task(1, 1, "culture", "2026-03-01", "2026-03-31"),
            task(2, 2, "culture", "2025-03-01", "2025-03-31"),
            referral,
        ];
        let q = year_quotas(&tasks, 2026);
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].random_tasks, q[0].required), (1, 1));
    }

    #[test]
    fn the_quota_follows_the_nanshan_rule() {
        let d = |s: &str| Department::new(s).unwrap();
        let random = BTreeMap::from([(d("culture"), 35), (d("fire"), 5), (d("health"), 400)]);
        let joint = BTreeMap::from([(d("culture"), 4), (d("health"), 3)]);
        let q = quotas(&random, &joint);
        // culture: ceil(3.5) = 4; fire: at least 1; health: min(avg(4, 1) = 3, 3 % of 400 = 12).
        assert_eq!(
            q.iter().map(|q| q.required).collect::<Vec<_>>(),
            vec![4, 1, 3]
        );
        assert_eq!(
            q.iter().map(|q| q.met).collect::<Vec<_>>(),
            vec![true, false, true]
        );
    }
}

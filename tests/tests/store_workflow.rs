//! The workflow (plans, draws, tasks, checks, results, publication, joint inspections, the
//! queue and the report's figures) on both store engines: the same calls on a SQLite store
//! and on a PostgreSQL store give the same answers, down to the bytes of the draw records.
//! Needs PostgreSQL (skipped without it unless `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::collections::BTreeSet;
use std::fmt::Debug;

use spotcheck_collector::check::{self, Decider, Decision};
use spotcheck_collector::draw::store as draws;
use spotcheck_collector::draw::{files, verify};
use spotcheck_collector::joint;
use spotcheck_collector::plan::store as plans;
use spotcheck_collector::plan::{Batch, ClassRatio, Partner, Plan, PlanDate};
use spotcheck_collector::registry::model::{Department, DrawId, InspectorId, ItemId};
use spotcheck_collector::registry::CreditCode;
use spotcheck_collector::report::{self, Period};
use spotcheck_collector::results::{self, Category, Deadline, PublicFilter};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::rules::ChinaDay;
use spotcheck_collector::store::db::{args, Conn, Sql};
use spotcheck_collector::tasks::store as tasks;
use spotcheck_collector::tasks::{TaskFilter, TaskId};
use spotcheck_collector::views::queue::{self, QueueQuery, Sort};
use spotcheck_collector::views::{changes, Scope};
use spotcheck_e2e::postgres::{both, Both};
use spotcheck_protocol::{Domain, UnixMillis};

/// 2026-03-02 08:00 China time: inside the plans' first batch.
const NOW: i64 = 1_772_409_600_000;
const HOUR: i64 = 3_600_000;

/// Asserts that SQLite's answer (`a`) and PostgreSQL's (`b`) are the same.
fn same<T: PartialEq + Debug>(what: &str, a: &T, b: &T) {
    assert_eq!(a, b, "{what}: SQLite (left) and PostgreSQL (right) differ");
}

/// `f` on each engine, SQLite first.
fn each<T>(b: &Both, mut f: impl FnMut(&Conn) -> T) -> (T, T) {
    let [s, p] = b.each();
    (f(s), f(p))
}

fn code(i: u32) -> CreditCode {
    CreditCode::complete(&format!("91440300MA{i:07}")).unwrap()
}

/// The pool entities: 40, risk classes A–D in turn.
fn pools() -> Vec<CreditCode> {
    (0..40).map(code).collect()
}

/// The libraries, as an import would leave them: the pool item (rule pack `pool`) of
/// health and the fire safety item of fire; 40 pools; three health inspectors of the pool
/// field (one with a conflict), one inactive and one of another field; four fire inspectors.
fn libraries(c: &Conn) {
    for (id, name, department, pack) in [
        (
            "pool-water-quality",
            "游泳场所水质卫生",
            "health",
            Some("pool"),
        ),
        ("pool-fire-safety", "游泳场所消防安全", "fire", None),
    ] {
        c.execute(
            "INSERT INTO registry_items (id, name, department, legal_basis, kind, method, rule_pack)
             VALUES ($1, $2, $3, 'GB 37488-2019', '\"general\"', '\"both\"', $4)",
            args![id, name, department, pack],
        )
        .unwrap();
    }
    for (i, code) in pools().iter().enumerate() {
        c.execute(
            "INSERT INTO registry_entities (code, name, domain, district, address, contact, risk, agents)
             VALUES ($1, $2, 'pool', '南山区', '某路', '某人', $3, '[]')",
            args![
                code.as_str(),
                format!("南山游泳馆{i:02}有限公司"),
                ["A", "B", "C", "D"][i % 4]
            ],
        )
        .unwrap();
    }
    let conflict = serde_json::to_string(&[pools()[3].as_str()]).unwrap();
    for (id, department, fields, active, conflicts) in [
        ("hb-001", "health", "[\"pool\"]", 1, conflict.as_str()),
        ("hb-002", "health", "[\"pool\"]", 1, "[]"),
        ("hb-003", "health", "[\"pool\"]", 1, "[]"),
        ("hb-004", "health", "[\"pool\"]", 0, "[]"),
        ("hb-005", "health", "[\"hospital\"]", 1, "[]"),
        ("fd-001", "fire", "[\"pool\"]", 1, "[]"),
        ("fd-002", "fire", "[\"pool\"]", 1, "[]"),
        ("fd-003", "fire", "[\"pool\"]", 1, "[]"),
        ("fd-004", "fire", "[\"pool\"]", 1, "[]"),
    ] {
        c.execute(
            "INSERT INTO registry_inspectors (id, name, certificate, department, fields, active, conflicts)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![
                id,
                format!("检查员{id}"),
                format!("CERT-{id}"),
                department,
                fields,
                active,
                conflicts
            ],
        )
        .unwrap();
    }
}

/// A joint plan of health with fire, and a plan of health alone, over the pools.
fn the_plans() -> Vec<Plan> {
    let plan = |id: &str, partners: Vec<Partner>| Plan {
        id: DrawId::new(id).unwrap(),
        year: 2026,
        department: Department::new("health").unwrap(),
        item: ItemId::new("pool-water-quality").unwrap(),
        domain: Domain::Pool,
        district: None,
        ratios: ClassRatio::defaults(),
        inspectors_per_entity: 2,
        batches: vec![
            Batch {
                label: "b1".into(),
                start: PlanDate::new("2026-03-01").unwrap(),
                end: PlanDate::new("2026-04-30").unwrap(),
            },
            Batch {
                label: "b2".into(),
                start: PlanDate::new("2026-09-01").unwrap(),
                end: PlanDate::new("2026-10-31").unwrap(),
            },
        ],
        partners,
    };
    vec![
        plan(
            "2026-health-pool",
            vec![Partner {
                department: Department::new("fire").unwrap(),
                item: ItemId::new("pool-fire-safety").unwrap(),
            }],
        ),
        plan("2026-health-solo", vec![]),
    ]
}

/// Commits batch b1 of every plan on both engines and gives PostgreSQL's draws SQLite's seeds
/// and salt keys (a commitment draws them at random), so that the reveals must agree.
fn commit_with_the_same_seeds(sqlite: &Conn, postgres: &Conn) {
    for p in the_plans() {
        let [s, q] = [sqlite, postgres].map(|c| {
            plans::save(c, &p).unwrap();
            plans::commit_batch(c, p.id.as_str(), "b1", NOW - HOUR).unwrap()
        });
        assert_eq!(s.parameters, q.parameters);
        assert_eq!(s.digests.parameters, q.digests.parameters);
        assert_eq!(s.digests.inspectors, q.digests.inspectors);
        let id = format!("{}-b1", p.id);
        let row = sqlite
            .query_row(
                "SELECT commitment, digests, seed, salt_key, partners FROM draws WHERE id = $1",
                args![id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<String>(3)?,
                        r.get::<Option<String>>(4)?,
                    ))
                },
            )
            .unwrap();
        let n = postgres
            .execute(
                "UPDATE draws SET commitment = $1, digests = $2, seed = $3, salt_key = $4,
                                  partners = $5 WHERE id = $6",
                args![row.0, row.1, row.2, row.3, row.4, id],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

fn all_tasks(c: &Conn) -> Vec<spotcheck_collector::tasks::Task> {
    tasks::list(
        c,
        &TaskFilter {
            limit: 10_000,
            ..TaskFilter::default()
        },
    )
    .unwrap()
}

/// The stored records, by draw id, as the text the store holds.
fn stored_records(c: &Conn) -> Vec<(String, Option<String>)> {
    c.query("SELECT id, record FROM draws ORDER BY id", args![], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

#[test]
fn draws_give_the_same_records_tasks_teams_and_replacements_on_both_engines() {
    let Some(b) = both("workflow_draws") else {
        return;
    };
    each(&b, libraries);
    commit_with_the_same_seeds(&b.sqlite, &b.postgres);
    same(
        "commitments",
        &draws::commitments(&b.sqlite, 10).unwrap(),
        &draws::commitments(&b.postgres, 10).unwrap(),
    );

    // The reveals: the same record, byte for byte, the same tasks and teams.
    for p in the_plans() {
        let (s, q) = each(&b, |c| {
            plans::reveal_batch(c, p.id.as_str(), "b1", NOW).unwrap()
        });
        assert!(verify(&s).is_empty(), "the record verifies");
        same(&format!("record of {}", p.id), &s, &q);
    }
    let (s, q) = each(&b, stored_records);
    assert_eq!(s, q, "the stored records");
    assert_eq!(s.len(), 3, "two draws and the fire department's own: {s:?}");
    let (ts, tq) = each(&b, all_tasks);
    same("tasks", &ts, &tq);
    assert!(ts
        .iter()
        .any(|t| t.kind() == spotcheck_collector::tasks::TaskKind::Joint
            && t.department.as_str() == "fire"));
    assert!(ts
        .iter()
        .any(|t| t.kind() == spotcheck_collector::tasks::TaskKind::Random));
    // The files rendered from the store are the same bytes.
    let ids: Vec<String> = s.iter().map(|r| r.0.clone()).collect();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (fs, fq) = (
        files::refresh(&b.sqlite, dirs.0.path(), &ids).unwrap(),
        files::refresh(&b.postgres, dirs.1.path(), &ids).unwrap(),
    );
    assert_eq!(fs.len(), 3);
    for (a, z) in fs.iter().zip(&fq) {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(z).unwrap(),
            "{a:?}"
        );
    }
    same(
        "draws of the joint plan",
        &draws::ids_of_plan(&b.sqlite, "2026-health-pool", "2026-health-pool-b1").unwrap(),
        &draws::ids_of_plan(&b.postgres, "2026-health-pool", "2026-health-pool-b1").unwrap(),
    );

    // A recusal: with three health inspectors in the pool, two on the team, the replacement
    // is the third on both engines, and it takes the recused inspector's place on the task.
    let record = draws::record(&b.sqlite, "2026-health-pool-b1")
        .unwrap()
        .unwrap();
    // Not the pool one inspector is in conflict with: there, nobody would be left.
    let team = record
        .draws
        .iter()
        .find(|a| a.entity != pools()[3])
        .unwrap();
    let (rs, rq) = each(&b, |c| {
        draws::recuse(c, "2026-health-pool-b1", &team.entity, &team.inspectors[0]).unwrap()
    });
    assert_eq!(
        (&rs.entity, &rs.recused, &rs.replacement),
        (&rq.entity, &rq.recused, &rq.replacement)
    );
    assert!(!team.inspectors.contains(&rs.replacement));
    for c in b.each() {
        let after = draws::record(c, "2026-health-pool-b1").unwrap().unwrap();
        assert!(
            verify(&after).is_empty(),
            "the record verifies after the recusal"
        );
        assert_eq!(after.replacements.len(), 1);
    }
    let (ts, tq) = each(&b, all_tasks);
    same("tasks after the recusal", &ts, &tq);
    let task = ts
        .iter()
        .find(|t| {
            t.entity.as_str() == team.entity.as_str()
                && t.kind.draw().map(DrawId::as_str) == Some("2026-health-pool-b1")
        })
        .unwrap();
    assert!(task.inspectors.contains(&rs.replacement));
    assert!(!task.inspectors.contains(&rs.recused));
    // A replacement already on the task leaves the row it would replace (SQLite's `UPDATE OR
    // IGNORE`, said the same way on both).
    let (on, other) = (&task.inspectors[0], &task.inspectors[1]);
    for c in b.each() {
        let tx = c.transaction().unwrap();
        tasks::replace_inspector(
            &tx,
            "2026-health-pool-b1",
            task.entity.as_str(),
            on.as_str(),
            other.as_str(),
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(tasks::get(c, task.id).unwrap().inspectors, task.inspectors);
    }
    // An inspector not on the team cannot recuse.
    let stranger = InspectorId::new("fd-001").unwrap();
    let (es, eq) = each(&b, |c| {
        draws::recuse(c, "2026-health-pool-b1", &team.entity, &stranger)
            .unwrap_err()
            .to_string()
    });
    assert_eq!(es, eq);

    // Joint inspections and quotas, plan progress.
    let (js, jq) = each(&b, |c| joint::stored_tasks(c).unwrap());
    same("scheduled tasks", &js, &jq);
    same("joint tasks", &joint::merge(&js), &joint::merge(&jq));
    same(
        "quotas",
        &joint::year_quotas(&js, 2026),
        &joint::year_quotas(&jq, 2026),
    );
    assert!(
        !joint::merge(&js).is_empty(),
        "the joint plan made joint tasks"
    );
    for p in the_plans() {
        let (s, q) = each(&b, |c| {
            plans::progress(c, &plans::plan(c, p.id.as_str()).unwrap()).unwrap()
        });
        same(&format!("progress of {}", p.id), &s, &q);
        assert!(s.drawn > 0 && s.batches_drawn == 1, "{s:?}");
    }
    same(
        "plans",
        &plans::plans(&b.sqlite).unwrap(),
        &plans::plans(&b.postgres).unwrap(),
    );

    // The second batch draws none of the first batch's entities, on both engines alike.
    for p in the_plans() {
        each(&b, |c| {
            plans::commit_batch(c, p.id.as_str(), "b2", NOW).unwrap()
        });
    }
    let (s, q) = each(&b, |c| {
        let all = draws::commitments(c, 10).unwrap();
        all.into_iter().map(|c| c.parameters).collect::<Vec<_>>()
    });
    same("second batches' parameters", &s, &q);
}

#[test]
fn tasks_checks_results_and_publication_answer_the_same_on_both_engines() {
    let Some(b) = both("workflow_tasks") else {
        return;
    };
    each(&b, libraries);
    let book = Rulebook::load(None).unwrap();
    let (rules, calendar) = (book.rules(), book.calendar());
    each(&b, |c| book.record_active(c, UnixMillis(NOW)).unwrap());
    let packs = |c: &Conn| -> Vec<(String, String, String)> {
        c.query(
            "SELECT hash, pack, domain FROM rule_packs ORDER BY hash",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let (s, q) = each(&b, packs);
    assert_eq!(s, q);
    assert!(!s.is_empty());

    // A referral, refused and then entered.
    let pool = pools()[5].to_string();
    let referral = |reason| tasks::NewReferral {
        entity: &pool,
        department: "health",
        item: "pool-water-quality",
        reason,
        entered_by: "user:1",
    };
    let (s, q) = each(&b, |c| {
        let wrong = tasks::NewReferral {
            item: "pool-fire-safety",
            ..referral("a complaint")
        };
        tasks::create_referral(c, &wrong, UnixMillis(NOW))
            .unwrap_err()
            .to_string()
    });
    assert_eq!(s, q);
    assert!(s.contains("belongs to department fire"), "{s}");
    let (ts, tq) = each(&b, |c| {
        tasks::create_referral(c, &referral("a complaint about the water"), UnixMillis(NOW))
            .unwrap()
    });
    same("the referral", &ts, &tq);
    let id = ts.id;

    // Assignment: every refusal the same, then two inspectors.
    for bad in [
        vec!["hb-002"],
        vec!["hb-002", "hb-004"],
        vec!["hb-002", "fd-001"],
        vec!["hb-002", "nobody"],
    ] {
        let bad: Vec<String> = bad.into_iter().map(String::from).collect();
        let (s, q) = each(&b, |c| {
            tasks::assign_checked(c, id, &bad, UnixMillis(NOW))
                .unwrap_err()
                .to_string()
        });
        assert_eq!(s, q, "{bad:?}");
    }
    let team = vec!["hb-003".to_string(), "hb-002".to_string()];
    let (s, q) = each(&b, |c| {
        tasks::assign_checked(c, id, &team, UnixMillis(NOW + 1)).unwrap()
    });
    same("the assigned task", &s, &q);
    assert_eq!(s.inspectors.len(), 2);

    // A remote check over a window without data: on-site check needed, on both.
    let window = Some((NOW - 24 * HOUR, NOW));
    let (cs, cq) = each(&b, |c| {
        check::run(c, &rules, &calendar, id, window, UnixMillis(NOW + 2)).unwrap()
    });
    same("the check", &cs, &cq);
    assert_eq!(cs.outcome, "cannot_verify");
    // Decisions: refusals, then an assigned inspector's override with a category.
    let accept = || Decision::Accept {
        result: None,
        comment: None,
    };
    for (by, decision) in [
        (Decider::Inspector("hb-001".into()), accept()),
        (Decider::Bureau("user:1".into()), accept()),
        (Decider::Inspector("hb-002".into()), accept()),
    ] {
        let (s, q) = each(&b, |c| {
            check::decide(c, cs.id.0, &by, decision.clone(), UnixMillis(NOW + 3))
                .unwrap_err()
                .to_string()
        });
        assert_eq!(s, q);
    }
    let (s, q) = each(&b, |c| {
        check::decide(
            c,
            cs.id.0,
            &Decider::Inspector("hb-002".into()),
            Decision::Override {
                result: Category::Corrected,
                reason: "on site: the chlorine dosing pump was repaired".into(),
            },
            UnixMillis(NOW + 4),
        )
        .unwrap()
    });
    same("the decided check", &s, &q);
    let (s, q) = each(&b, |c| check::of_task(c, id).unwrap());
    same("the task's checks", &s, &q);

    // An anomaly task (opened by ingest's rule engine; here by hand): acknowledged, resolved.
    let anomaly = each(&b, |c| {
        c.query_row(
            "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
                                rule, severity, opened_ms, detail, updated_ms)
             VALUES ('anomaly', $1, 'health', 'pool-water-quality', '2026-03-02', '2026-03-02',
                     'open', 'pool/free_chlorine', 'high', $2, 'free chlorine 0.1 mg/L', $2)
             RETURNING id",
            args![pools()[6].as_str(), NOW - HOUR],
            |r| r.get::<i64>(0),
        )
        .unwrap()
    });
    assert_eq!(anomaly.0, anomaly.1);
    let anomaly = TaskId(anomaly.0);
    let (s, q) = each(&b, |c| {
        tasks::acknowledge(c, anomaly, "user:1", UnixMillis(NOW + 5)).unwrap()
    });
    same("the acknowledged anomaly", &s, &q);
    let (s, q) = each(&b, |c| {
        tasks::resolve(
            c,
            anomaly,
            Category::Corrected,
            "",
            "user:1",
            UnixMillis(NOW + 6),
        )
        .unwrap_err()
        .to_string()
    });
    assert_eq!(s, q);
    let (s, q) = each(&b, |c| {
        tasks::resolve(
            c,
            anomaly,
            Category::Corrected,
            "the operator corrected the dosing",
            "user:1",
            UnixMillis(NOW + 6),
        )
        .unwrap()
    });
    same("the resolved anomaly", &s, &q);
    let (s, q) = each(&b, |c| tasks::notes(c, anomaly).unwrap());
    same("the anomaly's notes", &s, &q);

    // Publication: the deadline list, a refusal that publishes nothing, then both tasks.
    let deadline = Deadline { days: 20 };
    let (s, q) = each(&b, |c| {
        results::pending_publication(c, deadline, UnixMillis(NOW + 7)).unwrap()
    });
    same("pending publication", &s, &q);
    assert_eq!(s.len(), 2);
    let (s, q) = each(&b, |c| {
        results::publish(c, &[id.0, anomaly.0, 999], UnixMillis(NOW + 8))
            .unwrap_err()
            .to_string()
    });
    assert_eq!(s, q);
    let (s, q) = each(&b, |c| {
        results::publish(c, &[id.0, anomaly.0, id.0], UnixMillis(NOW + 9)).unwrap()
    });
    same("published", &s, &q);
    assert_eq!(s.len(), 2);
    let (s, q) = each(&b, |c| {
        results::public_results(c, &PublicFilter::default()).unwrap()
    });
    same("the public feed", &s, &q);
    assert_eq!(s.len(), 2);
    for filter in [
        PublicFilter {
            domain: Some("pool".into()),
            limit: Some(1),
            ..PublicFilter::default()
        },
        PublicFilter {
            entity: Some(pool.clone()),
            since_ms: Some(NOW),
            until_ms: Some(NOW + 10),
            ..PublicFilter::default()
        },
        PublicFilter {
            department: Some("fire".into()),
            ..PublicFilter::default()
        },
    ] {
        let (s, q) = each(&b, |c| results::public_results(c, &filter).unwrap());
        same(&format!("the public feed for {filter:?}"), &s, &q);
    }
    // The same changes made the same audit chain, entry for entry.
    let (s, q) = each(&b, |c| spotcheck_collector::audit::head(c).unwrap());
    assert_eq!(s, q, "the audit heads");
}

#[test]
fn the_queue_figures_and_report_answer_the_same_on_both_engines() {
    let Some(b) = both("workflow_queue") else {
        return;
    };
    each(&b, libraries);
    let book = Rulebook::load(None).unwrap();
    each(&b, |c| book.record_active(c, UnixMillis(NOW)).unwrap());
    commit_with_the_same_seeds(&b.sqlite, &b.postgres);
    for p in the_plans() {
        each(&b, |c| {
            plans::reveal_batch(c, p.id.as_str(), "b1", NOW).unwrap();
        });
    }
    // Anomalies of every severity, one acknowledged, and a referral (the drawn tasks have no
    // severity); the entity of one is no credit code (an agent's own entity id).
    for (i, (entity, severity, status)) in [
        (pools()[1].to_string(), Some("critical"), "open"),
        (pools()[2].to_string(), Some("high"), "open"),
        (
            "pool-agent-entity".to_string(),
            Some("medium"),
            "acknowledged",
        ),
        (pools()[9].to_string(), Some("low"), "open"),
        (pools()[9].to_string(), Some("low"), "open"),
    ]
    .into_iter()
    .enumerate()
    {
        each(&b, |c| {
            c.execute(
                "INSERT INTO tasks (kind, entity, department, item, window_start, window_end,
                                    status, rule, severity, opened_ms, updated_ms)
                 VALUES ('anomaly', $1, 'health', 'pool-water-quality', '2026-03-02',
                         '2026-03-02', $2, $3, $4, $5, $5)",
                args![
                    entity,
                    status,
                    format!("pool/rule{i}"),
                    severity,
                    NOW + i as i64
                ],
            )
            .unwrap();
        });
    }
    let seventh = pools()[7].to_string();
    let referral = tasks::NewReferral {
        entity: &seventh,
        department: "health",
        item: "pool-water-quality",
        reason: "a complaint",
        entered_by: "user:1",
    };
    let (r, _) = each(&b, |c| {
        tasks::create_referral(c, &referral, UnixMillis(NOW + 10)).unwrap()
    });
    // The low one acknowledged (ids: the five anomalies, then the referral).
    each(&b, |c| {
        tasks::acknowledge(c, TaskId(r.id.0 - 2), "user:1", UnixMillis(NOW + 11)).unwrap()
    });

    // The queue: every order, scopes, filters, pages.
    let code_part = pools()[9].as_str()[4..12].to_owned();
    let name_part = "游泳馆07".to_owned();
    let mut queries = Vec::new();
    for sort in [
        Sort::Newest,
        Sort::Oldest,
        Sort::Severity,
        Sort::Updated,
        Sort::Entity,
        Sort::Status,
    ] {
        queries.push(QueueQuery {
            sort,
            limit: 7,
            offset: 2,
            ..QueueQuery::default()
        });
    }
    queries.push(QueueQuery {
        kinds: vec!["anomaly".parse().unwrap(), "referral".parse().unwrap()],
        statuses: vec!["open".parse().unwrap()],
        limit: 100,
        ..QueueQuery::default()
    });
    queries.push(QueueQuery {
        severities: vec!["critical".parse().unwrap(), "high".parse().unwrap()],
        department: Some("health".into()),
        item: Some("pool-water-quality".into()),
        limit: 100,
        ..QueueQuery::default()
    });
    for entity in [
        code_part,
        name_part,
        "游泳馆".to_owned(),
        "nothing".to_owned(),
    ] {
        queries.push(QueueQuery {
            entity: Some(entity),
            since_day: Some("2026-03-01".into()),
            until_day: Some("2026-03-31".into()),
            limit: 100,
            ..QueueQuery::default()
        });
    }
    let scopes = [
        Scope::All,
        Scope::Department("fire".into()),
        Scope::Inspector("hb-002".into()),
    ];
    for scope in &scopes {
        for q in &queries {
            let (s, p) = each(&b, |c| queue::page(c, scope, q).unwrap());
            assert_eq!(s, p, "{scope:?} {q:?}");
        }
        let (s, p) = each(&b, |c| queue::counts(c, scope).unwrap());
        same(&format!("counts for {scope:?}"), &s, &p);
    }
    let (s, _) = each(&b, |c| queue::counts(c, &Scope::All).unwrap());
    assert_eq!((s.open_critical, s.open_high), (1, 1), "{s:?}");
    let (s, p) = each(&b, |c| {
        queue::page(
            c,
            &Scope::All,
            &QueueQuery {
                entity: Some("游泳馆07".into()),
                limit: 100,
                ..QueueQuery::default()
            },
        )
        .unwrap()
    });
    assert_eq!(s, p);
    assert!(
        s.total >= 1,
        "a part of the registered name finds the referral"
    );
    let (s, p) = each(&b, |c| {
        queue::names(c, pools()[7].as_str(), "pool-water-quality").unwrap()
    });
    same("names", &s, &p);

    // What changed, for the live console.
    let (ms, mp) = each(&b, |c| changes::marker(c).unwrap());
    assert_eq!(ms, mp, "the change markers");
    let (s, p) = each(&b, |c| {
        changes::changed(c, &changes::Marker::default()).unwrap()
    });
    assert_eq!(s, p);
    let (s, p) = each(&b, |c| {
        tasks::acknowledge(c, TaskId(r.id.0 - 4), "user:1", UnixMillis(NOW + 12)).unwrap();
        changes::changed(c, &ms).unwrap()
    });
    assert_eq!(s, p);
    assert_eq!(s, vec![TaskId(r.id.0 - 4)]);

    // The report's figures over the period, per department.
    let period = Period::days(
        ChinaDay::from_ymd(2026, 3, 1).unwrap(),
        ChinaDay::from_ymd(2026, 3, 8).unwrap(),
    );
    let (s, p) = each(&b, |c| {
        report::build(c, &period, 20, UnixMillis(NOW + 13)).unwrap()
    });
    same("the report", &s, &p);
    let departments: BTreeSet<&str> = s
        .departments
        .iter()
        .map(|d| d.department.as_str())
        .collect();
    assert!(departments.contains("health") && departments.contains("fire"));
    same(
        "the report as CSV",
        &report::to_csv(&s),
        &report::to_csv(&p),
    );
    let (s, p) = each(&b, |c| {
        spotcheck_collector::tasks::figures::ack_times(c, "health", period.range()).unwrap()
    });
    assert_eq!(s, p);
    assert_eq!(s.len(), 2);
}

/// `f` on two new connections to PostgreSQL at once (two collectors sharing the store),
/// released together; their answers, in thread order.
fn at_once<T: Send>(
    url: &spotcheck_collector::store::db::DbUrl,
    f: impl Fn(&Conn) -> T + Sync,
) -> Vec<T> {
    use spotcheck_collector::store::db::{connect, Mode};
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let c = connect(url, Mode::Write).unwrap();
                    start.wait();
                    f(&c)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[test]
fn two_collectors_revealing_deciding_or_publishing_at_once_take_turns_on_postgresql() {
    let Some(b) = both("workflow_turns") else {
        return;
    };
    let pg = &b.postgres;
    libraries(pg);
    let joint = &the_plans()[0];
    plans::save(pg, joint).unwrap();
    plans::commit_batch(pg, joint.id.as_str(), "b1", NOW - HOUR).unwrap();

    // One reveal draws; the other finds it revealed. One set of tasks.
    let revealed = at_once(&b.pg_url, |c| {
        plans::reveal_batch(c, joint.id.as_str(), "b1", NOW).map_err(|e| e.to_string())
    });
    let won: Vec<_> = revealed.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{revealed:?}");
    assert!(
        revealed
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.contains("already revealed"))),
        "{revealed:?}"
    );
    let tasks = all_tasks(pg);
    assert_eq!(
        tasks.len(),
        2 * won[0].draws.len(),
        "health's and fire's, once"
    );

    // A referral checked once; two inspectors decide on the verdict at once: one decision.
    let pool = pools()[5].to_string();
    let referral = tasks::NewReferral {
        entity: &pool,
        department: "health",
        item: "pool-water-quality",
        reason: "a complaint",
        entered_by: "user:1",
    };
    let id = tasks::create_referral(pg, &referral, UnixMillis(NOW))
        .unwrap()
        .id;
    let team = vec!["hb-002".to_string(), "hb-003".to_string()];
    tasks::assign_checked(pg, id, &team, UnixMillis(NOW)).unwrap();
    let (rules, calendar) = {
        let book = Rulebook::load(None).unwrap();
        (book.rules(), book.calendar())
    };
    let check = check::run(
        pg,
        &rules,
        &calendar,
        id,
        Some((NOW - HOUR, NOW)),
        UnixMillis(NOW),
    )
    .unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let decided = at_once(&b.pg_url, |c| {
        let who = team[n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)].clone();
        check::decide(
            c,
            check.id.0,
            &Decider::Inspector(who),
            Decision::Override {
                result: Category::NoProblem,
                reason: "on site: nothing found".into(),
            },
            UnixMillis(NOW + 1),
        )
        .map_err(|e| e.to_string())
    });
    assert_eq!(
        decided.iter().filter(|d| d.is_ok()).count(),
        1,
        "{decided:?}"
    );
    assert!(
        decided
            .iter()
            .any(|d| d.as_ref().is_err_and(|e| e.contains("already decided"))),
        "{decided:?}"
    );

    // Published once: the other publication is refused and publishes nothing.
    let published = at_once(&b.pg_url, |c| {
        results::publish(c, &[id.0], UnixMillis(NOW + 2)).map_err(|e| e.to_string())
    });
    assert_eq!(
        published.iter().filter(|p| p.is_ok()).count(),
        1,
        "{published:?}"
    );
    assert!(
        published
            .iter()
            .any(|p| p.as_ref().is_err_and(|e| e.contains("already published"))),
        "{published:?}"
    );
    // The audit chain took every change in turn.
    let report = spotcheck_collector::audit::verify_store(pg, None).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A SQLite store and a PostgreSQL database whose default collation is ICU's `en-US` (where
/// `a` sorts before `B`, and `-` and `_` weigh little), on a private server. Fields drop in
/// order: the connections before the server.
struct OtherCollation {
    sqlite: Conn,
    pg: Conn,
    _server: spotcheck_e2e::postgres::Postgres,
    _dir: tempfile::TempDir,
}

fn with_a_natural_language_collation(name: &str) -> Option<OtherCollation> {
    use spotcheck_collector::store::db::{connect, DbUrl, Mode};
    let dir = tempfile::tempdir().unwrap();
    let server = spotcheck_e2e::postgres::Postgres::start(dir.path())?;
    let admin = connect(&server.url("postgres").parse().unwrap(), Mode::Write).unwrap();
    admin
        .execute_batch(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.utf8'
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        ))
        .unwrap();
    drop(admin);
    let pg = connect(&server.url(name).parse().unwrap(), Mode::Write).unwrap();
    let sqlite_url: DbUrl = format!("sqlite://{}", dir.path().join("s.db").display())
        .parse()
        .unwrap();
    let sqlite = connect(&sqlite_url, Mode::Write).unwrap();
    Some(OtherCollation {
        sqlite,
        pg,
        _server: server,
        _dir: dir,
    })
}

#[test]
fn lists_in_text_order_are_in_sqlites_order_whatever_postgresqls_collation() {
    let Some(stores) = with_a_natural_language_collation("workflow_icu") else {
        return;
    };
    let (sqlite, pg) = (&stores.sqlite, &stores.pg);
    let order: Vec<String> = pg
        .query(
            "SELECT x FROM (VALUES ('b'), ('B'), ('a-z'), ('az')) AS t (x) ORDER BY x",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(
        order,
        ["B", "a-z", "az", "b"],
        "the database's collation is not byte order"
    );
    let entities = ["b-pool", "B-pool", "a_pool", "A-pool", "apool", "9-pool"];
    for c in [sqlite, pg] {
        for (i, e) in entities.iter().enumerate() {
            c.execute(
                "INSERT INTO tasks (kind, entity, department, item, window_start, window_end,
                                    status, rule, severity, opened_ms, updated_ms)
                 VALUES ('anomaly', $1, 'health', 'pool-water-quality', '2026-03-02',
                         '2026-03-02', 'open', 'pool/ph', 'high', $2, $2)",
                args![e, NOW + i as i64],
            )
            .unwrap();
        }
    }
    let q = QueueQuery {
        sort: Sort::Entity,
        limit: 4,
        offset: 1,
        ..QueueQuery::default()
    };
    let (s, p) = (
        queue::page(sqlite, &Scope::All, &q).unwrap(),
        queue::page(pg, &Scope::All, &q).unwrap(),
    );
    same("the queue by entity", &s, &p);
    // Plans and the report's departments too.
    for c in [sqlite, pg] {
        for id in ["2026-b", "2026-a-z", "2026-az"] {
            let mut plan = the_plans().remove(1);
            plan.id = DrawId::new(id).unwrap();
            plans::save(c, &plan).unwrap();
        }
        c.execute(
            "INSERT INTO registry_items (id, name, department, legal_basis, kind, method)
             VALUES ('x', 'x', 'sports-bureau', 'x', '\"general\"', '\"both\"'),
                    ('y', 'y', 'sports2', 'x', '\"general\"', '\"both\"')",
            args![],
        )
        .unwrap();
    }
    same(
        "plans",
        &plans::plans(sqlite).unwrap(),
        &plans::plans(pg).unwrap(),
    );
    same(
        "departments",
        &spotcheck_collector::tasks::figures::departments(sqlite).unwrap(),
        &spotcheck_collector::tasks::figures::departments(pg).unwrap(),
    );
    // Draws, whose inputs the libraries give in their collation's order on PostgreSQL.
    for c in [sqlite, pg] {
        libraries(c);
    }
    commit_with_the_same_seeds(sqlite, pg);
    for p in the_plans() {
        let [s, q] =
            [sqlite, pg].map(|c| plans::reveal_batch(c, p.id.as_str(), "b1", NOW).unwrap());
        same(&format!("record of {}", p.id), &s, &q);
    }
    assert_eq!(stored_records(sqlite), stored_records(pg));
    same("tasks", &all_tasks(sqlite), &all_tasks(pg));
}

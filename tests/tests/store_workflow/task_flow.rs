//! Tasks, checks, results, publication, the queue, figures and the report, the same on both engines.

use super::*;

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

//! Draws, recusals and text order, the same on both engines.

use super::*;

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

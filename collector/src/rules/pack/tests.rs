use std::path::Path;

use super::*;

const HEADER: &str = r#"[pack]
id = "pool"
domain = "pool"
title = "t"
sources = ["GB 37488-2019"]
expected_interval = "10m"
"#;

fn pool_with(rule: &str) -> String {
    format!("{HEADER}\n[[rule]]\nid = \"free_chlorine\"\ntitle = \"t\"\nseverity = \"high\"\nsource = \"s\"\n{rule}")
}

fn error_of(text: &str) -> String {
    parse_pack(text, "rules/pool.toml").unwrap_err().to_string()
}

#[test]
fn the_default_packs_parse_and_cover_every_domain() {
    let set = RuleSet::defaults();
    for d in Domain::ALL {
        let pack = set.get(d).unwrap_or_else(|| panic!("no pack for {d}"));
        assert_eq!(pack.domain, d);
        assert!(!pack.rules.is_empty());
        assert_eq!(pack.hash(), &PackHash::of(pack.text().as_bytes()));
        assert!(pack.origin().starts_with("rules/"));
    }
    let pool = set.get(Domain::Pool).unwrap();
    let fc = pool.rule(&RuleKey::new("pool", "free_chlorine")).unwrap();
    let RuleKind::Range(r) = &fc.kind else {
        panic!("free_chlorine is a range rule")
    };
    assert_eq!(
        r.allowed,
        Band {
            min: Some(0.3),
            max: Some(1.0)
        }
    );
    assert!(r.allowed.contains(0.3) && r.allowed.contains(1.0) && !r.allowed.contains(0.29));
    let game = set.get(Domain::Game).unwrap();
    assert_eq!(game.caps.from_8_to_16.unwrap().per_top_up_fen, 5_000);
    assert_eq!(game.caps.from_16_to_18.unwrap().per_month_fen, 40_000);
    assert_eq!(
        game.minor_play,
        crate::rules::predicate::MinorPlay::default()
    );
}

#[test]
fn every_predicate_is_used_by_a_default_pack() {
    let set = RuleSet::defaults();
    for p in Predicate::ALL {
        let used = set
            .packs()
            .flat_map(|pk| &pk.rules)
            .any(|r| matches!(&r.kind, RuleKind::Ratio(q) if q.predicate == p));
        assert!(used, "{p}");
    }
}

#[test]
fn the_pack_hash_changes_with_the_text() {
    let a = parse_pack(DEFAULT_POOL, "a").unwrap();
    let edited = DEFAULT_POOL.replace("max = 1.0", "max = 1.2");
    let b = parse_pack(&edited, "a").unwrap();
    assert_ne!(a.hash(), b.hash());
    assert_eq!(a.hash(), parse_pack(DEFAULT_POOL, "b").unwrap().hash());
    assert_eq!(a.hash().as_str().len(), 64);
}

#[test]
fn with_pack_replaces_only_its_domain() {
    let edited = DEFAULT_POOL.replace("max = 1.0", "max = 1.2");
    let set = RuleSet::defaults().with_pack(parse_pack(&edited, "custom/pool.toml").unwrap());
    assert_eq!(set.get(Domain::Pool).unwrap().origin(), "custom/pool.toml");
    assert_eq!(set.get(Domain::Game).unwrap().origin(), "rules/game.toml");
    assert_eq!(set.by_id("hospital").unwrap().domain, Domain::Hospital);
}

#[test]
fn integers_are_accepted_where_numbers_are_expected() {
    let pack = parse_pack(
        &pool_with("kind = \"range\"\nmetric = \"orp\"\nunit = \"mV\"\nmin = 650\n"),
        "x",
    )
    .unwrap();
    let RuleKind::Range(r) = &pack.rules[0].kind else {
        panic!()
    };
    assert_eq!(r.allowed.min, Some(650.0));
    assert_eq!(r.clear, r.allowed);
}

#[test]
fn min_above_max_is_rejected_with_its_line_and_column() {
    let text = pool_with(
        "kind = \"range\"\nmetric = \"free_chlorine\"\nunit = \"mg/L\"\nmin = 1.2\nmax = 1.0\n",
    );
    let err = error_of(&text);
    assert_eq!(
        err,
        "rules/pool.toml:16:7: rule \"free_chlorine\": min 1.2 is above max 1.0"
    );
}

#[test]
fn an_unknown_field_is_rejected() {
    let err = error_of(&pool_with(
        "kind = \"range\"\nmetric = \"ph\"\nunit = \"pH\"\nmin = 7.0\nmaximum = 7.8\n",
    ));
    assert!(err.starts_with("rules/pool.toml:17:1:"), "{err}");
    assert!(err.contains("unknown field `maximum`"), "{err}");
    let err = error_of(&format!("{HEADER}colour = \"blue\"\n"));
    assert!(err.starts_with("rules/pool.toml:7:"), "{err}");
}

#[test]
fn a_field_of_another_kind_is_rejected() {
    let err = error_of(&pool_with(
        "kind = \"range\"\nmetric = \"ph\"\nunit = \"pH\"\nmin = 7.0\nwindow = \"1h\"\n",
    ));
    assert!(err.starts_with("rules/pool.toml:17:10:"), "{err}");
    assert!(
        err.contains("field `window` does not apply to kind range"),
        "{err}"
    );
}

#[test]
fn an_unknown_predicate_is_rejected() {
    let text = r#"[pack]
id = "game"
domain = "game"
title = "t"
sources = []
expected_interval = "1h"

[[rule]]
id = "r"
title = "t"
severity = "low"
source = "s"
kind = "ratio"
event = "game_session"
predicate = "bad_vibes"
window = "1h"
max_share = 0.0
"#;
    let err = error_of(text);
    assert!(
        err.starts_with("rules/pool.toml:15:13: rule \"r\": predicate \"bad_vibes\" is unknown"),
        "{err}"
    );
    assert!(err.contains("guest"), "{err}");
    let wrong_kind = text.replace("bad_vibes", "stand_in");
    assert!(error_of(&wrong_kind).contains("applies to consultation records, not game_session"));
    let wrong_domain = text
        .replace("game_session", "prescription")
        .replace("bad_vibes", "ai_generated");
    assert!(error_of(&wrong_domain).contains("belong to the hospital domain, not game"));
    let clear_above = text
        .replace("bad_vibes", "guest")
        .replace("max_share = 0.0", "max_share = 0.1\nclear_share = 0.2");
    assert!(error_of(&clear_above).contains("clear_share 0.2 is above max_share 0.1"));
}

#[test]
fn a_bad_duration_is_rejected() {
    let err = error_of(&pool_with(
        "kind = \"range\"\nmetric = \"ph\"\nunit = \"pH\"\nmin = 7.0\nfor = \"ten minutes\"\n",
    ));
    assert!(err.starts_with("rules/pool.toml:17:7:"), "{err}");
    assert!(err.contains("duration \"ten minutes\" is invalid"), "{err}");
    let err = error_of(&HEADER.replace("\"10m\"", "\"10\""));
    assert!(
        err.starts_with("rules/pool.toml:6:21: expected_interval"),
        "{err}"
    );
}

#[test]
fn a_metric_with_the_wrong_unit_is_rejected() {
    let err = error_of(&pool_with(
        "kind = \"range\"\nmetric = \"free_chlorine\"\nunit = \"mV\"\nmax = 1.0\n",
    ));
    assert_eq!(err, "rules/pool.toml:15:8: rule \"free_chlorine\": metric free_chlorine is measured in mg/L, not mV");
    let err = error_of(&pool_with(
        "kind = \"range\"\nmetric = \"free_chlorine\"\nunit = \"furlongs\"\nmax = 1.0\n",
    ));
    assert!(err.contains("unit \"furlongs\" is unknown"), "{err}");
}

#[test]
fn a_clear_band_outside_the_allowed_band_is_rejected() {
    let base =
        "kind = \"range\"\nmetric = \"free_chlorine\"\nunit = \"mg/L\"\nmin = 0.3\nmax = 1.0\n";
    let err = error_of(&pool_with(&format!("{base}clear_min = 0.25\n")));
    assert!(err.starts_with("rules/pool.toml:18:13:"), "{err}");
    assert!(
        err.contains("clear_min 0.25 lies outside the allowed band 0.3–1.0"),
        "{err}"
    );
    let err = error_of(&pool_with(&format!("{base}clear_max = 1.1\n")));
    assert!(err.contains("clear_max 1.1 lies outside"), "{err}");
    let err = error_of(&pool_with(&format!(
        "{base}clear_min = 0.8\nclear_max = 0.5\n"
    )));
    assert!(
        err.contains("clear_min 0.8 is above clear_max 0.5"),
        "{err}"
    );
    let err = error_of(&pool_with(
        "kind = \"range\"\nmetric = \"turbidity\"\nunit = \"NTU\"\nmax = 1.0\nclear_min = 0.1\n",
    ));
    assert!(
        err.contains("clear_min is given but the rule has no min"),
        "{err}"
    );
}

#[test]
fn other_mistakes_are_named() {
    assert!(
        error_of(&pool_with("kind = \"threshold\"\n")).contains("kind \"threshold\" is unknown")
    );
    assert!(
        error_of(&pool_with("kind = \"range\"\nunit = \"pH\"\nmin = 1\n"))
            .contains("kind range needs `metric`")
    );
    assert!(
        error_of(&pool_with("kind = \"inactivity\"\nafter = \"0s\"\n"))
            .contains("after must be longer than 0")
    );
    let sev =
        pool_with("kind = \"inactivity\"\nafter = \"1h\"\n").replace("\"high\"", "\"urgent\"");
    assert!(error_of(&sev).contains("severity \"urgent\" is unknown"));
    let twice = format!("{}\n[[rule]]\nid = \"free_chlorine\"\ntitle = \"t\"\nseverity = \"low\"\nsource = \"s\"\nkind = \"inactivity\"\nafter = \"1h\"\n", pool_with("kind = \"inactivity\"\nafter = \"1h\"\n"));
    assert!(error_of(&twice).contains("used twice"));
    assert!(error_of("[pack\n").starts_with("rules/pool.toml:1:"));
    let no_caps = DEFAULT_GAME.replace(
        "[[spending_cap]]\nage_band = \"under_8\"\nper_top_up_fen = 0\nper_month_fen = 0\n",
        "",
    );
    assert!(error_of(&no_caps).contains("needs [[spending_cap]] entries"));
}

#[test]
fn a_missing_file_says_which() {
    let err = load_pack(Path::new("/nonexistent/pool.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent/pool.toml: cannot read the file"),
        "{err}"
    );
}

#[test]
fn a_pack_loads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.toml");
    std::fs::write(&path, DEFAULT_POOL).unwrap();
    let pack = load_pack(&path).unwrap();
    assert_eq!(pack.text(), DEFAULT_POOL);
    assert_eq!(pack.origin(), path.display().to_string());
}

#[test]
fn rule_keys_parse() {
    assert_eq!(RuleKey::parse("pool/ph"), Some(RuleKey::new("pool", "ph")));
    assert_eq!(RuleKey::parse("pool/ph").unwrap().pack(), "pool");
    for bad in ["pool", "/ph", "pool/", "a/b/c"] {
        assert_eq!(RuleKey::parse(bad), None, "{bad}");
    }
}

const RANGE: &str =
    "kind = \"range\"\nmetric = \"free_chlorine\"\nunit = \"mg/L\"\nmin = 0.3\nmax = 1.0\n";

#[test]
fn chinese_titles_are_parsed_for_the_pack_and_its_rules() {
    let text = pool_with(&format!("title_zh = \"游离性余氯 0.3–1.0 mg/L\"\n{RANGE}")).replace(
        "title = \"t\"\nsources",
        "title = \"t\"\ntitle_zh = \"  公共游泳池水质  \"\nsources",
    );
    let pack = parse_pack(&text, "rules/pool.toml").unwrap();
    assert_eq!(pack.title_zh.as_deref(), Some("公共游泳池水质"));
    assert_eq!(pack.chinese_title(), "公共游泳池水质");
    let rule = &pack.rules[0];
    assert_eq!(rule.title_zh.as_deref(), Some("游离性余氯 0.3–1.0 mg/L"));
    assert_eq!(rule.chinese_title(), "游离性余氯 0.3–1.0 mg/L");
    assert_eq!(rule.title, "t");
}

#[test]
fn a_pack_without_chinese_titles_loads_and_falls_back_to_english() {
    let pack = parse_pack(&pool_with(RANGE), "rules/pool.toml").unwrap();
    assert_eq!(pack.title_zh, None);
    assert_eq!(pack.chinese_title(), "t");
    assert_eq!(pack.rules[0].title_zh, None);
    assert_eq!(pack.rules[0].chinese_title(), "t");
}

#[test]
fn an_empty_chinese_title_is_rejected_with_its_line_and_column() {
    let err = error_of(&pool_with(&format!("title_zh = \"\"\n{RANGE}")));
    assert_eq!(
        err,
        "rules/pool.toml:13:12: rule \"free_chlorine\": title_zh is empty; give the Chinese title or leave the key out (the English title is then shown)"
    );
    let blank = pool_with(RANGE).replace(
        "title = \"t\"\nsources",
        "title = \"t\"\ntitle_zh = \"  \"\nsources",
    );
    let err = error_of(&blank);
    assert!(
        err.starts_with("rules/pool.toml:5:12: pack title_zh is empty;"),
        "{err}"
    );
}

#[test]
fn a_misspelt_chinese_title_key_is_still_an_unknown_field() {
    let err = error_of(&pool_with(&format!("title_cn = \"余氯\"\n{RANGE}")));
    assert!(err.starts_with("rules/pool.toml:13:1:"), "{err}");
    assert!(err.contains("unknown field `title_cn`"), "{err}");
}

#[test]
fn every_shipped_pack_and_rule_has_a_chinese_title() {
    for pack in RuleSet::defaults().packs() {
        let zh = pack
            .title_zh
            .as_deref()
            .unwrap_or_else(|| panic!("{}", pack.id));
        assert!(
            zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{zh}"
        );
        for r in &pack.rules {
            let zh = r.title_zh.as_deref().unwrap_or_else(|| panic!("{}", r.key));
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{}: {zh}",
                r.key
            );
            assert_ne!(zh, r.title, "{}", r.key);
        }
    }
}

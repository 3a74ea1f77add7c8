//! Users, tokens, sessions, agent credentials, contacts and the command line, on both engines.

use super::*;

#[test]
fn users_passwords_sessions_and_tokens_answer_the_same_on_both() {
    let Some(b) = both("people") else { return };
    let [s, p] = b.each().map(people);
    assert!(s.len() > 10);
    for (a, b) in s.iter().zip(&p) {
        assert_eq!(a, b);
    }
    assert_eq!(s.len(), p.len());
}

#[test]
fn agent_credentials_and_liaison_officers_answer_the_same_on_both() {
    let Some(b) = both("credentials") else { return };
    let [s, p] = b.each().map(agent_credentials);
    assert_eq!(s, p);
    let [s, p] = b.each().map(liaison_officers);
    assert_eq!(s, p);
    assert!(s[0].contains("李强") && !s[0].contains("王芳"), "{}", s[0]);
}

#[test]
fn the_command_line_opens_a_postgresql_store_given_with_store() {
    let Some(b) = both("cli") else { return };
    // No password in the test server's URL, so its display is the URL itself.
    let url = b.pg_url.to_string();
    let ok = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", url.as_str()]);
        let (code, out, err) = cli(&all);
        assert_eq!(code, 0, "{all:?}: {err}");
        out
    };
    assert!(ok(&["users", "add", "carol", "--role", "auditor"]).contains("user carol created"));
    let token = ok(&["tokens", "issue", "carol", "--name", "export"]);
    let secret = token.lines().nth(1).unwrap().trim().to_owned();
    assert!(ok(&["agents", "add", "pool-01"]).contains("key = "));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("entities.csv");
    let rows: Vec<String> = (0..700).map(entity_row).collect();
    std::fs::write(&file, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    let file = file.to_str().unwrap();
    assert!(ok(&["registry", "import", "--kind", "entities", file]).contains("imported 700 row(s)"));
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("{HEADER}\n{}\n{}\n", entity_row(800), entity_row(800)),
    )
    .unwrap();
    let (code, _, err) = cli(&[
        "registry",
        "import",
        "--kind",
        "entities",
        "--dry-run",
        "--store",
        &url,
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 3: code:") && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(ok(&["audit", "verify"]).starts_with("ok: 4 entries"));
    assert_eq!(ok(&["audit", "export"]).lines().count(), 4);
    assert!(ok(&["users", "list"]).contains("carol\tauditor"));
    assert!(ok(&["agents", "list"]).contains("pool-01\t1\t"));
    // What the commands wrote is in the store, as the store's functions read it.
    let c = &b.postgres;
    let carol = users::by_name(c, "carol").unwrap().unwrap();
    let (who, _) = secrets::authenticate(c, &secret, UnixMillis::now())
        .unwrap()
        .unwrap();
    assert_eq!(who.id, carol.id);
    assert_eq!(registry::entities(c).unwrap().len(), 700);
    assert_eq!(credentials::list(c).unwrap()[0].agent, "pool-01");
    let by: Vec<String> = audit::read_all(c)
        .unwrap()
        .0
        .iter()
        .map(|e| e.body.clone())
        .collect();
    // `users` and `tokens` act as `cli` (the other commands as `system`, as before).
    assert!(
        by[..2].iter().all(|b| b.contains("\"by\":\"cli\"")),
        "{by:?}"
    );
    // A store that is not there is named in the refusal.
    let missing = dir.path().join("none.db");
    let (code, _, err) = cli(&[
        "users",
        "list",
        "--store",
        &format!("sqlite://{}", missing.display()),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no database at sqlite://"), "{err}");
}

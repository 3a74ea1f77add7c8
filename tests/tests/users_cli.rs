//! `spotcheck-collector users …` and `tokens …` on the data directory of a running collector:
//! a user added on the command line gets a token that works; disabling the user kills it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use spotcheck_e2e::api::{admin_token, get};
use spotcheck_e2e::*;

/// Runs the collector binary with `args` (and `stdin`) on the store of the collector whose
/// data directory is `data`; its standard output.
fn cli(args: &[&str], data: &Path, stdin: &str) -> String {
    let mut child = Command::new(bin("spotcheck-collector"))
        .args(args)
        .args(store::cli_args(data))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_cli_user_gets_a_working_token_until_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), None, "");
    let data = &c.data;
    let added = cli(
        &[
            "users",
            "add",
            "carol",
            "--role",
            "auditor",
            "--password-stdin",
        ],
        data,
        "carol's long password\n",
    );
    assert!(added.contains("user carol created"), "{added}");
    assert!(
        !added.contains("password:"),
        "a given password is not printed: {added}"
    );
    let issued = cli(
        &[
            "tokens", "issue", "carol", "--name", "export", "--days", "7",
        ],
        data,
        "",
    );
    let token = issued
        .lines()
        .find(|l| l.starts_with("spt_"))
        .unwrap_or_else(|| panic!("no token in {issued}"))
        .to_owned();
    let (status, _) = get(&c, "/api/v1/audit", Some(&token));
    assert_eq!(status, 200, "an auditor reads the audit log");

    let listed = cli(&["users", "list"], data, "");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("carol") && l.contains("auditor") && l.contains("active")),
        "{listed}"
    );
    cli(&["users", "disable", "carol"], data, "");
    let (status, _) = get(&c, "/api/v1/audit", Some(&token));
    assert_eq!(status, 401, "a disabled user's token is dead");
    cli(&["users", "enable", "carol"], data, "");
    let (status, _) = get(&c, "/api/v1/audit", Some(&token));
    assert_eq!(status, 401, "and stays dead when the user is enabled again");

    let (_, log) = get(&c, "/api/v1/audit", Some(&admin_token(&c.data)));
    let log = log.as_str().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("user_created") && l.contains(r#"\"by\":\"cli\""#)),
        "the CLI's changes are audited as the CLI's: {log}"
    );
}

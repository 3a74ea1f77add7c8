//! People, the registry and notifications on both store engines (`store::db`): users,
//! passwords, roles, sessions and tokens; agent credentials; a registry import with a bad row
//! and a bulk one; liaison officers; the notification outbox from an event to a delivered or
//! retried message; and on PostgreSQL two workers claiming the same messages. Each test runs
//! the same calls on a SQLite store and a PostgreSQL one and asserts the same answers. Needs
//! PostgreSQL (skipped without it unless `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Barrier};

use spotcheck_collector::audit::{self, EntryKind};
use spotcheck_collector::contacts::{self, NewContact};
use spotcheck_collector::notify::event::{emit, Event, EventKind};
use spotcheck_collector::notify::outbox::{self, NewMessage, OpenGroup, Outcome};
use spotcheck_collector::notify::scan::ScanSettings;
use spotcheck_collector::notify::{NotifyConfig, Worker};
use spotcheck_collector::registry::credentials::{self, CredentialError, Credentials, KeyLookup};
use spotcheck_collector::registry::import::CsvRows;
use spotcheck_collector::registry::parse::Kind;
use spotcheck_collector::registry::store::{self as registry, Imported};
use spotcheck_collector::store::db::{self, args, Conn, Mode, Sql};
use spotcheck_collector::users::store::{self as users, NewUser};
use spotcheck_collector::users::{secrets, Role, UserError};
use spotcheck_e2e::postgres::both;
use spotcheck_protocol::{AgentId, UnixMillis};

const T0: i64 = 1_800_000_000_000;

/// The kinds of every audit entry, after checking that the chain verifies.
fn audited(c: &Conn) -> Vec<EntryKind> {
    let report = audit::verify_store(c, None).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    audit::read_all(c)
        .unwrap()
        .0
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Users, passwords, roles, sessions and tokens, as a transcript of what each call answered
/// (secrets left out: they are random).
fn people(c: &Conn) -> Vec<String> {
    let mut seen = Vec::new();
    let mut note = |s: String| seen.push(s);
    let now = UnixMillis(T0);
    let admin = users::bootstrap_with(c, "spt_the-bootstrap-token", now).unwrap();
    note(format!("admin {admin:?}"));
    // The bootstrap again: the token is known, nothing changes.
    assert_eq!(
        users::bootstrap_with(c, "spt_the-bootstrap-token", now).unwrap(),
        admin
    );
    let carol = users::create(
        c,
        &NewUser {
            name: "carol",
            role: Some(Role::Auditor),
            password: Some("first password"),
            ..NewUser::default()
        },
        now,
    )
    .unwrap();
    note(format!("carol {carol:?}"));
    let again = users::create(
        c,
        &NewUser {
            name: "carol",
            role: Some(Role::Admin),
            ..NewUser::default()
        },
        now,
    );
    assert!(matches!(again, Err(UserError::Conflict(_))), "{again:?}");
    let no_department = users::create(
        c,
        &NewUser {
            name: "sam",
            role: Some(Role::Supervisor),
            ..NewUser::default()
        },
        now,
    );
    assert!(matches!(no_department, Err(UserError::Invalid(_))));
    let sup = users::create(
        c,
        &NewUser {
            name: "sam",
            role: Some(Role::Supervisor),
            department: Some("health"),
            ..NewUser::default()
        },
        now,
    )
    .unwrap();
    note(format!("sam {sup:?}"));
    let unknown_inspector = users::create(
        c,
        &NewUser {
            name: "ivan",
            role: Some(Role::Inspector),
            inspector: Some("hb-404"),
            ..NewUser::default()
        },
        now,
    );
    assert!(matches!(unknown_inspector, Err(UserError::NotFound(_))));

    // Passwords: the right one logs in, a changed one replaces it, an admin's is temporary.
    let check = |pw: &str| users::check_password(c, "carol", pw).unwrap().map(|u| u.id);
    assert_eq!(check("first password"), Some(carol.id));
    assert_eq!(check("wrong"), None);
    users::set_password(c, carol.id, "second password", UnixMillis(T0 + 1)).unwrap();
    assert_eq!(check("first password"), None);
    assert_eq!(check("second password"), Some(carol.id));
    users::set_temporary_password(c, sup.id, "chosen by the admin", UnixMillis(T0 + 2)).unwrap();
    let sup_now = users::get(c, sup.id).unwrap();
    assert!(sup_now.must_change_password && sup_now.has_password);
    note(format!("sam after {sup_now:?}"));

    // Tokens: issued, authenticated, listed, revoked once.
    let tx = c.transaction().unwrap();
    let (token, secret) = secrets::issue(&tx, carol.id, "export", 7, UnixMillis(T0 + 3)).unwrap();
    tx.commit().unwrap();
    note(format!("token {token:?}"));
    assert!(secret.starts_with(secrets::TOKEN_PREFIX));
    let (who, which) = secrets::authenticate(c, &secret, UnixMillis(T0 + 4))
        .unwrap()
        .unwrap();
    assert_eq!((who.id, which), (carol.id, token.id));
    assert!(
        secrets::authenticate(c, &secret, UnixMillis(T0 + 7 * 86_400_000 + 3))
            .unwrap()
            .is_none(),
        "expired"
    );
    note(format!(
        "carol's tokens {:?}",
        secrets::tokens(c, Some(carol.id)).unwrap()
    ));
    note(format!(
        "all tokens {:?}",
        secrets::tokens(c, None)
            .unwrap()
            .iter()
            .map(|t| (t.id, t.user))
            .collect::<Vec<_>>()
    ));
    let revoked = secrets::revoke(c, token.id, UnixMillis(T0 + 5)).unwrap();
    note(format!("revoked {revoked:?}"));
    assert!(matches!(
        secrets::revoke(c, token.id, UnixMillis(T0 + 6)),
        Err(UserError::Conflict(_))
    ));
    assert!(secrets::authenticate(c, &secret, UnixMillis(T0 + 6))
        .unwrap()
        .is_none());

    // Sessions: opened, found, closed once.
    let (cookie, session) =
        secrets::open_session(c, carol.id, 3_600_000, UnixMillis(T0 + 10)).unwrap();
    note(format!("session expires {}", session.expires_ms));
    let (u, s) = secrets::session(c, &cookie, UnixMillis(T0 + 11))
        .unwrap()
        .unwrap();
    assert_eq!((u.id, &s.csrf_token), (carol.id, &session.csrf_token));
    assert!(secrets::close_session(c, &cookie, UnixMillis(T0 + 12)).unwrap());
    assert!(!secrets::close_session(c, &cookie, UnixMillis(T0 + 13)).unwrap());
    assert!(secrets::session(c, &cookie, UnixMillis(T0 + 13))
        .unwrap()
        .is_none());

    // Disabling revokes the live tokens and ends the sessions; enabling revives neither.
    let tx = c.transaction().unwrap();
    let (live, live_secret) =
        secrets::issue(&tx, carol.id, "second", 30, UnixMillis(T0 + 20)).unwrap();
    tx.commit().unwrap();
    let (cookie, _) = secrets::open_session(c, carol.id, 3_600_000, UnixMillis(T0 + 21)).unwrap();
    let disabled = users::set_active(c, carol.id, false, UnixMillis(T0 + 22)).unwrap();
    note(format!("disabled {disabled:?}"));
    assert!(users::check_password(c, "carol", "second password")
        .unwrap()
        .is_none());
    let enabled = users::set_active(c, carol.id, true, UnixMillis(T0 + 23)).unwrap();
    assert!(enabled.active);
    assert!(secrets::authenticate(c, &live_secret, UnixMillis(T0 + 24))
        .unwrap()
        .is_none());
    assert!(secrets::session(c, &cookie, UnixMillis(T0 + 24))
        .unwrap()
        .is_none());
    note(format!(
        "live token now {:?}",
        secrets::token(c, live.id).unwrap()
    ));
    note(format!("users {:?}", users::list(c).unwrap()));
    note(format!("audit {:?}", audited(c)));
    seen
}

/// Agent credentials issued, rotated and revoked, and the live table read back.
fn agent_credentials(c: &Conn) -> Vec<String> {
    let mut seen = Vec::new();
    let a1 = AgentId::new("pool-01").unwrap();
    let a2 = AgentId::new("pool-02").unwrap();
    let first = credentials::add(c, &a1, UnixMillis(T0)).unwrap();
    assert!(matches!(
        credentials::add(c, &a1, UnixMillis(T0 + 1)),
        Err(CredentialError::Exists(_))
    ));
    assert!(matches!(
        credentials::rotate(c, &a2, UnixMillis(T0 + 1)),
        Err(CredentialError::Missing(_))
    ));
    let table = Credentials::load(c).unwrap();
    assert_eq!(table.key(&a1), KeyLookup::Current(first.key.clone()));
    assert!(table.check_password("pool-01", &first.password));
    let second = credentials::rotate(c, &a1, UnixMillis(T0 + 2)).unwrap();
    seen.push(format!("rotated {:?}", second.key.generation()));
    credentials::add(c, &a2, UnixMillis(T0 + 3)).unwrap();
    table.reload(c).unwrap();
    assert!(!table.check_password("pool-01", &first.password));
    assert!(table.check_password("pool-01", &second.password));
    assert_eq!(table.key(&a1), KeyLookup::Current(second.key.clone()));
    credentials::revoke(c, &a2, UnixMillis(T0 + 4)).unwrap();
    assert!(matches!(
        credentials::revoke(c, &a2, UnixMillis(T0 + 5)),
        Err(CredentialError::AlreadyRevoked(_))
    ));
    table.reload(c).unwrap();
    assert_eq!(table.key(&a2), KeyLookup::Revoked);
    assert_eq!(table.len(), 1);
    // A revoked credential is re-issued by a rotation.
    let third = credentials::rotate(c, &a2, UnixMillis(T0 + 6)).unwrap();
    table.reload(c).unwrap();
    assert!(table.check_password("pool-02", &third.password));
    seen.push(format!("list {:?}", credentials::list(c).unwrap()));
    seen.push(format!("audit {:?}", audited(c)));
    seen
}

/// Liaison officers replaced twice, with their history.
fn liaison_officers(c: &Conn) -> Vec<String> {
    let officer = |name: &str, email: &str| NewContact {
        name: name.into(),
        email: Some(email.into()),
        phone: None,
    };
    let mut seen = Vec::new();
    let a = contacts::replace(
        c,
        "health",
        &[officer("王芳", "wang@example.cn")],
        UnixMillis(T0),
    )
    .unwrap();
    let b = contacts::replace(
        c,
        "health",
        &[
            officer("王芳", "wang@example.cn"),
            officer("李强", "li@example.cn"),
        ],
        UnixMillis(T0 + 1),
    )
    .unwrap();
    assert_eq!(b[0].id, a[0].id, "an unchanged officer keeps their row");
    contacts::replace(
        c,
        "culture",
        &[NewContact {
            name: "赵敏".into(),
            email: None,
            phone: Some("13800000000".into()),
        }],
        UnixMillis(T0 + 2),
    )
    .unwrap();
    contacts::replace(
        c,
        "health",
        &[officer("李强", "li@example.cn")],
        UnixMillis(T0 + 3),
    )
    .unwrap();
    seen.push(format!("current {:?}", contacts::current(c, None).unwrap()));
    seen.push(format!(
        "health {:?}",
        contacts::current(c, Some("health")).unwrap()
    ));
    seen.push(format!(
        "history {:?}",
        contacts::history(c, "health").unwrap()
    ));
    seen.push(format!(
        "departments {:?}",
        spotcheck_collector::notify::known_departments(c).unwrap()
    ));
    seen
}

/// A valid entity row for credit code number `n` (the GB 32100 check character computed).
fn entity_row(n: usize) -> String {
    use spotcheck_collector::registry::credit_code::{check_character, ALPHABET};
    let mut first17 = *b"91440300000000000";
    let mut v = n;
    for i in (8..17).rev() {
        first17[i] = ALPHABET[v % 31];
        v /= 31;
    }
    let check = check_character(&first17).unwrap();
    let code = format!("{}{check}", std::str::from_utf8(&first17).unwrap());
    format!("{code},单位{n},pool,福田区,,,B,agent-{n}")
}

const HEADER: &str = "code,name,domain,district,address,contact,risk,agents";

fn import_csv(c: &Conn, kind: Kind, text: &str) -> Imported {
    let rows = CsvRows::new(text.as_bytes(), "file.csv".into()).unwrap();
    registry::import(Some(c), None, kind, rows).unwrap()
}

/// Imports with a bad row (refused with every problem, nothing written), then good files:
/// entities (more than one multi-row statement's worth on PostgreSQL), inspectors (one
/// deactivated later, which revokes their user's token; one taking over a certificate).
fn registry_imports(c: &Conn) -> Vec<String> {
    let mut seen = Vec::new();
    let mut rows: Vec<String> = (0..1234).map(entity_row).collect();
    // Line 7: a bad check character; line 9: an agent id used on line 3.
    rows[5] = rows[5].replacen(|ch: char| ch.is_ascii_alphanumeric(), "X", 1);
    rows[7] = entity_row(7).replace("agent-7", "agent-1");
    rows[9] = format!("{},extra-field", entity_row(9));
    let bad = format!("{HEADER}\n{}\n", rows.join("\n"));
    match import_csv(c, Kind::Entities, &bad) {
        Imported::Refused {
            rows,
            accepted,
            errors,
        } => {
            assert_eq!(rows, 1234);
            assert!(errors.len() >= 3, "{errors:?}");
            seen.push(format!("refused {rows} {accepted} {errors:?}"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(registry::entities(c).unwrap().is_empty(), "nothing written");
    assert!(audited(c).is_empty(), "nothing audited");

    let good: Vec<String> = (0..1234).map(entity_row).collect();
    let text = format!("{HEADER}\n{}\n", good.join("\n"));
    assert!(matches!(
        import_csv(c, Kind::Entities, &text),
        Imported::Rows(1234)
    ));
    // Importing again replaces each row by its key.
    let changed: Vec<String> = (0..3)
        .map(|n| entity_row(n).replace(",B,", ",D,"))
        .collect();
    let text = format!("{HEADER}\n{}\n", changed.join("\n"));
    assert!(matches!(
        import_csv(c, Kind::Entities, &text),
        Imported::Rows(3)
    ));
    let entities = registry::entities(c).unwrap();
    assert_eq!(entities.len(), 1234);
    seen.push(format!("first entities {:?}", &entities[..4]));
    seen.push(format!(
        "risks {:?}",
        entities
            .iter()
            .map(|e| e.risk.as_str())
            .collect::<BTreeSet<_>>()
    ));
    let code = |n: usize| entity_row(n).split(',').next().unwrap().to_owned();

    let inspectors = format!(
        "id,name,certificate,department,fields,active,conflicts\n\
         hb-001,王五,44030001,health,pool,true,{}\n\
         hb-002,赵六,44030002,health,pool;game,true,\n\
         hb-003,钱七,44030003,culture,game,true,NOT-A-CODE\n",
        code(1)
    );
    match import_csv(c, Kind::Inspectors, &inspectors) {
        Imported::Refused { errors, .. } => seen.push(format!("inspectors refused {errors:?}")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let inspectors = inspectors.replace("NOT-A-CODE", &code(2));
    assert!(matches!(
        import_csv(c, Kind::Inspectors, &inspectors),
        Imported::Rows(3)
    ));
    // hb-002 gets a user and a token; deactivating them revokes it.
    let tx = c.transaction().unwrap();
    let user = users::for_inspector(&tx, "hb-002", UnixMillis(T0)).unwrap();
    let (token, secret) = secrets::issue(&tx, user.id, "phone", 30, UnixMillis(T0)).unwrap();
    tx.commit().unwrap();
    // hb-009 takes over hb-003's certificate: hb-003's row is replaced.
    let deactivate = "id,name,certificate,department,fields,active,conflicts\n\
         hb-002,赵六,44030002,health,pool;game,否,\n\
         hb-009,孙九,44030003,culture,game,true,\n";
    assert!(matches!(
        import_csv(c, Kind::Inspectors, deactivate),
        Imported::Rows(2)
    ));
    assert!(secrets::authenticate(c, &secret, UnixMillis(T0 + 1))
        .unwrap()
        .is_none());
    assert!(secrets::token(c, token.id).unwrap().revoked_ms.is_some());
    seen.push(format!("inspectors {:?}", registry::inspectors(c).unwrap()));
    let last = audit::read_all(c).unwrap().0.pop().unwrap();
    assert!(
        last.body.contains("\"tokens_revoked\":[1]"),
        "{}",
        last.body
    );
    seen.push(format!("last entry {}", last.body));

    // The item list through `write` (records already parsed), as the demo and tests load it.
    let items = "id,name,department,legal_basis,kind,method,rule_pack\n\
        pool-water,游泳场所水质,health,《公共场所卫生管理条例》,key,both,pool\n\
        game-minors,未成年人游戏时段,culture,《未成年人保护法》,general,remote,\n";
    let rows = spotcheck_collector::registry::import::read_csv(items, "items.csv").unwrap();
    let records =
        spotcheck_collector::registry::import::parse_rows(Kind::Items, &rows, &Default::default())
            .unwrap();
    assert_eq!(registry::write(c, &records).unwrap(), 2);
    seen.push(format!("items {:?}", registry::items(c).unwrap()));
    // `write` takes records as they come: a key given twice is written twice, the last wins.
    let first = registry::entities(c).unwrap().remove(0);
    let (mut once, mut twice) = (first.clone(), first.clone());
    once.name = "改名一".into();
    twice.name = "改名二".into();
    let records = spotcheck_collector::registry::import::Records::Entities(vec![once, twice]);
    assert_eq!(registry::write(c, &records).unwrap(), 2);
    let now = registry::entities(c).unwrap();
    assert_eq!((now.len(), now[0].name.as_str()), (1234, "改名二"));
    seen.push(format!(
        "known {}",
        registry::known_entities(c).unwrap().len()
    ));
    seen.push(format!("audit {:?}", audited(c)));
    seen
}

/// A webhook receiver on a free port that answers every request 200; returns its URL.
fn webhook_receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    format!("http://{addr}/hook")
}

/// Notification settings with a working webhook (`good`, department health) and one nobody
/// listens on (`dead`, department culture), both telling at once.
fn settings(good: &str) -> NotifyConfig {
    let channels = serde_json::json!([
        {"name": "good", "type": "webhook", "url": good, "secret": "s3cret", "timeout_s": 5},
        {"name": "dead", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret",
         "timeout_s": 2}
    ]);
    let routes = serde_json::json!([
        {"name": "health", "departments": ["health"], "channels": ["good"], "group_wait_s": 0},
        {"name": "culture", "departments": ["culture"], "channels": ["dead"], "group_wait_s": 0}
    ]);
    NotifyConfig {
        console_url: "https://spotcheck.example.gov.cn".into(),
        scan_s: 3600,
        retry_base_ms: 1000,
        channels: serde_json::from_value(channels).unwrap(),
        routes: serde_json::from_value(routes).unwrap(),
        ..NotifyConfig::default()
    }
}

/// Events into the outbox, then worker steps: routed, persisted, claimed, sent to the
/// working channel, retried on the dead one.
fn notifications(c: &Conn, url: &db::DbUrl, hook: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let tx = c.transaction().unwrap();
    for (department, subject) in [("health", "draw:d1"), ("culture", "draw:d2")] {
        let mut e = Event::new(EventKind::DrawCommitted, UnixMillis(T0), subject);
        e.department = Some(department.into());
        assert!(emit(&tx, &e, None).unwrap());
    }
    let mut keyed = Event::new(EventKind::AgentSilent, UnixMillis(T0), "agent:a1");
    keyed.department = Some("health".into());
    keyed.entity = Some("E1".into());
    assert!(emit(&tx, &keyed, Some("silent:a1:1")).unwrap());
    assert!(
        !emit(&tx, &keyed, Some("silent:a1:1")).unwrap(),
        "one event per dedupe key"
    );
    tx.commit().unwrap();
    assert_eq!(outbox::unrouted(c, 10).unwrap().len(), 3);

    let mut worker = Worker::connect(
        url,
        settings(hook),
        ScanSettings {
            publish_within_days: 20,
        },
    )
    .unwrap();
    let report = worker.step(UnixMillis(T0 + 1_000)).unwrap();
    seen.push(format!(
        "step {} {} {} {}",
        report.routed, report.flushed, report.sent, report.failed_attempts
    ));
    assert_eq!(
        (
            report.routed,
            report.flushed,
            report.sent,
            report.failed_attempts
        ),
        (3, 3, 2, 1),
        "{report:?}"
    );
    let messages = outbox::messages(c, None, 10).unwrap();
    for m in &messages {
        seen.push(format!(
            "message {} {} {} {} {} attempts {} events {} {}",
            m.id, m.route, m.channel, m.group_key, m.status, m.attempts, m.events, m.title
        ));
    }
    let failed = messages.iter().find(|m| m.channel == "dead").unwrap();
    assert_eq!(failed.status, "pending");
    assert!(failed.next_ms > T0 + 1_000 && failed.last_error.is_some());
    // Before its retry time nothing is due; after it, the retry fails again, later.
    assert!(outbox::due(c, T0 + 1_000, 10).unwrap().is_empty());
    let report = worker.step(UnixMillis(failed.next_ms)).unwrap();
    assert_eq!((report.sent, report.failed_attempts), (0, 1));
    let retried = outbox::messages(c, Some("pending"), 10).unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 2);
    assert!(retried[0].next_ms > failed.next_ms);
    let log = outbox::deliveries(c, None, 10).unwrap();
    seen.push(format!(
        "deliveries {:?}",
        log.iter()
            .map(|d| (d.message, d.channel.as_str(), d.attempt, d.ok))
            .collect::<Vec<_>>()
    ));
    assert_eq!(
        outbox::deliveries(c, Some(failed.id), 10).unwrap().len(),
        2,
        "two attempts on the dead channel"
    );
    // Nothing is told twice: a further step finds nothing new.
    let report = worker.step(UnixMillis(T0 + 2_000)).unwrap();
    assert_eq!((report.routed, report.flushed, report.sent), (0, 0, 0));
    seen
}

/// `n` persisted messages, due at `T0`.
fn pending_messages(c: &Conn, n: usize) -> Vec<i64> {
    let tx = c.transaction().unwrap();
    let g = OpenGroup {
        route: "r".into(),
        channel: "c".into(),
        group_key: "k".into(),
        first_ms: T0,
        last_sent_ms: None,
    };
    let ids = (0..n)
        .map(|i| {
            outbox::flush(
                &tx,
                &g,
                &[],
                &NewMessage {
                    title: format!("message {i}"),
                    text: String::new(),
                    recipients: Default::default(),
                },
                T0,
            )
            .unwrap()
        })
        .collect();
    tx.commit().unwrap();
    ids
}

/// Runs the collector binary with `args`; (exit code, standard output, standard error).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(spotcheck_e2e::bin("spotcheck-collector"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

mod notify_outbox;
mod people;
mod registry_import;

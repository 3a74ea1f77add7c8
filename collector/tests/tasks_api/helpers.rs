//! The app on port 0 with a fresh data dir and a generated registry, raw HTTP/1.1 requests,
//! and pool readings written the way ingest writes them.

use std::net::SocketAddr;

use serde_json::Value;
use spotcheck_collector::api::{router, AppState};
use spotcheck_collector::config::{AgentBinding, Synchronous};
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store::db::{args, Conn, DbUrl, Sql};
use spotcheck_collector::store::writer::Item;
use spotcheck_collector::store::Writer;
use spotcheck_demo::generate;
use spotcheck_protocol::{
    AgentId, Batch, Checked, Domain, EntityId, Limits, Metric, Quality, Reading, ReadingBatch, Seq,
    Unit, UnixMillis, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::test_store::{self, Off};

/// The admin token of every test app.
pub const ADMIN: &str = "tasks-api-admin-token";

pub const MINUTE: i64 = 60_000;

/// Pool metrics with in-band values (GB 37488-2019).
pub const POOL: [(&str, Unit, f64); 6] = [
    (Metric::FREE_CHLORINE, Unit::MilligramPerLitre, 0.6),
    (Metric::COMBINED_CHLORINE, Unit::MilligramPerLitre, 0.2),
    (Metric::PH, Unit::Ph, 7.4),
    (Metric::TURBIDITY, Unit::Ntu, 0.3),
    (Metric::ORP, Unit::Millivolt, 700.0),
    (Metric::WATER_TEMPERATURE, Unit::Celsius, 27.0),
];

/// Who is in the generated registry, as the tests need them.
pub struct Registry {
    /// Credit codes of pool entities nobody has a conflict with.
    pub pools: Vec<String>,
    /// Active health inspectors without any conflict.
    pub health: Vec<String>,
    /// Active culture inspectors.
    pub culture: Vec<String>,
    /// An active health inspector and the pool entity they have a conflict with.
    pub conflicted: (String, String),
}

/// A running app.
pub struct App {
    pub addr: SocketAddr,
    /// Its store: SQLite in the temp dir, or PostgreSQL on the matrix's second leg
    /// (`SPOTCHECK_TEST_STORE=postgres`, `common/test_store.rs`).
    pub store: DbUrl,
    pub registry: Registry,
    _dir: tempfile::TempDir,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts the status and the API's error shape; returns the message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{}", self.body);
        let message = v["error"]["message"].as_str().expect("a message");
        assert!(!message.is_empty());
        message.to_owned()
    }
}

fn query_strings(conn: &Conn, sql: &str) -> Vec<(String, String)> {
    conn.query(sql, args![], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
}

fn fill_registry(conn: &Conn) -> Registry {
    let entities = generate::entities(20, 0, 2026);
    let inspectors = generate::inspectors(24, &entities, 2026);
    write(conn, &Records::Entities(entities.clone())).unwrap();
    write(conn, &Records::Inspectors(inspectors)).unwrap();
    write(conn, &Records::Items(generate::items())).unwrap();
    let inspectors = query_strings(
        conn,
        "SELECT id, department || ' ' || active || ' ' || conflicts FROM registry_inspectors ORDER BY id",
    );
    let active = |dept: &str| {
        inspectors
            .iter()
            .filter(|(_, d)| d.starts_with(&format!("{dept} 1 ")))
            .collect::<Vec<_>>()
    };
    let pool_codes: Vec<String> = entities
        .iter()
        .filter(|e| e.domain == Domain::Pool)
        .map(|e| e.code.as_str().to_owned())
        .collect();
    let conflicted = active("health")
        .into_iter()
        .find_map(|(id, d)| {
            pool_codes
                .iter()
                .find(|c| d.contains(c.as_str()))
                .map(|c| (id.clone(), c.clone()))
        })
        .expect("the generated registry has a health inspector with a conflict with a pool");
    let any_conflict: Vec<&str> = inspectors.iter().map(|(_, d)| d.as_str()).collect();
    let pools = pool_codes
        .iter()
        .filter(|c| !any_conflict.iter().any(|d| d.contains(c.as_str())))
        .cloned()
        .collect();
    let clean = |dept: &str| -> Vec<String> {
        active(dept)
            .into_iter()
            .filter(|(_, d)| d.ends_with(" []"))
            .map(|(id, _)| id.clone())
            .collect()
    };
    Registry {
        pools,
        health: clean("health"),
        culture: clean("culture"),
        conflicted,
    }
}

impl App {
    /// The router over a fresh store with the generated registry, on 127.0.0.1:0.
    pub async fn start() -> App {
        let dir = tempfile::tempdir().unwrap();
        let url = test_store::fresh(dir.path());
        let rulebook = Rulebook::load(None).unwrap();
        let registry = test_store::with_conn(&url, |conn| {
            let registry = fill_registry(conn);
            // As start-up does.
            rulebook.record_active(conn, UnixMillis::now()).unwrap();
            spotcheck_collector::users::store::bootstrap_with(conn, ADMIN, UnixMillis::now())
                .unwrap();
            registry
        });
        assert!(registry.pools.len() >= 6, "enough conflict-free pools");
        assert!(registry.health.len() >= 6, "enough health inspectors");
        assert!(registry.culture.len() >= 2, "enough culture inspectors");
        let state = AppState {
            credentials: Default::default(),
            stats: Default::default(),
            bindings: Default::default(),
            presence: Default::default(),
            store: url.clone(),
            data_dir: dir.path().to_owned(),
            people: Default::default(),
            rulebook,
            publish_within_days: 20,
            health: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        App {
            addr,
            store: url,
            registry,
            _dir: dir,
        }
    }

    /// One HTTP/1.1 request with an optional bearer token.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        self.send_with(method, path, &headers, body).await.0
    }

    /// One HTTP/1.1 request with these extra headers; the response and its header block.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (Response, String) {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let status = text[9..12].parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (Response { status, body }, head.to_owned())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send("GET", path, token, "").await
    }

    /// An admin request that must succeed; its JSON.
    pub async fn admin(&self, method: &str, path: &str, body: &str) -> Value {
        let r = self.send(method, path, Some(ADMIN), body).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.json()
    }

    /// A console session: (cookie, CSRF token) of `user` logged in with `password`.
    pub async fn session(&self, user: &str, password: &str) -> (String, String) {
        let body = serde_json::json!({"user": user, "password": password}).to_string();
        let (r, head) = self.send_with("POST", "/api/v1/session", &[], &body).await;
        assert_eq!(r.status, 200, "login of {user}: {}", r.body);
        let cookie = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .and_then(|l| l.split_once(':'))
            .and_then(|(_, v)| v.trim().split(';').next())
            .expect("a session cookie")
            .to_owned();
        let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
        (cookie, csrf)
    }

    /// What a user given a temporary password by the admin does first: logs in, chooses
    /// their own password, logs in again. Their session (cookie, CSRF token).
    pub async fn own_session(&self, user: &str, temporary: &str) -> (String, String) {
        let own = self.choose_own_password(user, temporary).await;
        self.session(user, &own).await
    }

    /// Logs in with the admin's temporary password and replaces it (which ends every session
    /// of the user); the user's own password.
    pub async fn choose_own_password(&self, user: &str, temporary: &str) -> String {
        let (cookie, csrf) = self.session(user, temporary).await;
        let (me, _) = self
            .send_with("GET", "/api/v1/session", &[("Cookie", &cookie)], "")
            .await;
        assert_eq!(
            me.json()["user"]["must_change_password"],
            true,
            "{}",
            me.body
        );
        let id = me.json()["user"]["id"].as_i64().unwrap();
        let own = format!("{user}'s own password");
        let body = serde_json::json!({ "password": own }).to_string();
        let path = format!("/api/v1/users/{id}/password");
        let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        let (r, _) = self.send_with("PUT", &path, &headers, &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        own
    }

    /// An API token that `user` (given `temporary` by the admin) issues for themselves.
    pub async fn own_token(&self, user: &str, temporary: &str) -> String {
        let (cookie, csrf) = self.own_session(user, temporary).await;
        let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        let (r, _) = self
            .send_with("POST", "/api/v1/tokens", &headers, r#"{"name":"test"}"#)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    /// An inspector's token: the admin gives them a temporary login, they choose their own
    /// password and issue a token for themselves.
    pub async fn token_of(&self, inspector: &str) -> String {
        let v = self
            .admin(
                "POST",
                &format!("/api/v1/registry/inspectors/{inspector}/login"),
                "",
            )
            .await;
        assert_eq!(v["inspector"], inspector);
        let (name, pw) = (v["name"].as_str().unwrap(), v["password"].as_str().unwrap());
        self.own_token(name, pw).await
    }

    /// A referral task for a pool entity's water quality; its id.
    pub async fn referral(&self, entity: &str) -> i64 {
        let body = serde_json::json!({
            "entity": entity, "department": "health", "item": "pool-water-quality",
            "detail": "complaint: cloudy water",
        });
        let t = self.admin("POST", "/api/v1/tasks", &body.to_string()).await;
        assert_eq!(t["kind"], "referral");
        assert_eq!(t["status"], "drawn");
        t["id"].as_i64().unwrap()
    }

    /// Assigns inspectors; returns the response.
    pub async fn assign(&self, task: i64, inspectors: &[&str]) -> Response {
        let body = serde_json::json!({ "inspectors": inspectors }).to_string();
        self.send(
            "PUT",
            &format!("/api/v1/tasks/{task}/inspectors"),
            Some(ADMIN),
            &body,
        )
        .await
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// The start of the minute three hours ago: readings then are in the past for every clock.
pub fn three_hours_ago() -> i64 {
    (UnixMillis::now().0 / MINUTE) * MINUTE - 3 * 60 * MINUTE
}

/// One-minute pool readings from `start` for `minutes`, in batches of ten minutes numbered
/// from `first_seq`; `value(metric, minute)` gives each value, `None` leaves the metric out.
pub fn pool_batches(
    agent: &AgentId,
    first_seq: u64,
    start: i64,
    minutes: i64,
    value: impl Fn(&str, i64) -> Option<f64>,
) -> Vec<Checked<Batch>> {
    let limits = Limits {
        max_age_ms: i64::MAX / 2,
        ..Limits::default()
    };
    let mut out = Vec::new();
    let value = &value;
    let minutes: Vec<i64> = (0..minutes).collect();
    for (seq, chunk) in (first_seq..).zip(minutes.chunks(10)) {
        let readings: Vec<Reading> = chunk
            .iter()
            .flat_map(|&m| {
                POOL.iter().filter_map(move |(metric, unit, _)| {
                    Some(Reading {
                        metric: Metric::new(*metric).unwrap(),
                        value: value(metric, m)?,
                        unit: *unit,
                        ts_ms: UnixMillis(start + m * MINUTE),
                        quality: Quality::Good,
                    })
                })
            })
            .collect();
        let batch = Batch::Readings(ReadingBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(seq),
            after: None,
            readings,
        });
        out.push(spotcheck_protocol::check(batch, &limits, UnixMillis::now()).unwrap());
    }
    out
}

/// The in-band value of a pool metric.
pub fn normal(metric: &str) -> f64 {
    POOL.iter().find(|m| m.0 == metric).unwrap().2
}

/// Opens the store's writer with `agent` bound to the pool entity `code` (its credit code),
/// off Tokio's context ([`test_store::Off`]).
pub fn writer_for(app: &App, agent: &AgentId, code: &str) -> (Off<Writer>, EntityId) {
    let entity = EntityId::new(code).unwrap();
    let w = Off::new(|| {
        let mut w = Writer::open_url(&app.store, Synchronous::Normal).unwrap();
        w.register_agents(&[AgentBinding {
            id: agent.clone(),
            entity: entity.clone(),
            domain: Domain::Pool,
        }])
        .unwrap();
        w
    });
    (w, entity)
}

/// Commits batches for `entity` in one transaction (without the rule engine).
pub fn store_batches(w: &mut Off<Writer>, entity: &EntityId, batches: &[Checked<Batch>]) {
    let items = items(entity, batches);
    let report = w.run(|w| w.commit(&items, UnixMillis::now()).unwrap());
    assert_eq!(report.outcomes.len(), batches.len());
}

impl App {
    /// Runs `f` on a connection to the app's store, off Tokio's context: the tests' own
    /// reads and edits of the store, on either engine.
    pub fn sql<T: Send>(&self, f: impl FnOnce(&Conn) -> T + Send) -> T {
        test_store::with_conn(&self.store, f)
    }
}

pub fn items<'a>(entity: &'a EntityId, batches: &'a [Checked<Batch>]) -> Vec<Item<'a>> {
    batches
        .iter()
        .map(|b| Item::Batch {
            entity,
            domain: Domain::Pool,
            batch: b,
        })
        .collect()
}

fn write(
    conn: &Conn,
    records: &Records,
) -> Result<usize, spotcheck_collector::registry::store::RegistryStoreError> {
    spotcheck_collector::registry::store::write(conn, records)
}

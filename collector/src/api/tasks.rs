//! Task routes: the queue (admin: all; inspectors: their own), the lifecycle of anomaly and
//! referral tasks, remote checks and inspectors' decisions, publication, the public results
//! feed, rule packs and the audit log.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use super::auth::{self, Caller};
use super::draws::write_db;
use super::{read_db, ApiError, AppState};
use crate::check::{self, Check, CheckError, Decider, Decision};
use crate::results::{self, Category};
use crate::rules::RulePack;
use crate::tasks::store as task_store;
use crate::tasks::{Note, Task, TaskError, TaskFilter, TaskId, TaskKind, TaskStatus};
use crate::users::Role;

/// The task routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tasks", get(list).post(create_referral))
        .route("/api/v1/tasks/{id}", get(one))
        .route("/api/v1/tasks/{id}/acknowledge", post(acknowledge))
        .route("/api/v1/tasks/{id}/resolve", post(resolve))
        .route("/api/v1/tasks/{id}/checks", post(run_check))
        .route("/api/v1/tasks/{id}/inspectors", put(assign))
        .route("/api/v1/checks/{id}/decision", post(decide))
        .route("/api/v1/publications", post(publish))
        .route("/api/v1/results/pending", get(pending))
        .route("/api/v1/public/results", get(public_results))
        .route("/api/v1/public/results/categories", get(categories))
        .route("/api/v1/rule-packs", get(rule_packs))
        .route("/api/v1/rule-packs/{domain}", put(put_rule_pack))
        .route("/api/v1/audit", get(audit_export))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/public/audit-head", get(audit_head))
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(_) => ApiError::NotFound(e.to_string()),
            TaskError::WrongStatus { .. } => ApiError::Conflict(e.to_string()),
            TaskError::NotAssigned { .. } => ApiError::Forbidden(e.to_string()),
            TaskError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            TaskError::Corrupt { .. }
            | TaskError::Sqlite(_)
            | TaskError::Db(_)
            | TaskError::Audit(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Task(t) => t.into(),
            CheckError::NotFound(_) => ApiError::NotFound(e.to_string()),
            CheckError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            CheckError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            CheckError::Db(_) | CheckError::Audit(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Task `id` if `caller` may see it; otherwise "does not exist", exactly as for a task that
/// does not, so that nobody learns of tasks they may not see.
async fn task_for(s: &AppState, caller: &Caller, id: TaskId) -> Result<Task, ApiError> {
    let task = read_db(s, move |c| Ok(task_store::get(c, id))).await?;
    match task {
        Ok(t) if caller.sees(&t) => Ok(t),
        Ok(_) | Err(TaskError::NotFound(_)) => Err(TaskError::NotFound(id).into()),
        Err(e) => Err(e.into()),
    }
}

/// Task `id` if `caller` manages it (the admin; a supervisor of its department).
async fn managed(s: &AppState, caller: &Caller, id: TaskId) -> Result<Task, ApiError> {
    let task = task_for(s, caller, id).await?;
    if caller.manages(&task) {
        Ok(task)
    } else {
        Err(ApiError::Forbidden(format!(
            "task {id} is managed by the admin and the supervisors of department {}; you are {}",
            task.department,
            caller.role()
        )))
    }
}

fn now() -> UnixMillis {
    UnixMillis::now()
}

fn bad_query(expected: &'static str) -> impl Fn(QueryRejection) -> ApiError {
    move |e| ApiError::BadRequest(format!("{e}; expected {expected}"))
}

fn bad_body(expected: &'static str) -> impl Fn(JsonRejection) -> ApiError {
    move |e| ApiError::BadRequest(format!("{e}; expected {expected}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    kind: Option<String>,
    status: Option<String>,
    entity: Option<String>,
    draw: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let Query(p) = params.map_err(bad_query(
        "?kind=random|joint|anomaly|referral&status=...&entity=CODE&draw=ID&before=ID&limit=N",
    ))?;
    let parse_kind = |k: &str| k.parse::<TaskKind>().map_err(ApiError::BadRequest);
    let parse_status = |k: &str| k.parse::<TaskStatus>().map_err(ApiError::BadRequest);
    let filter = TaskFilter {
        kind: p.kind.as_deref().map(parse_kind).transpose()?,
        status: p.status.as_deref().map(parse_status).transpose()?,
        entity: p.entity,
        inspector: match who.role() {
            Role::Inspector => Some(who.inspector().unwrap_or_default().to_owned()),
            _ => None,
        },
        department: match who.role() {
            Role::Supervisor => Some(who.user.department.clone().unwrap_or_default()),
            _ => None,
        },
        draw: p.draw,
        before: p.before.map(TaskId),
        limit: p.limit.unwrap_or(100).min(10_000),
    };
    let tasks = read_db(&s, move |c| Ok(task_store::list(c, &filter)?)).await?;
    Ok(Json(tasks))
}

#[derive(Serialize)]
struct TaskView {
    #[serde(flatten)]
    task: Task,
    /// The rule's title in English (anomaly tasks whose rule is loaded).
    rule_title: Option<String>,
    /// The rule's title in Chinese, the English one when the pack has none.
    rule_title_zh: Option<String>,
    notes: Vec<Note>,
    checks: Vec<Check>,
}

async fn one(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<TaskView>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let id = TaskId(id);
    task_for(&s, &who, id).await?;
    let rules = s.rulebook.rules();
    let view = read_db(&s, move |c| {
        let task = task_store::get(c, id)?;
        let rule = task
            .rule()
            .and_then(|k| crate::views::evidence::rule_of(&rules, k.as_str()))
            .map(|(_, r)| r);
        Ok(TaskView {
            rule_title: rule.map(|r| r.title.clone()),
            rule_title_zh: rule.map(|r| r.chinese_title().to_owned()),
            task,
            notes: task_store::notes(c, id)?,
            checks: check::of_task(c, id)?,
        })
    })
    .await?;
    Ok(Json(view))
}

async fn acknowledge(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Task>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    managed(&s, &who, TaskId(id)).await?;
    let by = who.actor();
    let t = write_db(&s, move |c| {
        Ok(task_store::acknowledge(c, TaskId(id), &by, now())?)
    })
    .await?;
    Ok(Json(t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolution {
    result: Category,
    comment: String,
}

async fn resolve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Resolution>, JsonRejection>,
) -> Result<Json<Task>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    managed(&s, &who, TaskId(id)).await?;
    let by = who.actor();
    let Json(r) = body.map_err(bad_body(
        "{\"result\": CATEGORY_CODE, \"comment\": TEXT} (categories: GET /api/v1/public/results/categories)",
    ))?;
    let t = write_db(&s, move |c| {
        Ok(task_store::resolve(
            c,
            TaskId(id),
            r.result,
            &r.comment,
            &by,
            now(),
        )?)
    })
    .await?;
    Ok(Json(t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Referral {
    entity: String,
    department: String,
    item: String,
    detail: String,
}

async fn create_referral(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Referral>, JsonRejection>,
) -> Result<Json<Task>, ApiError> {
    let who = auth::one_of(&s, &headers, &[Role::Admin, Role::Supervisor])?;
    let Json(r) = body.map_err(bad_body(
        "{\"entity\": CODE, \"department\": ID, \"item\": ID, \"detail\": TEXT}",
    ))?;
    if who.role() == Role::Supervisor
        && who.user.department.as_deref() != Some(r.department.as_str())
    {
        return Err(ApiError::Forbidden(format!(
            "a supervisor enters tasks for their own department ({}), not {}",
            who.user.department.as_deref().unwrap_or_default(),
            r.department
        )));
    }
    let by = who.actor();
    let t = write_db(&s, move |c| {
        let referral = task_store::NewReferral {
            entity: &r.entity,
            department: &r.department,
            item: &r.item,
            reason: &r.detail,
            entered_by: &by,
        };
        Ok(task_store::create_referral(c, &referral, now())?)
    })
    .await?;
    Ok(Json(t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    inspectors: Vec<String>,
}

async fn assign(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Assignment>, JsonRejection>,
) -> Result<Json<Task>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    managed(&s, &who, TaskId(id)).await?;
    let Json(a) = body.map_err(bad_body(
        "{\"inspectors\": [INSPECTOR_ID, INSPECTOR_ID, ...]}",
    ))?;
    let t = write_db(&s, move |c| {
        Ok(task_store::assign_checked(
            c,
            TaskId(id),
            &a.inspectors,
            now(),
        )?)
    })
    .await?;
    Ok(Json(t))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CheckParams {
    window_start_ms: Option<i64>,
    window_end_ms: Option<i64>,
}

async fn run_check(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<Check>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let p: CheckParams = if body.iter().all(u8::is_ascii_whitespace) {
        CheckParams::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "{e}; expected nothing or {{\"window_start_ms\": UNIX_MS, \"window_end_ms\": UNIX_MS}}"
            ))
        })?
    };
    let window = match (p.window_start_ms, p.window_end_ms) {
        (None, None) => None,
        (Some(a), Some(b)) => Some((a, b)),
        _ => {
            return Err(ApiError::BadRequest(
                "give both window_start_ms and window_end_ms, or neither".into(),
            ))
        }
    };
    let id = TaskId(id);
    task_for(&s, &who, id).await?;
    let rules = s.rulebook.rules();
    let calendar = s.rulebook.calendar();
    let c = write_db(&s, move |c| {
        Ok(check::run(c, &rules, &calendar, id, window, now())?)
    })
    .await?;
    Ok(Json(c))
}

async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<Check>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let task = read_db(&s, move |c| Ok(check::get(c, id))).await?;
    let task = match task {
        Ok(c) => c.task,
        Err(CheckError::NotFound(_)) => return Err(CheckError::NotFound(id).into()),
        Err(e) => return Err(e.into()),
    };
    // A check of a task the caller may not see does not exist for them.
    let task = task_for(&s, &who, task)
        .await
        .map_err(|_| ApiError::from(CheckError::NotFound(id)))?;
    let by = match who.role() {
        Role::Inspector => Decider::Inspector(who.inspector().unwrap_or_default().to_owned()),
        _ if who.manages(&task) => Decider::Bureau(who.actor()),
        _ => {
            return Err(ApiError::Forbidden(
                "only an assigned inspector, the admin or the department's supervisor decides on a verdict".into(),
            ))
        }
    };
    let Json(d) = body.map_err(bad_body(
        "{\"decision\": \"accept\"[, \"result\": CATEGORY][, \"comment\": TEXT]} or {\"decision\": \"override\", \"result\": CATEGORY, \"reason\": TEXT}",
    ))?;
    let c = write_db(&s, move |c| Ok(check::decide(c, id, &by, d, now())?)).await?;
    Ok(Json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publication {
    tasks: Vec<i64>,
}

async fn publish(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Publication>, JsonRejection>,
) -> Result<Json<Vec<results::Published>>, ApiError> {
    let who = auth::one_of(&s, &headers, &[Role::Admin, Role::Supervisor])?;
    let Json(p) = body.map_err(bad_body("{\"tasks\": [TASK_ID, ...]}"))?;
    for &t in &p.tasks {
        managed(&s, &who, TaskId(t)).await?;
    }
    let published = write_db(&s, move |c| {
        results::publish(c, &p.tasks, now()).map_err(|e| match e {
            results::ResultsError::Db(_) | results::ResultsError::Audit(_) => {
                ApiError::Internal(e.to_string())
            }
            _ => ApiError::Conflict(e.to_string()),
        })
    })
    .await?;
    Ok(Json(published))
}

async fn pending(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<results::PendingPublication>>, ApiError> {
    let who = auth::staff(&s, &headers)?;
    let days = s.publish_within_days;
    let rows = read_db(&s, move |c| {
        results::pending_publication(c, results::Deadline { days }, now())
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    let rows = match who.role() {
        Role::Supervisor => rows
            .into_iter()
            .filter(|r| who.user.department.as_deref() == Some(r.department.as_str()))
            .collect(),
        _ => rows,
    };
    Ok(Json(rows))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicParams {
    format: Option<String>,
    domain: Option<String>,
    department: Option<String>,
    entity: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: Option<u32>,
}

async fn public_results(
    State(s): State<AppState>,
    params: Result<Query<PublicParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(bad_query(
        "?format=json|csv&domain=&department=&entity=&since_ms=&until_ms=&limit=N",
    ))?;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not offered; use json or csv"
            )))
        }
    };
    let filter = results::PublicFilter {
        domain: p.domain,
        department: p.department,
        entity: p.entity,
        since_ms: p.since_ms,
        until_ms: p.until_ms,
        limit: Some(p.limit.unwrap_or(1000).min(100_000)),
    };
    let rows = read_db(&s, move |c| {
        results::public_results(c, &filter).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    if csv {
        let body = results::to_csv(&rows).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"spotcheck-results.csv\"",
                ),
            ],
            body,
        )
            .into_response())
    } else {
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            results::to_json(&rows),
        )
            .into_response())
    }
}

async fn categories() -> Json<Vec<serde_json::Value>> {
    Json(
        Category::ALL
            .iter()
            .map(|c| json!({"code": c.code(), "label": c.label()}))
            .collect(),
    )
}

#[derive(Serialize)]
struct PackView {
    id: String,
    domain: String,
    title: String,
    title_zh: String,
    hash: String,
    origin: String,
    rules: usize,
}

async fn rule_packs(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<PackView>>, ApiError> {
    auth::staff(&s, &headers)?;
    let rules = s.rulebook.rules();
    Ok(Json(rules.packs().map(PackView::of).collect()))
}

impl PackView {
    fn of(p: &RulePack) -> PackView {
        PackView {
            id: p.id.clone(),
            domain: p.domain.to_string(),
            title: p.title.clone(),
            title_zh: p.chinese_title().to_owned(),
            hash: p.hash().as_str().to_owned(),
            origin: p.origin().to_owned(),
            rules: p.rules.len(),
        }
    }
}

async fn put_rule_pack(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Json<PackView>, ApiError> {
    auth::admin(&s, &headers)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the rule pack is not UTF-8 text".into()))?;
    // Check the domain before activating anything: a pack for another domain would replace
    // that domain's pack behind the URL's back.
    let parsed = crate::rules::parse_pack(&text, &format!("api:{domain}"))
        .map_err(|e| ApiError::BadRequest(format!("{e}; the previous pack stays active")))?;
    if parsed.domain.as_str() != domain {
        return Err(ApiError::BadRequest(format!(
            "the pack is for domain {}, the URL names {domain}; PUT it to /api/v1/rule-packs/{}",
            parsed.domain, parsed.domain
        )));
    }
    let book = s.rulebook.clone();
    let pack = write_db(&s, move |c| {
        book.activate(c, parsed, now())
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(Json(PackView::of(&pack)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {}

async fn audit_export(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    auth::oversight(&s, &headers)?;
    let Query(AuditParams {}) = params.map_err(bad_query("no parameters"))?;
    let body = read_db(&s, move |c| {
        let mut out = Vec::new();
        crate::audit::export_jsonl(c, &mut out)
            .map(|_| out)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    /// A head hash published earlier: the log must still hold the entry with it.
    head: Option<String>,
}

/// One problem of a verification, with its text and the entry it is at.
#[derive(Serialize)]
struct ProblemView {
    #[serde(flatten)]
    problem: crate::audit::verify::Problem,
    /// The entry it is at, if it names one.
    at_seq: Option<i64>,
    /// The problem in words, as `audit verify` prints it.
    message: String,
}

/// What `audit verify --data DIR [--head HASH]` would say about the stored log.
#[derive(Serialize)]
struct VerifyView {
    /// Whether the chain verifies.
    ok: bool,
    /// Entries examined.
    entries: usize,
    /// The last entry's seq (0 for an empty log) …
    head_seq: i64,
    /// … and its hash (the genesis hash for an empty log).
    head_hash: String,
    /// The seq of the entry whose hash is `head`, when one was given and found.
    published_head_seq: Option<i64>,
    /// The lowest seq any problem is at: from there on the chain cannot be trusted.
    first_broken_seq: Option<i64>,
    /// Every problem; empty when the chain verifies.
    problems: Vec<ProblemView>,
    /// When it was verified (Unix ms).
    verified_ms: i64,
}

async fn audit_verify(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<VerifyParams>, QueryRejection>,
) -> Result<Json<VerifyView>, ApiError> {
    auth::oversight(&s, &headers)?;
    let Query(p) = params.map_err(bad_query("?head=HASH (optional)"))?;
    let head = p
        .head
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    if let Some(h) = &head {
        if !crate::audit::hash::is_hash(&h.to_ascii_lowercase()) {
            return Err(ApiError::BadRequest(format!(
                "head {h:?} is not a hash: 64 hex digits, as /api/v1/public/audit-head gives it"
            )));
        }
    }
    let report = read_db(&s, move |c| {
        crate::audit::verify_store(c, head.as_deref())
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(Json(VerifyView {
        ok: report.is_ok(),
        entries: report.entries,
        head_seq: report.head.as_ref().map_or(0, |(seq, _)| *seq),
        head_hash: report.head_hash().to_owned(),
        published_head_seq: report.published_head_seq,
        first_broken_seq: report.first_broken_seq(),
        problems: report
            .problems
            .iter()
            .map(|p| ProblemView {
                at_seq: p.seq(),
                message: p.to_string(),
                problem: p.clone(),
            })
            .collect(),
        verified_ms: now().0,
    }))
}

async fn audit_head(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let head = read_db(&s, |c| {
        crate::audit::head(c).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(Json(match head {
        Some((seq, hash)) => json!({"seq": seq, "hash": hash}),
        None => json!({"seq": 0, "hash": null}),
    }))
}

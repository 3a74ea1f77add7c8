//! The console's reads: the task queue (filters, sort, counts, pages), a task's evidence, an
//! entity's overview and its event records with their breaches. The SQL is in
//! [`crate::views`]; tasks come out in the same JSON as `GET /api/v1/tasks`, with names added.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use spotcheck_protocol::UnixMillis;

use super::auth::{self, Caller};
use super::{read_db, ApiError, AppState};
use crate::rules::RuleSet;
use crate::tasks::store as task_store;
use crate::tasks::{Task, TaskError, TaskId};
use crate::users::Role;
use crate::views::evidence::{self, RecordView, TaskEvidence};
use crate::views::queue::{self, Counts, QueueQuery, Sort};
use crate::views::{entity, Scope};

/// The console's read routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/queue", get(queue_page))
        .route("/api/v1/tasks/{id}/evidence", get(task_evidence))
        .route("/api/v1/entities/{entity}", get(entity_overview))
        .route("/api/v1/entities/{entity}/events", get(entity_events))
        .route("/api/v1/entities/{entity}/series", get(entity_series))
}

/// Which tasks `caller` may see, as a query scope (mirrors [`Caller::sees`]).
pub fn scope_of(caller: &Caller) -> Scope {
    match caller.role() {
        Role::Admin | Role::Auditor => Scope::All,
        Role::Supervisor => Scope::Department(caller.user.department.clone().unwrap_or_default()),
        Role::Inspector => Scope::Inspector(caller.inspector().unwrap_or_default().to_owned()),
    }
}

/// A task as the console lists it: the API's task, plus names for its codes.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// The task, as `GET /api/v1/tasks/{id}` shows it.
    #[serde(flatten)]
    pub task: Task,
    /// Registered names of the entity and the item.
    #[serde(flatten)]
    pub names: queue::Names,
    /// The rule's title in English (anomaly tasks).
    pub rule_title: Option<String>,
    /// The rule's title in Chinese, the English one when the pack has none (anomaly tasks).
    pub rule_title_zh: Option<String>,
}

/// Loads `ids` as rows (ids that vanished are skipped).
pub fn rows(
    c: &(impl crate::store::db::Sql + ?Sized),
    rules: &RuleSet,
    ids: &[TaskId],
) -> Result<Vec<TaskRow>, ApiError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let task = match task_store::get(c, id) {
            Ok(t) => t,
            Err(TaskError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let names = queue::names(c, task.entity.as_str(), task.item.as_str())?;
        let rule = task
            .rule()
            .and_then(|k| evidence::rule_of(rules, k.as_str()))
            .map(|(_, r)| r);
        out.push(TaskRow {
            task,
            names,
            rule_title: rule.map(|r| r.title.clone()),
            rule_title_zh: rule.map(|r| r.chinese_title().to_owned()),
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueParams {
    kind: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    department: Option<String>,
    item: Option<String>,
    entity: Option<String>,
    since: Option<String>,
    until: Option<String>,
    sort: Option<String>,
    offset: Option<u32>,
    limit: Option<u32>,
}

/// One page of the queue.
#[derive(Serialize)]
struct QueuePage {
    tasks: Vec<TaskRow>,
    total: u64,
    offset: u32,
    limit: u32,
    counts: Counts,
}

fn list<T: std::str::FromStr<Err = String>>(v: Option<&str>) -> Result<Vec<T>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().parse::<T>().map_err(ApiError::BadRequest))
                .collect()
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

fn day(v: Option<String>) -> Result<Option<String>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(d) if crate::rules::ChinaDay::parse(&d).is_some() => Ok(Some(d)),
        Some(d) => Err(ApiError::BadRequest(format!(
            "{d:?} is not a day; use YYYY-MM-DD"
        ))),
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

async fn queue_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<QueueParams>, QueryRejection>,
) -> Result<Json<QueuePage>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let Query(p) = params.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected ?kind=K[,K]&status=S[,S]&severity=V[,V]&department=&item=&entity=&since=YYYY-MM-DD&until=YYYY-MM-DD&sort=&offset=N&limit=N"
        ))
    })?;
    let sort = match p.sort.as_deref().filter(|s| !s.is_empty()) {
        None => Sort::default(),
        Some(x) => Sort::parse(x).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "sort {x:?} is not offered; use one of: {}",
                Sort::NAMES
            ))
        })?,
    };
    let q = QueueQuery {
        kinds: list(p.kind.as_deref())?,
        statuses: list(p.status.as_deref())?,
        severities: list(p.severity.as_deref())?,
        department: nonempty(p.department),
        item: nonempty(p.item),
        entity: nonempty(p.entity),
        since_day: day(p.since)?,
        until_day: day(p.until)?,
        sort,
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(50).clamp(1, 500),
    };
    let scope = scope_of(&who);
    let rules = s.rulebook.rules();
    let page = read_db(&s, move |c| {
        let page = queue::page(c, &scope, &q)?;
        Ok(QueuePage {
            tasks: rows(c, &rules, &page.ids)?,
            total: page.total,
            offset: q.offset,
            limit: q.limit,
            counts: queue::counts(c, &scope)?,
        })
    })
    .await?;
    Ok(Json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeParams {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

/// The longest range a chart may ask for: 31 days.
const MAX_RANGE_MS: i64 = 31 * 24 * 3_600_000;

/// The time range of a chart or record list: `since_ms`..`until_ms` (Unix ms) from the query,
/// each defaulting to its end of `default`; refused unless non-empty and at most 31 days.
fn range(
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    default: (i64, i64),
) -> Result<(i64, i64), ApiError> {
    let (a, b) = (since_ms.unwrap_or(default.0), until_ms.unwrap_or(default.1));
    if b <= a || b - a > MAX_RANGE_MS {
        return Err(ApiError::BadRequest(format!(
            "the range {a}..{b} (Unix ms) must be non-empty and at most 31 days"
        )));
    }
    Ok((a, b))
}

/// The last `ms` before now (the end one past now, so that a reading of this instant is in).
fn last(now: UnixMillis, ms: i64) -> (i64, i64) {
    (now.0 - ms, now.0 + 1)
}

async fn task_evidence(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<EvidenceView>, ApiError> {
    let who = auth::caller(&s, &headers)?;
    let Query(p) =
        params.map_err(|e| ApiError::BadRequest(format!("{e}; expected ?since_ms=&until_ms=")))?;
    let id = TaskId(id);
    let task = read_db(&s, move |c| Ok(task_store::get(c, id))).await?;
    let task = match task {
        Ok(t) if who.sees(&t) => t,
        Ok(_) | Err(TaskError::NotFound(_)) => return Err(TaskError::NotFound(id).into()),
        Err(e) => return Err(e.into()),
    };
    let now = UnixMillis::now();
    let r = range(p.since_ms, p.until_ms, evidence::default_range(&task, now))?;
    let (rules, calendar) = (s.rulebook.rules(), s.rulebook.calendar());
    let ev = read_db(&s, move |c| {
        Ok(EvidenceView {
            names: queue::names(c, task.entity.as_str(), task.item.as_str())?,
            evidence: evidence::of_task(c, &rules, &calendar, &task, r, now)?,
        })
    })
    .await?;
    Ok(Json(ev))
}

/// A task's evidence with the names of its entity and item.
#[derive(Serialize)]
struct EvidenceView {
    #[serde(flatten)]
    evidence: TaskEvidence,
    #[serde(flatten)]
    names: queue::Names,
}

async fn entity_overview(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<entity::Overview>, ApiError> {
    auth::staff(&s, &headers)?;
    let what = id.clone();
    read_db(&s, move |c| Ok(entity::overview(c, &id)?))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("entity {what} is neither registered nor reporting"))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventParams {
    kind: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    breaches: Option<bool>,
    limit: Option<u32>,
}

async fn entity_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    auth::staff(&s, &headers)?;
    let Query(p) = params.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected ?kind=KIND&since_ms=&until_ms=&breaches=true|false&limit=N"
        ))
    })?;
    let now = UnixMillis::now();
    let (since_ms, until_ms) = range(p.since_ms, p.until_ms, last(now, 24 * 3_600_000))?;
    let q = entity::EventQuery {
        kind: nonempty(p.kind),
        since_ms,
        until_ms,
        breaches_only: p.breaches.unwrap_or(false),
        limit: p.limit.unwrap_or(100).clamp(1, 1000) as usize,
    };
    let (rules, calendar) = (s.rulebook.rules(), s.rulebook.calendar());
    Ok(Json(
        read_db(&s, move |c| {
            Ok(entity::events(c, &rules, &calendar, &id, &q, now)?)
        })
        .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesParams {
    metric: String,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

async fn entity_series(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<evidence::SeriesView>, ApiError> {
    auth::staff(&s, &headers)?;
    let Query(p) = params.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected ?metric=NAME[&since_ms=UNIX_MS][&until_ms=UNIX_MS]"
        ))
    })?;
    let now = UnixMillis::now();
    let (since_ms, until_ms) = range(p.since_ms, p.until_ms, last(now, 3_600_000))?;
    let metric = p.metric;
    Ok(Json(
        read_db(&s, move |c| {
            let (count, points) = crate::store::query::series_thinned(
                c,
                &id,
                &metric,
                (since_ms, until_ms),
                evidence::MAX_POINTS,
            )?;
            Ok(evidence::SeriesView {
                metric,
                count,
                points,
            })
        })
        .await?,
    ))
}

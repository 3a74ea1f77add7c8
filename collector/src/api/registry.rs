//! Registry, plan and joint-inspection routes (read: the bureau's staff; write: admin): the item list and the two libraries
//! (list, import CSV (`Content-Type: text/csv`) or a JSON array atomically, `?dry_run=true`
//! to check only; a refusal lists every bad row's line, field and reason), plans and their progress,
//! joint tasks and the joint quota.

use axum::extract::rejection::QueryRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::draws::write_db;
use super::{authorize, read_db, ApiError, AppState};
use crate::joint::{self, JointTask, Quota};
use crate::plan::store::{self as plan_store, Progress};
use crate::plan::Plan;
use crate::registry::import;
use crate::registry::model::{Entity, Inspector, Item};
use crate::registry::parse::Kind;
use crate::registry::store::{self as registry_store, RegistryStoreError};
use crate::store::db::Conn;

/// The registry, plan and joint routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/registry/items", get(items).post(import_items))
        .route(
            "/api/v1/registry/entities",
            get(entities).post(import_entities),
        )
        .route(
            "/api/v1/registry/inspectors",
            get(inspectors).post(import_inspectors),
        )
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES))
        .route("/api/v1/plans", get(plans).put(put_plan))
        .route("/api/v1/plans/{plan}/progress", get(progress))
        .route("/api/v1/joint", get(joint_view))
}

impl From<RegistryStoreError> for ApiError {
    fn from(e: RegistryStoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

async fn items(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Vec<Item>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(read_db(&s, |c| Ok(registry_store::items(c)?)).await?))
}

async fn entities(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Vec<Entity>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(
        read_db(&s, |c| Ok(registry_store::entities(c)?)).await?,
    ))
}

async fn inspectors(
    State(s): State<AppState>,
    h: HeaderMap,
) -> Result<Json<Vec<Inspector>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(
        read_db(&s, |c| Ok(registry_store::inspectors(c)?)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    #[serde(default)]
    dry_run: bool,
}

/// What an import did.
#[derive(Serialize)]
struct Imported {
    rows: usize,
    dry_run: bool,
}

/// The largest import body: a district's library as CSV or JSON (axum's default is 2 MB).
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// An import's body, by its `Content-Type`: `text/csv`, else a JSON array.
enum ImportBody {
    Csv(String),
    Json(String),
}

impl ImportBody {
    fn of(h: &HeaderMap, body: String) -> ImportBody {
        let csv = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
        if csv {
            ImportBody::Csv(body)
        } else {
            ImportBody::Json(body)
        }
    }
}

/// A file that could not be read at all, as one problem on its line.
fn unreadable(e: import::ReadError) -> ApiError {
    let (line, reason) = match &e {
        import::ReadError::Syntax { line, reason, .. } => (*line, reason.clone()),
        other => (0, other.to_string()),
    };
    let problems = serde_json::json!([{"line": line, "field": "-", "reason": reason}]);
    ApiError::BadRequestWith(
        format!("{e}; nothing was imported"),
        serde_json::Map::from_iter([("problems".to_owned(), problems)]),
    )
}

/// Checks (and unless `dry_run`, writes) the rows; every bad row is refused with its line.
fn judge(
    c: &Conn,
    kind: Kind,
    dry_run: bool,
    rows: impl Iterator<Item = Result<import::RawRow, import::ReadError>>,
) -> Result<Imported, ApiError> {
    let imported = if dry_run {
        registry_store::import(None, Some(c), kind, rows)
    } else {
        registry_store::import(Some(c), None, kind, rows)
    };
    match imported.map_err(|e| match e {
        registry_store::ImportError::Read(e) => unreadable(e),
        registry_store::ImportError::Store(e) => e.into(),
    })? {
        registry_store::Imported::Rows(rows) => Ok(Imported { rows, dry_run }),
        registry_store::Imported::Refused {
            rows,
            accepted,
            errors,
        } => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let details =
                serde_json::json!({"rows": rows, "accepted": accepted, "problems": errors});
            let serde_json::Value::Object(details) = details else {
                unreachable!("a JSON object")
            };
            Err(ApiError::BadRequestWith(
                format!(
                    "{} problem(s) in {} of {rows} row(s); nothing was imported: {}",
                    errors.len(),
                    rows - accepted,
                    list.join("; ")
                ),
                details,
            ))
        }
    }
}

async fn import_kind(
    s: AppState,
    h: HeaderMap,
    kind: Kind,
    dry_run: bool,
    body: String,
) -> Result<Json<Imported>, ApiError> {
    super::auth::admin(&s, &h)?;
    let body = ImportBody::of(&h, body);
    let name = "request body".to_owned();
    write_db(&s, move |c| match body {
        ImportBody::Csv(text) => {
            let rows =
                import::CsvRows::new(std::io::Cursor::new(text), name).map_err(unreadable)?;
            judge(c, kind, dry_run, rows)
        }
        ImportBody::Json(text) => {
            let rows = import::JsonRows::new(text, name).map_err(unreadable)?;
            judge(c, kind, dry_run, rows)
        }
    })
    .await
    .map(Json)
}

async fn import_items(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<ImportParams>,
    body: String,
) -> Result<Json<Imported>, ApiError> {
    import_kind(s, h, Kind::Items, p.dry_run, body).await
}

async fn import_entities(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<ImportParams>,
    body: String,
) -> Result<Json<Imported>, ApiError> {
    import_kind(s, h, Kind::Entities, p.dry_run, body).await
}

async fn import_inspectors(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(p): Query<ImportParams>,
    body: String,
) -> Result<Json<Imported>, ApiError> {
    import_kind(s, h, Kind::Inspectors, p.dry_run, body).await
}

async fn plans(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Vec<Plan>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(read_db(&s, |c| Ok(plan_store::plans(c)?)).await?))
}

async fn put_plan(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<Json<Plan>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Plan>, ApiError> {
    super::auth::admin(&s, &h)?;
    let Json(plan) =
        body.map_err(|e| ApiError::BadRequest(format!("{e}; see docs/draw-algorithm.md")))?;
    let saved = plan.clone();
    write_db(&s, move |c| {
        let tx = c.transaction()?;
        plan_store::save(&tx, &plan)?;
        let text = serde_json::to_string(&plan).expect("plans serialise");
        crate::audit::append(
            &tx,
            crate::audit::EntryKind::PlanSaved,
            &format!("plan:{}", plan.id.as_str()),
            &serde_json::json!({
                "plan": plan.id.as_str(),
                "plan_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
            }),
            spotcheck_protocol::UnixMillis::now(),
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(Json(saved))
}

async fn progress(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(plan): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    authorize(&s, &h)?;
    let p = read_db(&s, move |c| {
        let p = plan_store::plan(c, &plan)?;
        Ok(plan_store::progress(c, &p)?)
    })
    .await?;
    Ok(Json(p))
}

/// Joint tasks over the stored tasks, each department's quota against them, and the quota
/// against the annual plans.
#[derive(Serialize)]
struct JointView {
    joint_tasks: Vec<JointTask>,
    quotas: Vec<Quota>,
    planned_quotas: Vec<Quota>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JointParams {
    /// The year whose random tasks count toward the quota (default: this year in China).
    year: Option<u16>,
}

async fn joint_view(
    State(s): State<AppState>,
    h: HeaderMap,
    params: Result<Query<JointParams>, QueryRejection>,
) -> Result<Json<JointView>, ApiError> {
    authorize(&s, &h)?;
    let Query(p) = params.map_err(|e| ApiError::BadRequest(format!("{e}; expected ?year=YYYY")))?;
    let year = p.year.unwrap_or_else(|| {
        let (y, _, _) = crate::rules::ChinaDay::of(spotcheck_protocol::UnixMillis::now()).ymd();
        u16::try_from(y).unwrap_or(u16::MAX)
    });
    let tasks = read_db(&s, |c| Ok(joint::stored_tasks(c)?)).await?;
    let joint_tasks = joint::merge(&tasks);
    let quotas = joint::year_quotas(&tasks, year);
    let plans = read_db(&s, |c| {
        let plans = plan_store::plans(c)?;
        let entities =
            registry_store::entities(c).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(plans
            .into_iter()
            .map(|p| {
                let n = plan_store::planned_entities(&p, &entities);
                (p, n)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(JointView {
        joint_tasks,
        quotas,
        planned_quotas: joint::plan_quotas(&plans),
    }))
}

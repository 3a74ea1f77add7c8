//! Registry, plan and joint-inspection routes (read: the bureau's staff; write: admin): the item list and the two libraries
//! (list, import a JSON array atomically with `?dry_run=true`), plans and their progress,
//! joint tasks and the joint quota.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::draws::write;
use super::{authorize, read, ApiError, AppState};
use crate::joint::{self, JointTask, Quota};
use crate::plan::store::{self as plan_store, Progress};
use crate::plan::Plan;
use crate::registry::import;
use crate::registry::model::{Entity, Inspector, Item};
use crate::registry::parse::Kind;
use crate::registry::store::{self as registry_store, RegistryStoreError};

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
    Ok(Json(read(&s, |c| Ok(registry_store::items(c))).await??))
}

async fn entities(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Vec<Entity>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(read(&s, |c| Ok(registry_store::entities(c))).await??))
}

async fn inspectors(
    State(s): State<AppState>,
    h: HeaderMap,
) -> Result<Json<Vec<Inspector>>, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(
        read(&s, |c| Ok(registry_store::inspectors(c))).await??,
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

async fn import_kind(
    s: AppState,
    h: HeaderMap,
    kind: Kind,
    dry_run: bool,
    body: String,
) -> Result<Json<Imported>, ApiError> {
    super::auth::admin(&s, &h)?;
    let rows = import::JsonRows::new(body, "request body".to_owned())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    write(&s, move |c| {
        let conn = (!dry_run).then_some(&mut *c);
        let imported = registry_store::import(conn, None, kind, rows).map_err(|e| match e {
            registry_store::ImportError::Read(e) => ApiError::BadRequest(e.to_string()),
            registry_store::ImportError::Store(e) => e.into(),
        })?;
        match imported {
            registry_store::Imported::Rows(rows) => Ok(Imported { rows, dry_run }),
            registry_store::Imported::Refused(errors) => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                Err(ApiError::BadRequest(format!(
                    "{} problem(s); nothing was imported: {}",
                    errors.len(),
                    list.join("; ")
                )))
            }
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
    Ok(Json(read(&s, |c| Ok(plan_store::plans(c))).await??))
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
    write(&s, move |c| {
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
    let p = read(&s, move |c| {
        Ok(plan_store::plan(c, &plan).and_then(|p| plan_store::progress(c, &p)))
    })
    .await??;
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
    let tasks = read(&s, |c| Ok(joint::stored_tasks(c))).await??;
    let joint_tasks = joint::merge(&tasks);
    let quotas = joint::year_quotas(&tasks, year);
    let plans = read(&s, |c| {
        Ok(plan_store::plans(c).and_then(|plans| {
            let entities = registry_store::entities(c)?;
            Ok(plans
                .into_iter()
                .map(|p| {
                    let n = plan_store::planned_entities(&p, &entities);
                    (p, n)
                })
                .collect::<Vec<_>>())
        }))
    })
    .await??;
    Ok(Json(JointView {
        joint_tasks,
        quotas,
        planned_quotas: joint::plan_quotas(&plans),
    }))
}

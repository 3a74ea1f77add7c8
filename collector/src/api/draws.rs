//! Draw routes: commitments (public at once), public records (after the batch's inspection
//! window), full records, plans' batches committed and revealed, recusals (admin). Records are
//! listed in the JSON forms `draw verify` reads. The disclosure policy is in
//! `docs/draw-algorithm.md`, "Disclosure".

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{read_db, ApiError, AppState};
use crate::draw::store::{self as draw_store, Commitment, DrawStoreError, PublicForm};
use crate::draw::{DrawError, DrawRecord, Replacement};
use crate::plan::store::{self as plan_store, PlanStoreError};
use crate::registry::model::InspectorId;
use crate::registry::CreditCode;
use crate::store;

/// The draw routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/draws", get(records))
        .route("/api/v1/public/draws", get(public_records))
        .route("/api/v1/public/draw-commitments", get(commitments))
        .route("/api/v1/plans/{plan}/batches/{batch}/commit", post(commit))
        .route("/api/v1/plans/{plan}/batches/{batch}/reveal", post(reveal))
        .route("/api/v1/draws/{draw}/recusals", post(recuse))
}

impl From<DrawError> for ApiError {
    fn from(e: DrawError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<DrawStoreError> for ApiError {
    fn from(e: DrawStoreError) -> Self {
        match e {
            DrawStoreError::Db(e) => ApiError::Internal(e.to_string()),
            DrawStoreError::Corrupt { .. } | DrawStoreError::Audit(_) | DrawStoreError::Task(_) => {
                ApiError::Internal(e.to_string())
            }
            DrawStoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<PlanStoreError> for ApiError {
    fn from(e: PlanStoreError) -> Self {
        match e {
            PlanStoreError::DrawStore(e) => e.into(),
            PlanStoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
            PlanStoreError::Db(_)
            | PlanStoreError::Registry(_)
            | PlanStoreError::Corrupt { .. } => ApiError::Internal(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// [`write`] for code moved to [`store::db::Sql`]: runs on either engine.
pub(super) async fn write_db<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&store::db::Conn) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let access = store::access::of_url(&s.store);
    let actor = super::auth::acting_user()?;
    tokio::task::spawn_blocking(move || {
        access.write_db(|conn| crate::audit::acting(actor, || f(conn)))?
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

fn now_ms() -> i64 {
    spotcheck_protocol::UnixMillis::now().0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitParams {
    limit: Option<u32>,
}

async fn list(s: &AppState, p: LimitParams) -> Result<Vec<DrawRecord>, ApiError> {
    let limit = p.limit.unwrap_or(20).min(1000);
    read_db(s, move |c| Ok(draw_store::records(c, limit)?)).await
}

async fn records(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<LimitParams>,
) -> Result<Json<Vec<DrawRecord>>, ApiError> {
    // The full records: the admin and the auditor.
    super::auth::oversight(&s, &headers)?;
    Ok(Json(list(&s, p).await?))
}

/// Public records, without a token: only draws whose batch's inspection window has ended
/// (China time), in the public form — no undrawn candidate, no conflict, no salt key. Each
/// form is made once from its record and stored (`draws.public_record`) until a recusal
/// changes the record: at a million candidates making it is 2 s of CPU and 116 MB of JSON.
/// The body is the stored texts joined into an array, as `Json` would write the list.
async fn public_records(
    State(s): State<AppState>,
    Query(p): Query<LimitParams>,
) -> Result<([(header::HeaderName, &'static str); 1], String), ApiError> {
    let limit = p.limit.unwrap_or(20).min(1000);
    let today = crate::tasks::china_day(spotcheck_protocol::UnixMillis::now());
    let (forms, made) = read_db(&s, move |c| {
        let mut forms: Vec<String> = Vec::new();
        // Forms made now: their place in `forms`, the draw and the record they come from.
        let mut made: Vec<(usize, String, String)> = Vec::new();
        for (id, window_end) in draw_store::revealed_windows(c, limit)? {
            if !public_after(window_end.as_deref(), &today) {
                continue;
            }
            match draw_store::public_form(c, &id)? {
                PublicForm::Stored(text) => forms.push(text),
                PublicForm::Record(json) => {
                    let record: DrawRecord = serde_json::from_str(&json).map_err(|e| {
                        ApiError::Internal(format!("stored draw {id:?} is corrupt: {e}"))
                    })?;
                    forms.push(
                        serde_json::to_string(&record.to_public()).expect("records serialise"),
                    );
                    made.push((forms.len() - 1, id, json));
                }
            }
        }
        Ok((forms, made))
    })
    .await?;
    let forms = if made.is_empty() {
        forms
    } else {
        store_public_forms(&s, forms, made).await?
    };
    let mut body = String::with_capacity(forms.iter().map(|f| f.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, f) in forms.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(f);
    }
    body.push(']');
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// Stores the public forms just made (`made`: their place in `forms`, the draw, the record
/// they were made from) and gives `forms` back. A form that cannot be stored is logged and
/// made again by the next request; the response does not depend on it.
async fn store_public_forms(
    s: &AppState,
    forms: Vec<String>,
    made: Vec<(usize, String, String)>,
) -> Result<Vec<String>, ApiError> {
    let access = store::access::of_url(&s.store);
    let done = tokio::task::spawn_blocking(move || {
        let stored = access.write_db(|c| -> Result<(), DrawStoreError> {
            for (at, id, record) in &made {
                draw_store::store_public(c, id, record, &forms[*at])?;
            }
            Ok(())
        });
        let error = match stored {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        (forms, error)
    })
    .await;
    match done {
        Ok((forms, error)) => {
            if let Some(error) = error {
                tracing::warn!(message = "Public draw record not stored; the next request makes it again.", %error);
            }
            Ok(forms)
        }
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(ApiError::Internal(e.to_string())),
        },
    }
}

/// Whether a record whose batch window ends on `window_end` is public on `today`: from the
/// day after the window's last day. A draw of no plan batch is never public.
fn public_after(window_end: Option<&str>, today: &str) -> bool {
    window_end.is_some_and(|end| end < today)
}

async fn commitments(
    State(s): State<AppState>,
    Query(p): Query<LimitParams>,
) -> Result<Json<Vec<Commitment>>, ApiError> {
    let limit = p.limit.unwrap_or(100).min(1000);
    Ok(Json(
        read_db(&s, move |c| Ok(draw_store::commitments(c, limit)?)).await?,
    ))
}

async fn commit(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath((plan, batch)): UrlPath<(String, String)>,
) -> Result<Json<Commitment>, ApiError> {
    super::auth::admin(&s, &headers)?;
    let c = write_db(&s, move |c| {
        Ok(plan_store::commit_batch(c, &plan, &batch, now_ms())?)
    })
    .await?;
    Ok(Json(c))
}

async fn reveal(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath((plan, batch)): UrlPath<(String, String)>,
) -> Result<Json<DrawRecord>, ApiError> {
    super::auth::admin(&s, &headers)?;
    let r = write_db(&s, move |c| {
        // 256 MiB: the reveal's one transaction writes about 300 MB at a million candidates.
        let record = store::db::with_page_cache(c, 256 * 1024, || {
            plan_store::reveal_batch(c, &plan, &batch, now_ms())
        })??;
        // The batch's draw and its partners' inspector draws.
        let id = record.parameters.draw_id.to_string();
        let ids = draw_store::ids_of_plan(c, &plan, &id)?;
        Ok((record, ids))
    })
    .await?;
    let (record, ids) = r;
    // The batch's own record is in hand, as stored: written from it, not read back and
    // parsed again (at a million candidates that is a 68 MB record); the partners' from the
    // store.
    let record = write_file(&s, record).await?;
    let own = record.parameters.draw_id.as_str();
    render_files(&s, ids.into_iter().filter(|id| id != own).collect()).await;
    Ok(Json(record))
}

/// Writes the file of `record`, just stored (`DATA/draws/{id}.json`), as [`render_files`]
/// renders it from the store. The record is stored already: a file that cannot be written is
/// logged, and `draw export` renders it again.
async fn write_file(s: &AppState, record: DrawRecord) -> Result<DrawRecord, ApiError> {
    let out = crate::draw::files::dir(&s.data_dir);
    let done = tokio::task::spawn_blocking(move || {
        let written = crate::draw::files::write(&out, &record);
        (record, written)
    })
    .await;
    match done {
        Ok((record, Ok(_))) => Ok(record),
        Ok((record, Err(error))) => {
            tracing::warn!(message = "Draw record file not rewritten; run `spotcheck-collector draw export`.", %error);
            Ok(record)
        }
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(ApiError::Internal(e.to_string())),
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recusal {
    entity: CreditCode,
    inspector: InspectorId,
}

async fn recuse(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath(draw): UrlPath<String>,
    body: Result<Json<Recusal>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Replacement>, ApiError> {
    super::auth::admin(&s, &headers)?;
    let Json(r) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; expected {{\"entity\": CREDIT_CODE, \"inspector\": ID}}"
        ))
    })?;
    let id = draw.clone();
    let rep = write_db(&s, move |c| {
        Ok(draw_store::recuse(c, &draw, &r.entity, &r.inspector)?)
    })
    .await?;
    render_files(&s, vec![id]).await;
    Ok(Json(rep))
}

/// Rewrites the record files of draws `ids` (`DATA/draws/{id}.json`) from the store, the one
/// source, after their records changed. The change is committed already: a file that cannot
/// be written is logged, and `draw export` renders it again.
async fn render_files(s: &AppState, ids: Vec<String>) {
    let data = s.data_dir.clone();
    let access = store::access::of_url(&s.store);
    let done = tokio::task::spawn_blocking(move || {
        access.read_db(|c| crate::draw::files::refresh(c, &crate::draw::files::dir(&data), &ids))
    })
    .await;
    let error = match done {
        Ok(Ok(Ok(_))) => return,
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(message = "Draw record file not rewritten; run `spotcheck-collector draw export`.", %error);
}

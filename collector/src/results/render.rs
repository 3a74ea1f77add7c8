//! The public feed rendered as JSON or CSV, columns in the order of [`COLUMNS`]
//! (documented in `docs/publication.md`; changing it breaks downstream spreadsheets).

use super::{PublicResult, ResultsError};

/// The feed's columns, in order: the CSV header and the JSON keys.
pub const COLUMNS: [&str; 14] = [
    "task_id",
    "kind",
    "entity_code",
    "entity_name",
    "domain",
    "department",
    "item",
    "item_name",
    "window_start",
    "window_end",
    "result_code",
    "result_label",
    "published_date",
    "published_ms",
];

/// The UTF-8 byte order mark. Excel (as used in Chinese offices) opens a CSV without it as
/// GBK and garbles every label; with it, as UTF-8. Other CSV readers skip or strip it.
pub const BOM: &str = "\u{feff}";

/// The feed as a JSON array of objects with the keys of [`COLUMNS`], in that order.
pub fn to_json(rows: &[PublicResult]) -> String {
    serde_json::to_string(rows).expect("public results serialise")
}

/// The feed as CSV: UTF-8 with a BOM, a header row of [`COLUMNS`], CRLF line ends (RFC 4180,
/// and what Excel writes), fields quoted when needed.
///
/// A text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
/// `'`, so a spreadsheet shows it as text instead of running it as a formula (CSV injection;
/// entity names come from imported files). Codes, dates and numbers never begin so.
pub fn to_csv(rows: &[PublicResult]) -> Result<String, ResultsError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::from(BOM.as_bytes()));
    w.write_record(COLUMNS)?;
    for r in rows {
        let task_id = r.task_id.to_string();
        let published_ms = r.published_ms.to_string();
        w.write_record([
            task_id.as_str(),
            &r.kind,
            &r.entity_code,
            &inert(&r.entity_name),
            &r.domain,
            &r.department,
            &r.item,
            &inert(&r.item_name),
            &r.window_start,
            &r.window_end,
            &r.result_code,
            &r.result_label,
            &r.published_date,
            &published_ms,
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8"))
}

/// `s`, with a leading `'` if a spreadsheet would take it for a formula.
fn inert(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

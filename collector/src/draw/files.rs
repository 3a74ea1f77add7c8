//! The published record files, `DATA/draws/{id}.json`: renderings of the stored record, the
//! one source. The API rewrites a draw's file whenever its record changes (the reveal, a
//! recusal), and `spotcheck-collector draw export` renders them all, so a file never lags
//! behind what the API serves.

use std::path::{Path, PathBuf};

use super::record::DrawRecord;
use super::store::{self, DrawStoreError};

/// The folder of the record files in a data directory.
pub fn dir(data: &Path) -> PathBuf {
    data.join("draws")
}

/// Why a record file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// Reading the record failed.
    #[error(transparent)]
    Store(#[from] DrawStoreError),
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes `record` to `out/{id}.json` (through a temporary file and a rename, so a reader
/// never sees half a record).
pub fn write(out: &Path, record: &DrawRecord) -> Result<PathBuf, FilesError> {
    let path = out.join(format!("{}.json", record.parameters.draw_id));
    let io = |source| FilesError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(out).map_err(io)?;
    let tmp = out.join(format!(".{}.json.tmp", record.parameters.draw_id));
    let json = serde_json::to_string_pretty(record).expect("records serialise");
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Renders the stored records of draws `ids` (those revealed) into `out`.
pub fn refresh(
    conn: &(impl crate::store::db::Sql + ?Sized),
    out: &Path,
    ids: &[String],
) -> Result<Vec<PathBuf>, FilesError> {
    let mut written = Vec::new();
    for id in ids {
        if let Some(record) = store::record(conn, id)? {
            written.push(write(out, &record)?);
        }
    }
    Ok(written)
}

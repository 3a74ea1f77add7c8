//! Recovery: reading a spool directory back after a restart or a crash (see the module docs
//! of [`crate::spool`] for the rules), and inspecting one without changing it.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::segment::{self, io_err, ACK_LOG};
use super::{Loc, Segment, Spool, SpoolError, SpoolOptions, SpoolStats};

pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(id) = entry.file_name().to_str().and_then(segment::segment_id) {
            out.push((id, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers it: torn tails are truncated
    /// and every unconfirmed record is pending again.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        let ack_path = dir.join(ACK_LOG);
        let (acked, good) = segment::read_acks(&ack_path)?;
        let ack_log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ack_path)
            .map_err(io_err("open ack log", &ack_path))?;
        if ack_log.metadata().map(|m| m.len()).unwrap_or(good) > good {
            warn!(message = "Torn tail of the ack log truncated.", path = %ack_path.display());
            ack_log
                .set_len(good)
                .map_err(io_err("truncate ack log", &ack_path))?;
        }
        let max_acked = acked.iter().copied().max().unwrap_or(0);
        let acked: HashSet<u64> = acked.into_iter().collect();
        let floor = segment::read_next_seq(dir);

        let mut spool = Spool {
            dir: dir.to_owned(),
            opts,
            segments: BTreeMap::new(),
            active: None,
            pending: BTreeMap::new(),
            ack_log,
            next_seq: 1,
            floor_written: floor,
            bytes: 0,
            dropped: segment::read_dropped(dir),
            marks: read_marks(dir),
            marks_dirty: false,
            unlogged_acks: 0,
        };
        let mut max_seq = 0;
        for (id, path) in list_segments(dir)? {
            let scan = segment::scan(&path)?;
            if scan.valid_len == 0 {
                fs::remove_file(&path).map_err(io_err("remove empty segment", &path))?;
                continue;
            }
            if scan.valid_len < scan.file_len {
                warn!(
                    message = "Torn tail of a spool segment truncated; the cut-off write was never published.",
                    path = %path.display(),
                    bytes = scan.file_len - scan.valid_len
                );
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io_err("open segment", &path))?;
            if scan.valid_len < scan.file_len {
                file.set_len(scan.valid_len)
                    .map_err(io_err("truncate segment", &path))?;
            }
            let mut live = 0;
            for r in &scan.records {
                if let Some((key, state)) = &r.mark {
                    if spool.marks.get(key).is_none_or(|(s, _)| *s < r.seq) {
                        spool.marks.insert(key.clone(), (r.seq, state.clone()));
                        spool.marks_dirty = true;
                    }
                }
                if !acked.contains(&r.seq) {
                    live += 1;
                    spool.pending.insert(
                        r.seq,
                        Loc {
                            segment: id,
                            offset: r.offset,
                            len: r.len,
                            stream: r.stream,
                        },
                    );
                }
            }
            let last_seq = scan.records.last().map(|r| r.seq);
            max_seq = max_seq.max(last_seq.unwrap_or(0));
            spool.bytes += scan.valid_len;
            spool.segments.insert(
                id,
                Segment {
                    path,
                    file,
                    bytes: scan.valid_len,
                    last_seq,
                    live,
                },
            );
        }
        spool.next_seq = 1.max(floor).max(max_seq + 1).max(max_acked + 1);
        // The floor file exists from the start, so that on a full disk it can be overwritten
        // in place (see `segment::write_floor`). Without room now, it is written later.
        if !dir.join(segment::NEXT_SEQ).exists() {
            match segment::write_atomic(dir, segment::NEXT_SEQ, &segment::ack_entry(spool.next_seq))
            {
                Ok(()) => spool.floor_written = spool.next_seq,
                Err(e) if e.is_disk_full() => {
                    warn!(message = "Disk full at start; the spool opens anyway and waits for acks to free space.", error = %e)
                }
                Err(e) => return Err(e),
            }
        }
        let done: Vec<u64> = spool
            .segments
            .iter()
            .filter(|(_, s)| s.live == 0)
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            spool.delete_segment(id)?;
        }
        debug!(
            message = "Spool opened.",
            dir = %dir.display(),
            pending = spool.pending.len(),
            next_seq = spool.next_seq
        );
        Ok(spool)
    }
}

/// The source marks kept when their segments were deleted; none if the file is missing or
/// unreadable (the sources then fall back to their own state files).
fn read_marks(dir: &Path) -> BTreeMap<String, (u64, String)> {
    match fs::read(dir.join(segment::MARKS)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(message = "Spool marks file unreadable; sources resume from their own state files.", error = %e);
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Reads the state of the spool in `dir` without changing anything (safe while an agent runs,
/// though the answer may then be stale). A missing directory is an empty spool.
pub fn inspect(dir: &Path) -> Result<SpoolStats, SpoolError> {
    if !dir.exists() {
        return Ok(SpoolStats {
            next_seq: 1,
            ..SpoolStats::default()
        });
    }
    let (acked, _) = segment::read_acks(&dir.join(ACK_LOG))?;
    let max_acked = acked.iter().copied().max().unwrap_or(0);
    let acked: HashSet<u64> = acked.into_iter().collect();
    let mut stats = SpoolStats::default();
    let mut max_seq = 0;
    for (_, path) in list_segments(dir)? {
        let scan = segment::scan(&path)?;
        stats.bytes += scan.valid_len;
        stats.pending += scan
            .records
            .iter()
            .filter(|r| !acked.contains(&r.seq))
            .count();
        max_seq = max_seq.max(scan.records.last().map_or(0, |r| r.seq));
    }
    stats.next_seq = 1
        .max(segment::read_next_seq(dir))
        .max(max_seq + 1)
        .max(max_acked + 1);
    stats.dropped = segment::read_dropped(dir);
    Ok(stats)
}

/// The sequence number the agent whose spool is `dir` would give its next batch; after it
/// stopped, `spool_next_seq(dir)? - 1` batches were made in total.
pub fn spool_next_seq(dir: &Path) -> Result<u64, SpoolError> {
    Ok(inspect(dir)?.next_seq)
}

//! Recovery: reading a spool directory back after a restart or a crash (see the module docs
//! of [`crate::spool`] for the rules), and inspecting one without changing it.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::{debug, error, warn};

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
            damaged: 0,
            marks: read_marks(dir),
            marks_dirty: false,
            unlogged_acks: 0,
        };
        let mut max_seq = 0;
        let listed = list_segments(dir)?;
        for (i, (id, path)) in listed.iter().enumerate() {
            let (id, path) = (*id, path.clone());
            // The next segment's name is the seq of its first record: what this one can hold.
            let next_id = listed.get(i + 1).map(|(n, _)| *n);
            let mut scan = segment::scan(&path)?;
            if !scan.magic_ok && scan.records.is_empty() && scan.file_len >= MAGIC_LEN {
                // Nothing in it can be read: set the whole file aside.
                let lost = Lost::new(id.saturating_sub(1), next_id, &acked);
                let q = segment::quarantine(dir, &path, 0, scan.file_len)?;
                fs::remove_file(&path).map_err(io_err("remove damaged segment", &path))?;
                error!(
                    message = "Spool segment unreadable (no spool header, no record): moved to quarantine; the records it held are lost.",
                    path = %path.display(),
                    quarantined = %q.display(),
                    lost = %lost,
                );
                spool.damaged += lost.unconfirmed;
                continue;
            }
            if scan.valid_len == 0 {
                fs::remove_file(&path).map_err(io_err("remove empty segment", &path))?;
                continue;
            }
            if !scan.damaged.is_empty() {
                for &(start, end) in &scan.damaged {
                    let prev = scan
                        .records
                        .iter()
                        .take_while(|r| r.offset < start)
                        .last()
                        .map_or(id.saturating_sub(1), |r| r.seq);
                    let next = scan.records.iter().find(|r| r.offset >= end).map(|r| r.seq);
                    let lost = Lost::new(prev, next, &acked);
                    let q = segment::quarantine(dir, &path, start, end)
                        .map(|q| q.display().to_string())
                        .unwrap_or_else(|e| format!("not kept ({e})"));
                    error!(
                        message = "Spool segment damaged: the bytes between two good records are skipped and set aside; every other record is kept.",
                        path = %path.display(),
                        bytes = %format_args!("{start}..{end}"),
                        quarantined = %q,
                        lost = %lost,
                    );
                    spool.damaged += lost.unconfirmed;
                }
                match segment::rewrite_without_damage(&path, &scan) {
                    Ok(clean) => scan = clean,
                    Err(e) => warn!(
                        message = "Damaged spool segment not rewritten; its good records are read where they are.",
                        path = %path.display(),
                        error = %e
                    ),
                }
            }
            if scan.valid_len < scan.file_len {
                let prev = scan.records.last().map_or(id.saturating_sub(1), |r| r.seq);
                match next_id {
                    // A crash cuts off a write in the segment being appended to, and the next
                    // process starts its segment at the seq after the last good record. A gap
                    // before the next segment means records were there: damage, not a crash.
                    Some(next) if next > prev.saturating_add(1) => {
                        let lost = Lost::new(prev, Some(next), &acked);
                        let q = segment::quarantine(dir, &path, scan.valid_len, scan.file_len)
                            .map(|q| q.display().to_string())
                            .unwrap_or_else(|e| format!("not kept ({e})"));
                        error!(
                            message = "Spool segment damaged at its end: the records after the last good one are lost; the bytes are set aside and cut off.",
                            path = %path.display(),
                            bytes = %format_args!("{}..{}", scan.valid_len, scan.file_len),
                            quarantined = %q,
                            lost = %lost,
                        );
                        spool.damaged += lost.unconfirmed;
                    }
                    _ => warn!(
                        message = "Torn tail of a spool segment truncated; the cut-off write was never published.",
                        path = %path.display(),
                        bytes = scan.file_len - scan.valid_len
                    ),
                }
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

const MAGIC_LEN: u64 = segment::MAGIC.len() as u64;

/// The sequence numbers a damaged stretch of a segment held: after `prev` and before `next`
/// (unknown: the stretch was the end of the newest segment).
struct Lost {
    first: u64,
    last: Option<u64>,
    /// How many of them the collector had not confirmed: lost for good.
    unconfirmed: u64,
}

impl Lost {
    fn new(prev: u64, next: Option<u64>, acked: &HashSet<u64>) -> Lost {
        let first = prev.saturating_add(1);
        let last = next.map(|n| n.saturating_sub(1));
        let unconfirmed = match last {
            Some(last) if last >= first => {
                let confirmed = acked.iter().filter(|s| (first..=last).contains(*s)).count();
                (last - first + 1).saturating_sub(confirmed as u64)
            }
            Some(_) => 0,
            None => 0,
        };
        Lost {
            first,
            last,
            unconfirmed,
        }
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.last {
            Some(last) if last < self.first => write!(f, "no record"),
            Some(last) => write!(
                f,
                "records {}..={last} ({} not yet confirmed by the collector)",
                self.first, self.unconfirmed
            ),
            None => write!(f, "any records from {} on", self.first),
        }
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

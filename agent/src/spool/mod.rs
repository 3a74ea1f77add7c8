//! The disk spool: every batch a source makes waits here, under the sequence number the spool
//! gives it, until the collector confirms it has committed the batch (end to end, not hop by
//! hop; see DESIGN.md "Reliability contract"). It survives kill -9 and broker outages.
//!
//! # Files in `spool.dir`
//!
//! ```text
//! 00000000000000000001.seg   segments, named by the seq of their first record (20 digits)
//! 00000000000000000734.seg
//! acks.log                   confirmations, append-only
//! next_seq                   a floor for the next sequence number
//! marks.json                 source marks whose records were deleted (see below)
//! dropped                    how many records the overflow policy ever dropped
//! ```
//!
//! A record may carry a **source mark** (`Spool::append_marked`): where its source stood once
//! the record's data was read (the file tail's offset, an HTTP request's idempotency key),
//! written in the same frame, so the two can never be apart after a crash. The latest mark of
//! each source is kept in memory and written to `marks.json` before a segment is deleted.
//!
//! **A full disk** never stops the spool for good: a failed append leaves no partial frame or
//! empty segment behind and seals the segment (so it goes once its records are confirmed);
//! a confirmation that cannot be logged is kept in memory until the next ack-log compaction;
//! the next-seq floor is overwritten in place. The publisher pauses the sources meanwhile.
//!
//! A **segment** starts with the 8 magic bytes `SCSPOOL1` and holds records back to back, each
//! framed as
//!
//! ```text
//! len: u32 LE | crc: u32 LE | seq: u64 LE | stream: u8 (0 readings, 1 events) | payload
//! `---- frame header ----'   `------------------ body: len bytes ------------------'
//! ```
//!
//! where `crc` is the CRC32 (IEEE) of the body and `payload` the batch's JSON as published,
//! already carrying its seq. Records are appended only to the newest segment (the one this
//! process started; after a restart appends go to a new one) and a new segment starts when the
//! current one would exceed `segment_bytes`. On open each segment is read up to the first frame
//! that is short, fails its CRC, or does not increase the seq; the rest is a torn tail of a write
//! cut off by a crash, and is truncated (with a warning).
//!
//! The **ack log** is a sequence of 12-byte entries, `seq: u64 LE | crc32(seq bytes): u32 LE`,
//! one per confirmed record; a torn last entry is dropped on open. It is rewritten (temporary
//! file, fsync, rename) to hold only the seqs of remaining segments whenever a segment is deleted.
//! The **next_seq** file is one such entry holding a floor for the next sequence number; it is
//! written (atomically) before any segment is deleted, so that the numbering continues across
//! restarts even when every record has been confirmed and every segment removed.
//!
//! # Recovery
//!
//! On open, every record in a segment that the ack log does not name is pending again, and the
//! next sequence number is one past the largest seq found in any file. Segments whose records
//! are all confirmed are deleted.
//!
//! # Damage
//!
//! A segment damaged on disk (a flipped byte, a wrong header, a cut) costs only the records
//! the damage hit. The scan skips a bad stretch up to the next good frame (CRC, increasing
//! seq); the stretch's bytes are copied to `quarantine/{segment}.{start}-{end}.damaged`, the
//! segment is rewritten without them, and an ERROR names the file, the bytes and the sequence
//! numbers lost (those between the good records on either side, or up to the next segment's
//! first seq for a damaged end) with how many of them were not yet confirmed
//! ([`Spool::damaged`]). A file with neither the header nor any good frame is moved to
//! `quarantine/` whole. Every other record is sent as usual; the collector sees the lost
//! numbers as given up (`after` skips them). A bad stretch at the end of the newest segment
//! looks the same as a write cut off by a crash, and is truncated as a torn tail.
//!
//! # Durability (`fsync`)
//!
//! - `fsync = true`: each append is `fdatasync`ed before it returns, and a new segment's
//!   directory entry is synced. A record is handed to the publisher only after its append
//!   returns, so nothing ever published can be lost, even by a power cut.
//! - `fsync = false`: appends stay in the OS page cache. They survive kill -9 of the agent (the
//!   kernel still writes them) but not a power cut or a kernel crash, which can lose the last
//!   records, and with them their seqs may be given out again.
//! - Confirmations are never fsynced one by one. Losing the last few in a crash only makes the
//!   agent re-send those batches after the restart, which the collector drops as duplicates by
//!   (agent, seq). [`Spool::flush`] (called on shutdown) syncs everything.
//!
//! # Overflow
//!
//! The segments may take at most `max_bytes`. When an append would exceed that, the oldest
//! segments are deleted with their unconfirmed records (drop oldest); each such record is
//! counted in [`Spool::dropped`] (since open) and a warning names how many were lost.
//!
//! One process per directory: two agents sharing a spool directory would corrupt it.

mod recover;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use spotcheck_protocol::{Seq, Stream};
use tracing::warn;

pub use recover::{inspect, spool_next_seq};

impl SpoolError {
    /// Whether the disk is full (or the user's quota used up): the spool cannot take more
    /// until acknowledged records are deleted.
    pub fn is_disk_full(&self) -> bool {
        match self {
            SpoolError::Io { error, .. } => is_disk_full(error),
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(122)) || e.kind() == std::io::ErrorKind::StorageFull
}

/// Most keyed marks (`group#id`) kept per group: an HTTP client's retry is answered from its
/// idempotency key for this many later requests.
pub const KEYED_MARKS: usize = 10_000;
use segment::{io_err, ACK_LOG, MAGIC, NEXT_SEQ};

/// Why a spool operation failed. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool: cannot {op} {path}: {error}; check that the disk has space and the directory is writable")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file in the spool directory is not what the spool wrote.
    #[error("spool: {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// One record is larger than the whole spool may be.
    #[error(
        "spool: a record of {bytes} bytes cannot fit in spool.max_bytes = {max}; raise max_bytes"
    )]
    RecordTooLarge {
        /// The framed record's size.
        bytes: u64,
        /// The spool's bound.
        max: u64,
    },
}

/// How a spool behaves; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Most bytes all segments together may take.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
    /// fsync each append.
    pub fsync: bool,
}

/// One stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: Seq,
    /// Readings or events: which topic it goes to.
    pub stream: Stream,
    /// The encoded batch, as published.
    pub payload: Vec<u8>,
}

/// A summary of a spool's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// The sequence number the next append gets; `next_seq - 1` batches were ever appended.
    pub next_seq: u64,
    /// Records not yet confirmed.
    pub pending: usize,
    /// Records dropped by the overflow policy since the spool was opened.
    pub dropped: u64,
    /// Bytes the segment files take.
    pub bytes: u64,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    bytes: u64,
    last_seq: Option<u64>,
    /// Unconfirmed records in it.
    live: usize,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u64,
    stream: Stream,
}

/// An open spool directory. Not shared between threads; one owner appends and acks.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    opts: SpoolOptions,
    segments: BTreeMap<u64, Segment>,
    /// The segment this process appends to.
    active: Option<u64>,
    pending: BTreeMap<u64, Loc>,
    ack_log: File,
    next_seq: u64,
    floor_written: u64,
    bytes: u64,
    dropped: u64,
    /// Unconfirmed records found damaged on open (lost; see the module docs on damage).
    damaged: u64,
    /// Per source, the latest mark appended: (its record's seq, the source's state).
    marks: BTreeMap<String, (u64, String)>,
    /// Whether `marks` holds something the marks file does not.
    marks_dirty: bool,
    /// Confirmations not yet in the ack log (the disk was full).
    unlogged_acks: u64,
}

impl Spool {
    /// Appends a record under the next sequence number; `encode` makes the payload for that
    /// seq. May drop the oldest segments first (see the module docs on overflow).
    pub fn append(
        &mut self,
        stream: Stream,
        encode: impl FnOnce(Seq) -> Vec<u8>,
    ) -> Result<Seq, SpoolError> {
        self.append_marked(stream, None, encode)
    }

    /// [`Spool::append`] with a source mark `(source, state)` in the same frame: the record and
    /// where its source stood after reading it are written in one step, so a source that
    /// resumes from [`Spool::mark`] never reads again what is spooled.
    pub fn append_marked(
        &mut self,
        stream: Stream,
        mark: Option<(&str, &str)>,
        encode: impl FnOnce(Seq) -> Vec<u8>,
    ) -> Result<Seq, SpoolError> {
        let seq = self.next_seq;
        let frame = segment::frame_marked(seq, stream, mark, &encode(Seq(seq)));
        let n = frame.len() as u64;
        let header = MAGIC.len() as u64;
        if n + header > self.opts.max_bytes {
            return Err(SpoolError::RecordTooLarge {
                bytes: n,
                max: self.opts.max_bytes,
            });
        }
        if let Some(id) = self.active {
            let seg = &self.segments[&id];
            if seg.last_seq.is_some() && seg.bytes + n > self.opts.segment_bytes {
                self.seal_active()?;
            }
        }
        loop {
            let need = n + if self.active.is_none() { header } else { 0 };
            if self.bytes + need <= self.opts.max_bytes {
                break;
            }
            let oldest = self
                .segments
                .keys()
                .copied()
                .find(|&id| Some(id) != self.active);
            match oldest {
                Some(id) => self.drop_segment(id)?,
                None if self.active.is_some() => self.seal_active()?,
                None => break,
            }
        }
        let id = match self.active {
            Some(id) => id,
            None => self.start_segment(seq)?,
        };
        let seg = self
            .segments
            .get_mut(&id)
            .expect("the active segment exists");
        let offset = seg.bytes;
        let written = seg.file.write_all(&frame).and_then(|()| {
            if self.opts.fsync {
                seg.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(error) = written {
            // Leave no partial frame behind for the next append to follow.
            let _ = seg.file.set_len(offset);
            if is_disk_full(&error) {
                // Appends go to a new segment from now on, so that this one is deleted (and
                // its space freed) as soon as its last record is confirmed.
                let path = seg.path.clone();
                let _ = self.seal_active();
                return Err(SpoolError::Io {
                    op: "append to segment",
                    path,
                    error,
                });
            }
            return Err(SpoolError::Io {
                op: "append to segment",
                path: seg.path.clone(),
                error,
            });
        }
        seg.bytes += n;
        seg.last_seq = Some(seq);
        seg.live += 1;
        self.bytes += n;
        self.pending.insert(
            seq,
            Loc {
                segment: id,
                offset,
                len: n,
                stream,
            },
        );
        self.next_seq += 1;
        if let Some((key, state)) = mark {
            self.marks.insert(key.to_owned(), (seq, state.to_owned()));
            self.marks_dirty = true;
            if let Some((group, _)) = key.split_once('#') {
                self.bound_group(group);
            }
        }
        Ok(Seq(seq))
    }

    /// Keyed marks (`group#id`, one per request an HTTP client may retry) are kept at most
    /// [`KEYED_MARKS`] per group; the oldest go first.
    fn bound_group(&mut self, group: &str) {
        let prefix = format!("{group}#");
        let in_group = || {
            self.marks
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
        };
        if in_group().count() <= KEYED_MARKS {
            return;
        }
        let mut keyed: Vec<(u64, String)> = self
            .marks
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, (seq, _))| (*seq, k.clone()))
            .collect();
        keyed.sort_unstable();
        for (_, k) in &keyed[..keyed.len() - KEYED_MARKS] {
            self.marks.remove(k);
        }
    }

    /// Every source's latest mark, with the seq of the record that carried it.
    pub fn marks(&self) -> std::collections::BTreeMap<String, (Seq, String)> {
        self.marks
            .iter()
            .map(|(k, (seq, state))| (k.clone(), (Seq(*seq), state.clone())))
            .collect()
    }

    /// The latest mark of `source` and the seq of the record that carried it.
    pub fn mark(&self, source: &str) -> Option<(Seq, &str)> {
        self.marks
            .get(source)
            .map(|(seq, state)| (Seq(*seq), state.as_str()))
    }

    /// Marks `seq` confirmed by the collector. Returns whether it was pending (an ack for a
    /// record already confirmed or dropped is ignored). A segment left with no unconfirmed
    /// record is deleted, unless it is the one being appended to.
    pub fn ack(&mut self, seq: Seq) -> Result<bool, SpoolError> {
        let Some(loc) = self.pending.remove(&seq.0) else {
            return Ok(false);
        };
        if let Err(error) = self.ack_log.write_all(&segment::ack_entry(seq.0)) {
            if !is_disk_full(&error) {
                self.pending.insert(seq.0, loc);
                return Err(SpoolError::Io {
                    op: "append to ack log",
                    path: self.dir.join(ACK_LOG),
                    error,
                });
            }
            // A full disk: the confirmation is kept in memory, and written with the next
            // compaction of the ack log (after a segment is deleted, which frees space). Lost
            // in a crash meanwhile, it only makes the agent send the batch again, which the
            // collector drops as a duplicate.
            self.unlogged_acks += 1;
        }
        let seg = self
            .segments
            .get_mut(&loc.segment)
            .expect("a pending record's segment exists");
        seg.live -= 1;
        if seg.live == 0 && self.active != Some(loc.segment) {
            self.delete_segment(loc.segment)?;
        }
        Ok(true)
    }

    /// Reads a pending record back; `None` if `seq` is not pending.
    pub fn read(&mut self, seq: Seq) -> Result<Option<Record>, SpoolError> {
        let Some(&loc) = self.pending.get(&seq.0) else {
            return Ok(None);
        };
        let seg = self
            .segments
            .get_mut(&loc.segment)
            .expect("a pending record's segment exists");
        let mut buf = vec![0; loc.len as usize];
        seg.file
            .seek(SeekFrom::Start(loc.offset))
            .and_then(|_| seg.file.read_exact(&mut buf))
            .map_err(io_err("read segment", &seg.path))?;
        match segment::parse_frame(&buf) {
            Some((s, stream, payload, _)) if s == seq.0 && stream == loc.stream => Ok(Some(Record {
                seq,
                stream,
                payload: payload.to_vec(),
            })),
            _ => Err(SpoolError::Corrupt {
                path: seg.path.clone(),
                reason: format!("record {seq} changed on disk after it was written; stop the agent and check the disk"),
            }),
        }
    }

    /// The first pending seq at or after `from`.
    pub fn first_pending_from(&self, from: Seq) -> Option<Seq> {
        self.pending.range(from.0..).next().map(|(&s, _)| Seq(s))
    }

    /// Whether `seq` is pending.
    pub fn is_pending(&self, seq: Seq) -> bool {
        self.pending.contains_key(&seq.0)
    }

    /// Every pending seq, in order.
    pub fn pending(&self) -> impl Iterator<Item = Seq> + '_ {
        self.pending.keys().map(|&s| Seq(s))
    }

    /// How many records are pending.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The seq the next append gets.
    pub fn next_seq(&self) -> Seq {
        Seq(self.next_seq)
    }

    /// Moves the next sequence number up to `next` (the collector's ack says it has stored
    /// numbers up to `next - 1`: this agent's counter is behind, its spool lost or reset).
    /// The floor is written first, and appends go to a new segment, so the numbering survives
    /// a restart and a segment's numbers stay close together. Returns whether it moved.
    pub fn advance_to(&mut self, next: Seq) -> Result<bool, SpoolError> {
        if next.0 <= self.next_seq {
            return Ok(false);
        }
        segment::write_atomic(&self.dir, NEXT_SEQ, &segment::ack_entry(next.0))?;
        self.floor_written = next.0;
        self.seal_active()?;
        self.next_seq = next.0;
        Ok(true)
    }

    /// Records dropped by the overflow policy in this spool's life (kept across restarts).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records not yet confirmed that could not be read back when the spool was opened
    /// (damaged segments, see the module docs): lost, reported in the log.
    pub fn damaged(&self) -> u64 {
        self.damaged
    }

    /// A summary of the state.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            next_seq: self.next_seq,
            pending: self.pending.len(),
            dropped: self.dropped,
            bytes: self.bytes,
        }
    }

    /// Makes every append and confirmation so far durable (fsync of files and directory).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if let Some(seg) = self.active.and_then(|id| self.segments.get(&id)) {
            seg.file
                .sync_all()
                .map_err(io_err("fsync segment", &seg.path))?;
        }
        let ack_path = self.dir.join(ACK_LOG);
        self.ack_log
            .sync_all()
            .map_err(io_err("fsync ack log", &ack_path))?;
        segment::sync_dir(&self.dir)
    }

    fn start_segment(&mut self, id: u64) -> Result<u64, SpoolError> {
        let path = segment::segment_path(&self.dir, id);
        let file = segment::create_segment(&path, self.opts.fsync)?;
        if self.opts.fsync {
            segment::sync_dir(&self.dir)?;
        }
        let header = MAGIC.len() as u64;
        self.bytes += header;
        self.segments.insert(
            id,
            Segment {
                path,
                file,
                bytes: header,
                last_seq: None,
                live: 0,
            },
        );
        self.active = Some(id);
        Ok(id)
    }

    /// Stops appending to the active segment; deletes it if nothing in it is unconfirmed.
    fn seal_active(&mut self) -> Result<(), SpoolError> {
        if let Some(id) = self.active.take() {
            if self.segments[&id].live == 0 {
                self.delete_segment(id)?;
            }
        }
        Ok(())
    }

    /// Overflow: deletes segment `id` with its unconfirmed records, counting them.
    fn drop_segment(&mut self, id: u64) -> Result<(), SpoolError> {
        let seg = &self.segments[&id];
        let lost: Vec<u64> = match seg.last_seq {
            Some(last) => self.pending.range(id..=last).map(|(&s, _)| s).collect(),
            None => Vec::new(),
        };
        for s in &lost {
            self.pending.remove(s);
        }
        self.dropped += lost.len() as u64;
        if !lost.is_empty() {
            // Kept across restarts, so the count never starts again at zero.
            if let Err(e) = segment::write_atomic(
                &self.dir,
                segment::DROPPED,
                &segment::ack_entry(self.dropped),
            ) {
                warn!(message = "Cannot save the count of dropped batches.", error = %e);
            }
            warn!(
                message = "Spool full: oldest unconfirmed batches dropped.",
                dropped = lost.len(),
                first_seq = lost[0],
                last_seq = lost[lost.len() - 1],
                dropped_total = self.dropped,
                max_bytes = self.opts.max_bytes
            );
        }
        self.delete_segment(id)
    }

    /// Deletes a segment file: first the next-seq floor and the source marks, then the file,
    /// then a compacted ack log.
    fn delete_segment(&mut self, id: u64) -> Result<(), SpoolError> {
        if self.floor_written < self.next_seq {
            segment::write_floor(&self.dir, self.next_seq)?;
            self.floor_written = self.next_seq;
        }
        if self.marks_dirty {
            let json = serde_json::to_vec(&self.marks).expect("marks serialize");
            match segment::write_atomic(&self.dir, segment::MARKS, &json) {
                Ok(()) => self.marks_dirty = false,
                // Kept in memory and written at the next deletion; the records that carry
                // them stay on disk until then only if this segment is not theirs, so a crash
                // now makes a source resume from its own state file.
                Err(e) if e.is_disk_full() => {
                    warn!(message = "Disk full: source marks not saved yet; will retry.", error = %e)
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(seg) = self.segments.remove(&id) {
            if self.active == Some(id) {
                self.active = None;
            }
            self.bytes -= seg.bytes;
            drop(seg.file);
            fs::remove_file(&seg.path).map_err(io_err("remove segment", &seg.path))?;
        }
        match self.compact_ack_log() {
            // The old ack log stays: it names more than it must, which is harmless.
            Err(e) if e.is_disk_full() => {
                warn!(message = "Disk full: the ack log is compacted later.", error = %e);
                Ok(())
            }
            other => other,
        }
    }

    /// Rewrites the ack log to name only confirmed records of remaining segments.
    fn compact_ack_log(&mut self) -> Result<(), SpoolError> {
        let mut bytes = Vec::new();
        for (&id, seg) in &self.segments {
            if let Some(last) = seg.last_seq {
                for s in (id..=last).filter(|s| !self.pending.contains_key(s)) {
                    bytes.extend_from_slice(&segment::ack_entry(s));
                }
            }
        }
        segment::write_atomic(&self.dir, ACK_LOG, &bytes)?;
        self.unlogged_acks = 0;
        let path = self.dir.join(ACK_LOG);
        self.ack_log = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open ack log", &path))?;
        Ok(())
    }
}

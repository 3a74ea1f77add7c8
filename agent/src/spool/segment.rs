//! The on-disk framing of segment files, the ack log and the next-seq file (see the module docs
//! of [`crate::spool`] for the layout), and the scans that read them back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use spotcheck_protocol::Stream;

use super::SpoolError;

/// First bytes of every segment file; the digit is the format version.
pub const MAGIC: &[u8; 8] = b"SCSPOOL1";
/// Bytes before a record's body: length and CRC32, both little-endian u32.
pub const FRAME_HEADER: u64 = 8;
/// Bytes of a body before its payload: seq (u64) and stream (u8).
const BODY_HEADER: usize = 9;
/// A length field above this is garbage, not a record.
const MAX_BODY: u32 = 16 * 1024 * 1024;
/// Bytes per ack-log entry: seq (u64) and the CRC32 of those 8 bytes.
pub const ACK_ENTRY: usize = 12;

/// The ack log's file name.
pub const ACK_LOG: &str = "acks.log";
/// The next-seq file's name.
pub const NEXT_SEQ: &str = "next_seq";
/// The file holding how many records the overflow policy ever dropped.
pub const DROPPED: &str = "dropped";
/// The subdirectory where damaged bytes of segments are set aside.
pub const QUARANTINE: &str = "quarantine";
/// The source-marks file's name.
pub const MARKS: &str = "marks.json";
/// The stream byte's flag for a record that carries a source mark.
const MARKED: u8 = 0x80;

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |error| SpoolError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}

/// The file name of the segment whose first record has sequence number `id`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// The id of a segment file name, or `None` for any other file.
pub fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn stream_byte(stream: Stream) -> u8 {
    match stream {
        Stream::Readings => 0,
        Stream::Events => 1,
    }
}

fn byte_stream(b: u8) -> Option<Stream> {
    match b {
        0 => Some(Stream::Readings),
        1 => Some(Stream::Events),
        _ => None,
    }
}

/// One framed record, ready to be written with a single `write_all`.
#[cfg(test)]
pub fn frame(seq: u64, stream: Stream, payload: &[u8]) -> Vec<u8> {
    frame_marked(seq, stream, None, payload)
}

/// One framed record, ready to be written with a single `write_all`, optionally carrying a source mark `(source, state)`: where the source stood once
/// this record's data was read, written in the same frame so that the two are never apart.
/// Layout after the stream byte (flagged `0x80`): `key_len: u16 LE | key | state_len: u32 LE |
/// state | payload`.
pub fn frame_marked(
    seq: u64,
    stream: Stream,
    mark: Option<(&str, &str)>,
    payload: &[u8],
) -> Vec<u8> {
    let mark_len = mark.map_or(0, |(k, v)| 6 + k.len() + v.len());
    let body_len = BODY_HEADER + mark_len + payload.len();
    let mut out = Vec::with_capacity(FRAME_HEADER as usize + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    match mark {
        None => out.push(stream_byte(stream)),
        Some((key, state)) => {
            out.push(stream_byte(stream) | MARKED);
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(state.len() as u32).to_le_bytes());
            out.extend_from_slice(state.as_bytes());
        }
    }
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[FRAME_HEADER as usize..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A record found by a scan.
#[derive(Debug, Clone)]
pub struct Found {
    pub seq: u64,
    pub stream: Stream,
    /// The source mark it carries, if any.
    pub mark: Option<(String, String)>,
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Length of the whole frame.
    pub len: u64,
}

/// What a scan of one segment found.
#[derive(Debug)]
pub struct Scan {
    pub records: Vec<Found>,
    /// Bytes of the file up to the end of the last good frame.
    pub valid_len: u64,
    /// The file's length on disk.
    pub file_len: u64,
    /// Whether the file starts with [`MAGIC`].
    pub magic_ok: bool,
    /// Byte ranges `[start, end)` before `valid_len` that are not good frames: damage with good
    /// frames after it (a wrong header counts as `[0, 8)`).
    pub damaged: Vec<(u64, u64)>,
}

/// Parses one frame at the start of `buf`: `Some((seq, stream, payload, frame_len))` or `None`
/// if the bytes are torn or corrupt. A source mark is skipped.
pub fn parse_frame(buf: &[u8]) -> Option<(u64, Stream, &[u8], u64)> {
    parse_frame_marked(buf).map(|(seq, stream, _, payload, len)| (seq, stream, payload, len))
}

/// A record's source mark, as `(source, state)`.
pub type Mark<'a> = (&'a str, &'a str);

/// A parsed frame: seq, stream, source mark, payload, frame length.
pub type Parsed<'a> = (u64, Stream, Option<Mark<'a>>, &'a [u8], u64);

/// [`parse_frame`], with the record's source mark.
pub fn parse_frame_marked(buf: &[u8]) -> Option<Parsed<'_>> {
    let header = buf.get(..FRAME_HEADER as usize)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_BODY || (len as usize) < BODY_HEADER {
        return None;
    }
    let body = buf.get(FRAME_HEADER as usize..FRAME_HEADER as usize + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let stream = byte_stream(body[8] & !MARKED)?;
    let mut rest = &body[BODY_HEADER..];
    let mut mark = None;
    if body[8] & MARKED != 0 {
        let key_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let key = std::str::from_utf8(rest.get(2..2 + key_len)?).ok()?;
        rest = &rest[2 + key_len..];
        let state_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let state = std::str::from_utf8(rest.get(4..4 + state_len)?).ok()?;
        rest = &rest[4 + state_len..];
        mark = Some((key, state));
    }
    Some((seq, stream, mark, rest, FRAME_HEADER + len as u64))
}

/// Reads every good frame of a segment. A frame that is torn or corrupt, or whose sequence
/// number does not increase, is skipped up to the next good frame with a higher number (its
/// bytes are reported in `damaged`); with no good frame after it, it is a torn tail and the
/// scan ends (`valid_len` < `file_len`). A wrong header is damage too, not an error: the
/// frames after it are still read, so a flipped byte costs at most the record it hit.
pub fn scan(path: &Path) -> Result<Scan, SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("read segment", path))?;
    let file_len = bytes.len() as u64;
    if bytes.len() < MAGIC.len() {
        // Created, then killed before the header was written.
        return Ok(Scan {
            records: Vec::new(),
            valid_len: 0,
            file_len,
            magic_ok: false,
            damaged: Vec::new(),
        });
    }
    let magic_ok = &bytes[..MAGIC.len()] == MAGIC;
    let mut damaged = Vec::new();
    if !magic_ok {
        damaged.push((0, MAGIC.len() as u64));
    }
    let mut offset = MAGIC.len();
    let mut records = Vec::new();
    let mut last: Option<u64> = None;
    let good_at = |at: usize, last: Option<u64>| {
        parse_frame_marked(&bytes[at..]).filter(|(seq, ..)| last.is_none_or(|l| *seq > l))
    };
    loop {
        let frame = match good_at(offset, last) {
            Some(f) => f,
            None => {
                let Some(next) = (offset + 1..bytes.len()).find(|&at| good_at(at, last).is_some())
                else {
                    break; // a torn tail, or the end of the file
                };
                damaged.push((offset as u64, next as u64));
                offset = next;
                good_at(offset, last).expect("found just now")
            }
        };
        let (seq, stream, mark, _, len) = frame;
        last = Some(seq);
        records.push(Found {
            seq,
            stream,
            mark: mark.map(|(k, v)| (k.to_owned(), v.to_owned())),
            offset: offset as u64,
            len,
        });
        offset += len as usize;
    }
    if !magic_ok && records.is_empty() {
        // Not a segment at all (or nothing of one is left): the caller sets it aside whole.
        damaged.clear();
        offset = 0;
    }
    Ok(Scan {
        records,
        valid_len: offset as u64,
        file_len,
        magic_ok,
        damaged,
    })
}

/// Rewrites the segment at `path` to hold `MAGIC` and the good frames of `scan` only
/// (temporary file, fsync, rename), so that damage is reported once and the records keep
/// their place; returns the new scan.
pub fn rewrite_without_damage(path: &Path, scan: &Scan) -> Result<Scan, SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("read segment", path))?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(MAGIC);
    for r in &scan.records {
        out.extend_from_slice(&bytes[r.offset as usize..(r.offset + r.len) as usize]);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    write_atomic(dir, name, &out)?;
    scan_clean(path)
}

fn scan_clean(path: &Path) -> Result<Scan, SpoolError> {
    let scan = scan(path)?;
    if scan.damaged.is_empty() && scan.magic_ok {
        Ok(scan)
    } else {
        Err(SpoolError::Corrupt {
            path: path.to_owned(),
            reason: "still damaged after it was rewritten; stop the agent and check the disk"
                .into(),
        })
    }
}

/// Copies bytes `[start, end)` of `path` into `dir/quarantine/`, named after the file and the
/// range, for whoever looks into the damage; returns that file's path.
pub fn quarantine(dir: &Path, path: &Path, start: u64, end: u64) -> Result<PathBuf, SpoolError> {
    let qdir = dir.join(QUARANTINE);
    fs::create_dir_all(&qdir).map_err(io_err("create directory", &qdir))?;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("read segment", path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let end = end.min(bytes.len() as u64);
    let start = start.min(end);
    let out = qdir.join(format!("{name}.{start}-{end}.damaged"));
    fs::write(&out, &bytes[start as usize..end as usize]).map_err(io_err("write", &out))?;
    sync_dir(&qdir)?;
    Ok(out)
}

/// Creates a new segment file holding only the magic header. On failure (a full disk) no
/// file is left behind, so the next attempt can create it.
pub fn create_segment(path: &Path, fsync: bool) -> Result<File, SpoolError> {
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create segment", path))?;
    let written = f
        .write_all(MAGIC)
        .map_err(io_err("write segment header", path))
        .and_then(|()| {
            if fsync {
                f.sync_data().map_err(io_err("fsync segment", path))
            } else {
                Ok(())
            }
        });
    if let Err(e) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(f)
}

/// Writes the next-seq floor: atomically when the disk has room; on a full disk, over the
/// existing file in place (12 bytes, no new block), so that deleting a segment, which is what
/// frees space, never waits for space.
pub fn write_floor(dir: &Path, next_seq: u64) -> Result<(), SpoolError> {
    let entry = ack_entry(next_seq);
    match write_atomic(dir, NEXT_SEQ, &entry) {
        Err(e) if e.is_disk_full() => {
            let path = dir.join(NEXT_SEQ);
            let tmp = dir.join(format!("{NEXT_SEQ}.tmp"));
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new().write(true).open(&path).map_err(|_| e)?;
            f.write_all(&entry)
                .and_then(|()| f.sync_data())
                .map_err(io_err("overwrite", &path))
        }
        other => other,
    }
}

/// The sequence numbers in an ack log; a torn or corrupt tail ends the read. Also returns the
/// length of the good prefix.
pub fn read_acks(path: &Path) -> Result<(Vec<u64>, u64), SpoolError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err("read ack log", path)(e)),
    };
    let mut seqs = Vec::with_capacity(bytes.len() / ACK_ENTRY);
    for entry in bytes.chunks_exact(ACK_ENTRY) {
        let (seq, crc) = entry.split_at(8);
        if crc32fast::hash(seq).to_le_bytes() != crc {
            break;
        }
        seqs.push(u64::from_le_bytes(seq.try_into().expect("8 bytes")));
    }
    let good = (seqs.len() * ACK_ENTRY) as u64;
    Ok((seqs, good))
}

/// One ack-log entry.
pub fn ack_entry(seq: u64) -> [u8; ACK_ENTRY] {
    let mut out = [0; ACK_ENTRY];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..].copy_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
    out
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, fsync, rename, fsync of the dir.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
    sync_dir(dir)
}

/// Makes file creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// The value of the next-seq file, or 0 if it is missing or unreadable (it is only a floor).
pub fn read_next_seq(dir: &Path) -> u64 {
    read_entry(dir, NEXT_SEQ)
}

/// The count of records ever dropped (0 when there is no file).
pub fn read_dropped(dir: &Path) -> u64 {
    read_entry(dir, DROPPED)
}

fn read_entry(dir: &Path, name: &str) -> u64 {
    let Ok(bytes) = fs::read(dir.join(name)) else {
        return 0;
    };
    if bytes.len() != ACK_ENTRY {
        return 0;
    }
    let (seq, crc) = bytes.split_at(8);
    if crc32fast::hash(seq).to_le_bytes() != crc {
        return 0;
    }
    u64::from_le_bytes(seq.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_parses_back_and_any_damage_is_detected() {
        let f = frame(42, Stream::Events, b"{\"x\":1}");
        let (seq, stream, payload, len) = parse_frame(&f).unwrap();
        assert_eq!(
            (seq, stream, payload, len),
            (42, Stream::Events, &b"{\"x\":1}"[..], f.len() as u64)
        );
        for cut in 0..f.len() {
            assert!(parse_frame(&f[..cut]).is_none(), "torn at {cut}");
        }
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x40;
            assert!(parse_frame(&bad).is_none(), "flip at {i}");
        }
    }

    #[test]
    fn a_marked_frame_carries_its_mark_and_any_damage_is_detected() {
        let f = frame_marked(
            7,
            Stream::Readings,
            Some(("file:s", "{\"offset\":9}")),
            b"{}",
        );
        let (seq, stream, mark, payload, len) = parse_frame_marked(&f).unwrap();
        assert_eq!(
            (seq, stream, mark, payload, len),
            (
                7,
                Stream::Readings,
                Some(("file:s", "{\"offset\":9}")),
                &b"{}"[..],
                f.len() as u64
            )
        );
        assert_eq!(parse_frame(&f).unwrap().2, b"{}", "the payload alone");
        for cut in 0..f.len() {
            assert!(parse_frame_marked(&f[..cut]).is_none(), "torn at {cut}");
        }
    }

    #[test]
    fn segment_names_round_trip() {
        let p = segment_path(Path::new("/x"), 17);
        assert_eq!(
            segment_id(p.file_name().unwrap().to_str().unwrap()),
            Some(17)
        );
        assert_eq!(segment_id("acks.log"), None);
        assert_eq!(segment_id("17.seg"), None);
    }
}

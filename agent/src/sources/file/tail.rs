//! The tailing itself: where the file tail stands, reading new lines, noticing rotation.

use std::fs::{File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spotcheck_protocol::Batch;
use tracing::{info, warn};

use super::FileSource;
use crate::sources::lines::{Batcher, LineParser};
use crate::sources::{SourceError, SpoolQueue};
use crate::telemetry;

/// Most bytes read per step. A step reads only what was appended since the last one (usually a
/// few kilobytes), into a buffer of that size: the chunk is a bound, not an allocation.
const CHUNK: usize = 1024 * 1024;

/// Where the tail stands; saved in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailState {
    /// The inode of the file being read.
    pub inode: u64,
    /// Bytes of it already turned into spooled batches (or skipped as bad lines).
    pub offset: u64,
    /// Its CSV header, once read.
    pub header: Option<Vec<String>>,
    /// The seq of the last batch spooled up to `offset` (state file only; absent in marks
    /// and in files from before marks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl TailState {
    /// Reads the state file; `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<TailState>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                format!(
                    "state file {} is not valid ({e}); delete it to read the file from its start",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read state file {}: {e}; check its permissions",
                path.display()
            )),
        }
    }

    /// Writes the state file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).expect("the state serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}
#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Runs file I/O on the runtime's blocking threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// The bytes of `file` from `offset` on (at most [`CHUNK`], in a buffer of their size) and,
/// if they hold no complete line, the metadata of what `path` names now (`None`: nothing).
fn look(file: &File, offset: u64, path: &Path) -> std::io::Result<(Vec<u8>, Option<Metadata>)> {
    let len = file.metadata()?.len();
    let want = len.saturating_sub(offset).min(CHUNK as u64);
    let mut buf = Vec::with_capacity(want as usize);
    if want > 0 {
        let mut reader = file;
        reader.seek(SeekFrom::Start(offset))?;
        reader.take(want).read_to_end(&mut buf)?;
    }
    if buf.contains(&b'\n') {
        return Ok((buf, None));
    }
    match std::fs::metadata(path) {
        Ok(m) => Ok((buf, Some(m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((buf, None)),
        Err(e) => Err(e),
    }
}

/// The open file and what has been read of it.
pub(super) struct Tail {
    name: String,
    path: PathBuf,
    state_file: PathBuf,
    out: SpoolQueue,
    batcher: Batcher,
    parser: LineParser,
    /// The open file, shared with the blocking thread that reads it.
    file: Option<Arc<File>>,
    state: TailState,
    /// State as it stood at the last start, used once to resume.
    resume: Option<TailState>,
    /// The name the spool keeps this tail's marks under.
    mark_key: String,
}

impl Tail {
    pub(super) fn new(source: &FileSource, resume: Option<TailState>) -> Tail {
        Tail {
            name: source.name.clone(),
            path: source.config.path.clone(),
            state_file: source.config.state_file.clone(),
            out: source.out.clone(),
            batcher: Batcher::new(
                source.agent.clone(),
                source.domain,
                source.config.records_per_batch,
            ),
            parser: LineParser::new(source.config.format, None),
            file: None,
            state: TailState {
                inode: 0,
                offset: 0,
                header: None,
                seq: None,
            },
            mark_key: source.config.mark_key(),
            resume,
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> SourceError {
        SourceError::Start {
            source_name: self.name.clone(),
            reason: format!("cannot {what} {}: {e}", self.path.display()),
        }
    }

    /// Opens the file if it exists, resuming at the saved offset when it is the same file.
    async fn open(&mut self) -> Result<bool, SourceError> {
        let path = self.path.clone();
        let opened = blocking(move || {
            let file = File::open(&path)?;
            let meta = file.metadata()?;
            Ok((file, meta))
        })
        .await;
        let (file, meta) = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io_error("open", e)),
        };
        let ino = inode(&meta);
        self.state = match self.resume.take() {
            Some(s) if s.inode == ino && s.offset <= meta.len() => {
                info!(message = "Resuming the file tail.", source = %self.name, offset = s.offset);
                s
            }
            Some(_) => {
                warn!(message = "The tailed file changed while the agent was stopped; reading the new one from its start.", source = %self.name);
                TailState {
                    inode: ino,
                    offset: 0,
                    header: None,
                    seq: None,
                }
            }
            None => TailState {
                inode: ino,
                offset: 0,
                header: None,
                seq: None,
            },
        };
        self.parser = LineParser::new(self.parser_format(), self.state.header.clone());
        self.file = Some(Arc::new(file));
        Ok(true)
    }

    fn parser_format(&self) -> crate::sources::lines::Format {
        self.parser.format()
    }

    /// Reads and spools what is new; `true` if there may be more to read at once.
    pub(super) async fn step(&mut self) -> Result<bool, SourceError> {
        if self.file.is_none() && !self.open().await? {
            return Ok(false);
        }
        let file = self.file.clone().expect("opened above");
        let (offset, path) = (self.state.offset, self.path.clone());
        // One trip to a blocking thread per step: what was appended, or, when nothing
        // complete was, what the path names now (rotation, truncation).
        let (buf, current) = blocking(move || look(&file, offset, &path))
            .await
            .map_err(|e| self.io_error("read", e))?;
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete > 0 {
            self.consume(&buf[..complete]).await?;
            return Ok(true);
        }
        // At the end of what is complete: has the file been rotated or truncated?
        match current {
            Some(m) if inode(&m) != self.state.inode => {
                if !buf.is_empty() {
                    // The old file's last line had no newline; it will get none now.
                    let mut last = buf;
                    last.push(b'\n');
                    self.consume(&last).await?;
                }
                info!(message = "Tailed file rotated; reading the new one.", source = %self.name);
                self.file = None;
                self.resume = None;
                Ok(true)
            }
            Some(m) if m.len() < self.state.offset => {
                warn!(message = "Tailed file was truncated; reading it from its start.", source = %self.name);
                self.state.offset = 0;
                self.state.header = None;
                self.parser.reset();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Turns complete lines into batches, spools them and saves the offset after each.
    async fn consume(&mut self, bytes: &[u8]) -> Result<(), SourceError> {
        let mut pos = 0usize;
        let base = self.state.offset;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let at = format!("{} byte {}", self.path.display(), base + pos as u64);
            pos += line.len();
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
            let full = match self.parser.parse(&text, &at) {
                Ok(Some(item)) => self.batcher.push(item, &at),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match full {
                Ok(None) => {}
                Ok(Some(batch)) => {
                    let mut batches = vec![batch];
                    batches.extend(self.batcher.flush());
                    self.spool(batches, base + pos as u64).await?;
                }
                Err(e) => telemetry::record_rejected(&self.name, e.code(), &e.to_string()),
            }
        }
        let batches = self.batcher.flush();
        self.spool(batches, base + pos as u64).await
    }

    async fn spool(&mut self, batches: Vec<Batch>, offset: u64) -> Result<(), SourceError> {
        let after = TailState {
            inode: self.state.inode,
            offset,
            header: self.parser.header().cloned(),
            seq: None,
        };
        let count = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            let n = batch.len();
            // The last batch of the group carries where the tail stands after all of them.
            let mark = (i + 1 == count).then(|| {
                let state = serde_json::to_string(&after).expect("the state serializes");
                (self.mark_key.clone(), state)
            });
            let seq =
                self.out
                    .append_marked(batch, mark)
                    .await
                    .map_err(|_| SourceError::SpoolGone {
                        source_name: self.name.clone(),
                    })?;
            self.state.seq = Some(seq.0);
            telemetry::records_accepted(n);
        }
        self.state.offset = offset;
        self.state.header = self.parser.header().cloned();
        // The spool's mark is the position that counts; the state file only adds progress
        // over lines that made no batch. Failing to write it (a full disk) is not fatal.
        if let Err(e) = self.state.save(&self.state_file) {
            warn!(
                message = "Cannot write the tail's state file; the spool's mark keeps the position.",
                source = %self.name,
                path = %self.state_file.display(),
                error = %e
            );
        }
        Ok(())
    }
}

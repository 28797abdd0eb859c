//! Task logs: what a task writes to stdout and stderr, one timestamped
//! record per line, in a file per task, so `service logs` can show it
//! while the task runs and after it ended.
//!
//! The format is Docker's `json-file` driver's, one JSON object per line:
//! `{"log":"hello\n","stream":"stdout","time":"2025-01-02T03:04:05.123456789Z"}`.
//! `log` ends with `\n` unless the line was cut: lines longer than 16 KiB
//! are split into records of at most that size (as Docker does), so one
//! runaway line cannot make the daemon buffer without bound.
//!
//! The executor reads the task's pipes ([`pump`]); readers ([`LogReader`])
//! read the file and, when following, wait for the pump's progress signal,
//! ending when the pump has finished (the task and every process holding
//! its pipes are gone).

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    sync::watch,
};

/// Longest line in one record; longer lines are cut into several records,
/// as Docker's log copier does (16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// How often a follower re-reads the file when it hears nothing: a fallback
/// only, progress notifications normally wake it.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the executor read it from the task's pipe.
    pub time: SystemTime,
    pub stream: Stream,
    /// The text, without its newline; invalid UTF-8 is replaced (U+FFFD).
    pub line: String,
    /// Whether the line continues in the next entry (it was longer than
    /// [`MAX_LINE`], or the task ended without a final newline).
    pub partial: bool,
}

/// How to read a task's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep reading new lines until the task ended (`service logs -f`).
    pub follow: bool,
    /// Only the last N lines (`--tail N`); all when `None`.
    pub tail: Option<usize>,
}

/// The JSON record on disk (Docker's `jsonlog.JSONLog`).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    log: String,
    stream: Stream,
    time: String,
}

/// Errors reading or writing a task's log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot {action} task log {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("task log {path} has a damaged record: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; get the complete (`true`) and cut (`false`) lines.
    fn push(&mut self, mut bytes: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let newline = bytes.iter().take(room).position(|&b| b == b'\n');
            match newline {
                Some(at) => {
                    self.pending.extend_from_slice(&bytes[..at]);
                    lines.push((std::mem::take(&mut self.pending), true));
                    bytes = &bytes[at + 1..];
                }
                None => {
                    let take = room.min(bytes.len());
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.pending.len() == MAX_LINE {
                        lines.push((std::mem::take(&mut self.pending), false));
                    }
                }
            }
        }
        lines
    }

    /// What is left at end of stream: a last line without newline.
    fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        (!self.pending.is_empty()).then(|| (std::mem::take(&mut self.pending), false))
    }
}

fn encode(stream: Stream, line: &[u8], complete: bool, now: OffsetDateTime) -> io::Result<Vec<u8>> {
    let mut log = String::from_utf8_lossy(line).into_owned();
    if complete {
        log.push('\n');
    }
    let time = now.format(&Rfc3339).map_err(io::Error::other)?;
    let mut json = serde_json::to_vec(&Record { log, stream, time }).map_err(io::Error::other)?;
    json.push(b'\n');
    Ok(json)
}

fn decode(record: &[u8], path: &Path) -> Result<LogEntry, LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let record: Record = serde_json::from_slice(record).map_err(|e| corrupt(e.to_string()))?;
    let time = OffsetDateTime::parse(&record.time, &Rfc3339)
        .map_err(|e| corrupt(format!("time {:?}: {e}", record.time)))?;
    let (line, partial) = match record.log.strip_suffix('\n') {
        Some(line) => (line.to_owned(), false),
        None => (record.log, true),
    };
    Ok(LogEntry {
        time: time.into(),
        stream: record.stream,
        line,
        partial,
    })
}

/// One of the task's output pipes being copied.
#[derive(Debug)]
struct Source<R> {
    stream: Stream,
    reader: R,
    splitter: LineSplitter,
    chunk: Vec<u8>,
    open: bool,
}

impl<R> Source<R> {
    fn new(stream: Stream, reader: R) -> Self {
        Self {
            stream,
            reader,
            splitter: LineSplitter::default(),
            chunk: vec![0; 8192],
            open: true,
        }
    }
}

/// Copy a task's stdout and stderr into its log file until both pipes are
/// closed, bumping `progress` after every batch written.
pub async fn pump<R: AsyncRead + Unpin>(
    stdout: R,
    stderr: R,
    file: tokio::fs::File,
    progress: watch::Sender<u64>,
) -> io::Result<()> {
    let mut out = tokio::io::BufWriter::new(file);
    let mut sources = [
        Source::new(Stream::Stdout, stdout),
        Source::new(Stream::Stderr, stderr),
    ];
    while sources.iter().any(|s| s.open) {
        let [first, second] = &mut sources;
        let (index, read) = tokio::select! {
            read = first.reader.read(&mut first.chunk), if first.open => (0, read),
            read = second.reader.read(&mut second.chunk), if second.open => (1, read),
        };
        let now = OffsetDateTime::now_utc();
        let source = &mut sources[index];
        let lines = match read {
            // EOF, or a broken pipe: either way this stream has ended.
            Ok(0) | Err(_) => {
                source.open = false;
                source.splitter.finish().into_iter().collect()
            }
            Ok(n) => source.splitter.push(&source.chunk[..n]),
        };
        for (line, complete) in lines {
            out.write_all(&encode(source.stream, &line, complete, now)?)
                .await?;
        }
        out.flush().await?;
        progress.send_modify(|n| *n += 1);
    }
    Ok(())
}

/// Reads a task's log, optionally following it as it grows.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    reader: BufReader<tokio::fs::File>,
    pending: Vec<u8>,
    /// Progress of the writer; `None` when not following or nothing writes.
    progress: Option<watch::Receiver<u64>>,
    /// Records still to skip for `tail`.
    skip: usize,
}

impl LogReader {
    /// Open the log at `path`. `progress` is the running pump's signal
    /// (when following a running task); without it the reader stops at
    /// the end of the file.
    pub async fn open(
        path: &Path,
        options: LogOptions,
        progress: Option<watch::Receiver<u64>>,
    ) -> Result<Self, LogError> {
        let io_error = |action| {
            move |source| LogError::Io {
                path: path.to_path_buf(),
                action,
                source,
            }
        };
        let skip = match options.tail {
            Some(tail) => {
                let bytes = tokio::fs::read(path).await.map_err(io_error("read"))?;
                let records = bytes.iter().filter(|&&b| b == b'\n').count();
                records.saturating_sub(tail)
            }
            None => 0,
        };
        let file = tokio::fs::File::open(path)
            .await
            .map_err(io_error("open"))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            pending: Vec::new(),
            progress: progress.filter(|_| options.follow),
            skip,
        })
    }

    /// The next entry; `None` at the end (of the file, or when following,
    /// once the task's output has ended).
    pub async fn next_entry(&mut self) -> Result<Option<LogEntry>, LogError> {
        let mut writer_done = false;
        loop {
            let read = self
                .reader
                .read_until(b'\n', &mut self.pending)
                .await
                .map_err(|source| LogError::Io {
                    path: self.path.clone(),
                    action: "read",
                    source,
                })?;
            if self.pending.ends_with(b"\n") {
                let record = std::mem::take(&mut self.pending);
                if self.skip > 0 {
                    self.skip -= 1;
                    continue;
                }
                return decode(&record, &self.path).map(Some);
            }
            if read > 0 {
                continue;
            }
            // End of file without a whole record. A record cut short by a
            // crash is dropped; a following reader waits for more.
            let Some(progress) = self.progress.as_mut().filter(|_| !writer_done) else {
                return Ok(None);
            };
            tokio::select! {
                changed = progress.changed() => {
                    // Err: the pump is gone; read what it wrote last, then end.
                    writer_done = changed.is_err();
                }
                () = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }

    /// Everything up to the end (of the file, or of the task when following).
    pub async fn collect(mut self) -> Result<Vec<LogEntry>, LogError> {
        let mut entries = Vec::new();
        while let Some(entry) = self.next_entry().await? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_at_newlines_and_at_the_size_cap() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"one\ntw"), vec![(b"one".to_vec(), true)]);
        assert_eq!(splitter.push(b"o\n"), vec![(b"two".to_vec(), true)]);
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = splitter.push(&long);
        assert_eq!(lines, vec![(vec![b'x'; MAX_LINE], false)]);
        assert_eq!(splitter.finish(), Some((vec![b'x'; 10], false)));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn records_round_trip_in_dockers_json_file_format() {
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .expect("valid time");
        let bytes = encode(Stream::Stderr, b"caf\xc3\xa9 \xff", true, now).expect("encode");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.ends_with("}\n"), "{text}");
        assert!(text.contains(r#""stream":"stderr""#), "{text}");
        assert!(
            text.contains(r#""time":"2023-11-14T22:13:20.123456789Z""#),
            "{text}"
        );
        let entry = decode(bytes.trim_ascii_end(), Path::new("x")).expect("decode");
        assert_eq!(entry.line, "café \u{fffd}");
        assert_eq!(entry.stream, Stream::Stderr);
        assert!(!entry.partial);
        assert_eq!(entry.time, SystemTime::from(now));
    }

    #[tokio::test]
    async fn the_pump_writes_both_streams_and_readers_tail_and_follow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.log");
        let file = tokio::fs::File::create(&path).await.expect("create");
        let (tx, rx) = watch::channel(0);
        let stdout: &[u8] = b"a\nb\nno newline";
        let stderr: &[u8] = b"oops\n";
        let mut follower = LogReader::open(
            &path,
            LogOptions {
                follow: true,
                tail: None,
            },
            Some(rx),
        )
        .await
        .expect("open");
        let pump = tokio::spawn(pump(stdout, stderr, file, tx));
        let followed = follower_lines(&mut follower).await;
        pump.await.expect("join").expect("pump");
        let mut sorted = followed.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "no newline", "oops"]);

        let all = LogReader::open(&path, LogOptions::default(), None)
            .await
            .expect("open")
            .collect()
            .await
            .expect("read");
        assert_eq!(all.len(), 4);
        assert!(all.iter().any(|e| e.line == "no newline" && e.partial));
        assert!(
            all.iter()
                .any(|e| e.line == "oops" && e.stream == Stream::Stderr)
        );

        let tail = LogReader::open(
            &path,
            LogOptions {
                follow: false,
                tail: Some(1),
            },
            None,
        )
        .await
        .expect("open")
        .collect()
        .await
        .expect("read");
        assert_eq!(tail, all[3..]);
    }

    async fn follower_lines(reader: &mut LogReader) -> Vec<String> {
        let mut lines = Vec::new();
        // Bounded: four lines are written, then the pump ends the follow.
        for _ in 0..10 {
            match reader.next_entry().await.expect("read") {
                Some(entry) => lines.push(entry.line),
                None => return lines,
            }
        }
        panic!("the follower did not end after the writer finished: {lines:?}");
    }

    #[tokio::test]
    async fn a_damaged_record_is_reported_with_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.log");
        std::fs::write(&path, b"not json\n").expect("write");
        let err = LogReader::open(&path, LogOptions::default(), None)
            .await
            .expect("open")
            .collect()
            .await
            .expect_err("damaged");
        assert!(err.to_string().contains("output.log"), "{err}");
    }
}

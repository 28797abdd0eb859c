//! aya-log lines from hive's programs (`docs/observability.md` "aya-log").
//!
//! The programs log only when built with it (`HIVE_EBPF_LOG=1`); they then
//! write formatted records into aya-log's `AYA_LOGS` ring buffer, which this
//! module reads: from a loaded object (fixtures) or from the programs pinned
//! in a node's directory (`hive mesh log`). Both programs of a node come from
//! one object and share one `AYA_LOGS`, so one reader per node sees all.

use std::{
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use aya::programs::{ProgramError, ProgramInfo};
use aya_log::EbpfLogger;

use crate::loader::XDP_PROGRAM_PIN;

/// One line a program logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: log::Level,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EbpfLogError {
    #[error("cannot read the program pinned at {}: {source}; is hive's data plane loaded on this node?", path.display())]
    Program {
        path: PathBuf,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "the programs pinned at {} were built without debug logging (no AYA_LOGS map); rebuild hive with HIVE_EBPF_LOG=1 and restart the node's daemon (or the lab) to load them",
        dir.display()
    )]
    NotBuiltIn { dir: PathBuf },
    #[error("the programs' log buffer cannot be opened: {0}")]
    Open(#[from] aya_log::Error),
}

/// Keeps what aya-log formats, for [`EbpfLog::read`].
#[derive(Clone, Default)]
struct Collector {
    lines: Arc<Mutex<Vec<LogLine>>>,
}

impl log::Log for Collector {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = LogLine {
            level: record.level(),
            text: record.args().to_string(),
        };
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn flush(&self) {}
}

/// A reader of one object's `AYA_LOGS`.
pub struct EbpfLog {
    logger: EbpfLogger<Collector>,
    lines: Arc<Mutex<Vec<LogLine>>>,
}

impl std::fmt::Debug for EbpfLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfLog").finish_non_exhaustive()
    }
}

impl EbpfLog {
    /// Take the log buffer out of a loaded object. `None` if the object was
    /// built without logging.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Option<Self>, EbpfLogError> {
        let collector = Collector::default();
        let lines = collector.lines.clone();
        match EbpfLogger::init_with_logger(ebpf, collector) {
            Ok(logger) => Ok(Some(Self { logger, lines })),
            Err(aya_log::Error::MapNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The log buffer of the programs pinned in a node's directory.
    pub fn from_pins(dir: &Path) -> Result<Self, EbpfLogError> {
        let path = dir.join(XDP_PROGRAM_PIN);
        let info = ProgramInfo::from_pin(&path).map_err(|source| EbpfLogError::Program {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let collector = Collector::default();
        let lines = collector.lines.clone();
        match EbpfLogger::init_from_id_with_logger(info.id(), collector) {
            Ok(logger) => Ok(Self { logger, lines }),
            Err(aya_log::Error::MapNotFound) => Err(EbpfLogError::NotBuiltIn {
                dir: dir.to_path_buf(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The lines logged since the last call, oldest first.
    pub fn read(&mut self) -> Vec<LogLine> {
        self.logger.flush();
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AsFd for EbpfLog {
    /// Readable when records are waiting (for `poll`/`AsyncFd`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.logger.as_fd()
    }
}

//! Debug logging through aya-log, compiled in only with the `log` feature
//! (`HIVE_EBPF_LOG=1` at build time; docs/observability.md). Without it
//! [`debug!`] expands to nothing, so a default build carries no logging
//! code at all. With it, every statement that runs formats its arguments
//! into aya-log's ring buffer (`AYA_LOGS`): a few hundred nanoseconds per
//! line, on the packet's path — a tool for a developer's lab, never for
//! production traffic. `AYA_LOG_LEVEL` (a global user space can override
//! at load time) filters by level at run time.

/// `debug!(ctx, "format", args...)`.
#[cfg(feature = "log")]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)+) => {
        aya_log_ebpf::debug!($ctx, $($arg)+)
    };
}

#[cfg(not(feature = "log"))]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)+) => {{
        let _ = $ctx;
    }};
}

pub(crate) use debug;

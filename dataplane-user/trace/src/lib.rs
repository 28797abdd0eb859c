//! `hive mesh trace` in user space: the trace maps of a node, decoded
//! events, a tracer that follows a request across nodes, and pcapng output.
//! The kernel side is `dataplane-ebpf/programs/src/events.rs`; the record
//! layout is `hive_common::trace`; the user guide `docs/observability.md`.

mod event;
pub mod pcap;
mod session;

pub use event::{DecodeError, Event, tcp_flags};
pub use hive_common::trace::TRACE_CAPTURE_MAX;
pub use hive_dataplane::trace_maps::{LostCounts, TraceMaps, TraceMapsError};
pub use pcap::PcapWriter;
pub use session::{TraceError, TraceFilter, TraceOptions, Tracer, wall_time};

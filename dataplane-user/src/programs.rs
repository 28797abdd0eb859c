//! The eBPF object built by `build.rs` and embedded into the binary.

/// The ELF object holding every hive program and map, or an empty slice when
/// the crate was built with `AYA_BUILD_SKIP=1`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hive-ebpf"));

/// The same programs built without their trace-event code, for the
/// benchmark's baseline; empty unless built with `HIVE_EBPF_NOTRACE=1`.
pub static EBPF_OBJECT_NOTRACE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hive-ebpf-notrace"));

/// The same programs built with aya-log debug logging (the tests of the log
/// path load it); empty when built with `AYA_BUILD_SKIP=1`.
pub static EBPF_OBJECT_LOG: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hive-ebpf-log"));

/// Errors from loading the embedded programs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this hive binary was built with AYA_BUILD_SKIP=1 and carries no eBPF programs; rebuild it without that variable (`cargo xtask setup` installs what the eBPF build needs)"
    )]
    NotEmbedded,
    #[error("the kernel refused hive's eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
}

/// Parse and load the embedded object into the kernel.
pub fn load() -> Result<aya::Ebpf, LoadError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NotEmbedded);
    }
    Ok(aya::EbpfLoader::new().load(EBPF_OBJECT)?)
}

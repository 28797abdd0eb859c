//! What the `BPF_PROG_RUN` fixtures (`tests/prog_run*.rs`) share: running a program on a
//! frame, a frame's IPv4 header and ports, the VXLAN header's offset and flags, and the root
//! check that ends a fixture early when it may not run.
#![allow(dead_code)]

use hive_prog_run::packet::{self, Frame, L4};
use hive_prog_run::prog_run::ProgRun;

/// Offset of the VXLAN header in an encapsulated frame (outer Ethernet, IPv4, UDP).
pub const VXLAN_AT: usize = 14 + 20 + 8;
/// The VXLAN header's I flag (a valid VNI).
pub const FLAG_I: u8 = 0x08;
/// The GBP G bit hive uses to mark a direct-return flow (`docs/dsr.md`).
pub const FLAG_DIRECT_RETURN: u8 = 0x80;
/// The reserved bit hive uses to mark a steady packet: nothing for the backend's node to
/// record (`docs/dsr.md`, "Steady packets").
pub const FLAG_STEADY: u8 = 0x01;

/// Returns from the fixture unless it may run (`require_root`: root, or fail under `CI`).
macro_rules! root {
    ($name:expr) => {
        if !hive_prog_run::prog_run::require_root($name) {
            return;
        }
    };
}

/// Runs `prog` on `frame`: its verdict and the frame it left.
pub fn run(h: &mut ProgRun, prog: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    let out = h.run(prog, frame).unwrap_or_else(|e| panic!("{e}"));
    (out.verdict, out.output)
}

pub fn ip(frame: &Frame) -> &packet::Ip {
    frame.ip.as_ref().expect("an IPv4 frame")
}

pub fn ports(frame: &Frame) -> (u16, u16) {
    match ip(frame).l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport, .. } => (sport, dport),
        _ => panic!("no ports: {frame:?}"),
    }
}

//! A private network namespace for the calling thread, with an underlay NIC the
//! programs' route lookups resolve against. `BPF_PROG_RUN` runs a program in the
//! namespace of the thread that asks, so a fixture whose path asks the kernel's FIB
//! (`bpf_fib_lookup`) sees this namespace's routes and neighbours, not the host's.
//!
//! The namespace is the thread's alone and goes with it: nothing to clean up, and the
//! fixtures that run beside it on other threads keep the host's.

use std::{io, net::Ipv4Addr, process::Command};

use crate::{packet::Mac, world::UNDERLAY_IFINDEX};

/// The underlay NIC's name, and its veth peer's (this kernel has no dummy
/// devices). The kernel registers a veth's peer first: naming the underlay as
/// the peer gives it the namespace's first free ifindex after `lo`.
const UNDERLAY: &str = "ul0";
const UNDERLAY_PEER: &str = "ul0p";

/// Move the calling thread into a new network namespace with an underlay NIC at
/// [`UNDERLAY_IFINDEX`] (the fixtures' node configuration), addressed `addr`/24 with MAC
/// `mac`, forwarding on as on a node, a route to `dst` through it and, given `neighbour`, a permanent neighbour entry
/// for `dst`. Without one, the kernel has not resolved `dst` yet.
pub fn private_underlay(
    addr: Ipv4Addr,
    mac: Mac,
    dst: Ipv4Addr,
    neighbour: Option<Mac>,
) -> io::Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET changes only the calling thread's
    // namespace; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mac = fmt_mac(mac);
    let dst_addr = dst;
    let (addr, dst) = (format!("{addr}/24"), format!("{dst}/32"));
    ip(&[
        "link",
        "add",
        UNDERLAY_PEER,
        "type",
        "veth",
        "peer",
        "name",
        UNDERLAY,
        "address",
        &mac,
    ])?;
    ip(&["link", "set", UNDERLAY_PEER, "up"])?;
    ip(&["link", "set", UNDERLAY, "up"])?;
    ip(&["addr", "add", &addr, "dev", UNDERLAY])?;
    // A node forwards (`net.ipv4.ip_forward`, node set-up), and the kernel's
    // route lookup for BPF answers only on a device that does. /proc/sys/net
    // is the namespace of the thread that opens it.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    ip(&["route", "add", &dst, "dev", UNDERLAY])?;
    if let Some(neighbour) = neighbour {
        set_neighbour(dst_addr, neighbour)?;
    }
    let name = std::ffi::CString::new(UNDERLAY).map_err(io::Error::other)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex != UNDERLAY_IFINDEX {
        return Err(io::Error::other(format!(
            "{UNDERLAY} has ifindex {ifindex} in the new namespace, the fixtures' node \
             configuration says {UNDERLAY_IFINDEX}"
        )));
    }
    Ok(())
}

/// In the namespace [`private_underlay`] made for the calling thread: `dst`'s
/// neighbour entry on the underlay NIC is now `mac` (permanent).
pub fn set_neighbour(dst: Ipv4Addr, mac: Mac) -> io::Result<()> {
    ip(&[
        "neigh",
        "replace",
        &dst.to_string(),
        "lladdr",
        &fmt_mac(mac),
        "dev",
        UNDERLAY,
        "nud",
        "permanent",
    ])
}

/// `ip ARGS` in the calling thread's namespace (the child inherits it).
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn fmt_mac(mac: Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

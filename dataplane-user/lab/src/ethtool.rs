//! The one ethtool setting hive needs: transmit checksum offload.
//!
//! A veth hands the receiver its packets with `CHECKSUM_PARTIAL` (the TCP/UDP
//! checksum holds only the pseudo-header sum) instead of computing it, since
//! no wire is crossed. An XDP program that sends such a packet on with
//! `XDP_TX` loses that metadata, and the far end sees a bad checksum. A
//! physical NIC always puts complete checksums on the wire, so a lab that
//! stands in for real NICs with veths turns transmit checksum offload off on
//! them: the kernel then completes checksums in software before they leave,
//! as the NIC's hardware would.

use std::{ffi::CString, io, os::fd::AsRawFd as _};

/// `ETHTOOL_STXCSUM` from `linux/ethtool.h`: set transmit checksumming.
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    // The kernel's union is 24 bytes; pad so it may copy all of it.
    _pad: [u8; 16],
}

/// Errors from an ethtool request.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error("interface name {name:?} is not valid (at most 15 bytes, no NUL)")]
    Name { name: String },
    #[error("cannot open a socket for ethtool requests: {0}")]
    Socket(#[source] io::Error),
    #[error("ethtool request on {iface} failed: {source}")]
    Ioctl {
        iface: String,
        #[source]
        source: io::Error,
    },
}

/// Turn transmit checksum offload of `iface` (in the calling thread's network
/// namespace) on or off, like `ethtool -K <iface> tx on|off`.
pub fn set_tx_checksum(iface: &str, on: bool) -> Result<(), EthtoolError> {
    let name_error = || EthtoolError::Name {
        name: iface.to_owned(),
    };
    let c_name = CString::new(iface).map_err(|_| name_error())?;
    let bytes = c_name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(name_error());
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    let mut request = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&raw mut value).cast(),
        _pad: [0; 16],
    };
    for (dst, src) in request.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(EthtoolError::Socket)?;
    // SAFETY: SIOCETHTOOL reads an `ifreq` whose `ifr_data` points at a
    // `struct ethtool_value`; both live on this stack frame for the whole
    // call, are `repr(C)` with the kernel's layout, and the socket is open.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &raw mut request) };
    if rc < 0 {
        return Err(EthtoolError::Ioctl {
            iface: iface.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

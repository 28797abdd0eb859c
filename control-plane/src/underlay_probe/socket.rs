//! The probe's two sockets: a raw IPv4 socket that sends a datagram with its header as
//! written (its source included), and a packet socket that sees what arrives on the node's
//! interfaces before the IP layer (which drops a datagram whose source is the node's own
//! address). Both need CAP_NET_RAW, which the daemon has.

use std::{
    collections::HashSet,
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd as _, OwnedFd},
    time::Instant,
};

use nix::sys::{
    socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recv, sendto,
        setsockopt, socket, sockopt,
    },
    time::TimeVal,
};

use super::{Nonce, probe_nonce};

/// Send `datagram` (IPv4 header included) towards `destination`.
pub fn send(datagram: &[u8], destination: Ipv4Addr) -> io::Result<()> {
    // IPPROTO_RAW: the kernel sends the header as given (IP_HDRINCL).
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )?;
    let to = SockaddrIn::from(SocketAddrV4::new(destination, 0));
    sendto(fd.as_raw_fd(), datagram, &to, MsgFlags::empty())?;
    Ok(())
}

/// A packet socket on every interface of the node's network namespace.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    pub fn open() -> io::Result<Self> {
        // Datagram: the packet from its IP header on, without the link header.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )?;
        Ok(Self { fd })
    }

    /// The nonces of `expected` that arrive as probes to and from `target` on `port` before
    /// `deadline` (returns early once all have).
    pub fn collect(
        &self,
        target: Ipv4Addr,
        port: u16,
        expected: &HashSet<Nonce>,
        deadline: Instant,
    ) -> io::Result<HashSet<Nonce>> {
        let mut seen = HashSet::new();
        let mut buf = [0u8; 2048];
        while seen.len() < expected.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let micros = i64::try_from(left.as_micros()).unwrap_or(i64::MAX).max(1);
            setsockopt(
                &self.fd,
                sockopt::ReceiveTimeout,
                &TimeVal::new(micros / 1_000_000, micros % 1_000_000),
            )?;
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => {
                    if let Some(nonce) = probe_nonce(&buf[..n], target, port)
                        && expected.contains(&nonce)
                    {
                        seen.insert(nonce);
                    }
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(seen)
    }
}

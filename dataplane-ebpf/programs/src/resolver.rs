//! The tasks' side of the embedded resolver. Every task asks 127.0.0.11:53
//! (its resolv.conf says so), but the agent's resolver listens on a port of
//! its own in the task's namespace, so that port 53 stays free for the
//! task's own programs, as in Docker (which DNATs with iptables). These
//! cgroup hooks, on the node's task cgroup, do the same per socket call and
//! without netfilter: `connect`/`sendmsg` to 127.0.0.11:53 go to the real
//! port; `recvmsg` from it reports port 53, which the C library checks.
//!
//! The real port of each task namespace is in `HIVE_RESOLVERS`, keyed by
//! the namespace's cookie. Anything else passes untouched.

use aya_ebpf::{
    EbpfContext as _, helpers::generated::bpf_get_netns_cookie, programs::SockAddrContext,
};
use hive_common::maps::{DNS_PORT, EMBEDDED_RESOLVER};

use crate::maps::RESOLVERS;

/// `user_ip4` of the embedded resolver (network order, as the field holds it).
const RESOLVER_IP4: u32 = u32::from_ne_bytes(EMBEDDED_RESOLVER);

/// A `user_port` value: the port in network order in the low 16 bits.
#[inline(always)]
fn user_port(port: u16) -> u32 {
    u32::from(port.to_be())
}

/// The real port of the resolver in the caller's namespace, if it has one.
#[inline(always)]
fn resolver_port(ctx: &SockAddrContext) -> Option<u16> {
    // SAFETY: the helper takes the context the kernel gave this program.
    let cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    // SAFETY: a plain value copied out at once; user space only inserts and
    // deletes whole entries.
    unsafe { RESOLVERS.get(cookie) }.copied()
}

/// `connect4`, `sendmsg4`: 127.0.0.11:53 becomes the resolver's real port.
#[inline(always)]
pub fn to_resolver(ctx: &SockAddrContext) {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` for the whole run.
    let addr = unsafe { &mut *ctx.sock_addr };
    if addr.user_ip4 != RESOLVER_IP4 || addr.user_port != user_port(DNS_PORT) {
        return;
    }
    if let Some(port) = resolver_port(ctx) {
        addr.user_port = user_port(port);
    }
}

/// `recvmsg4`: an answer from the resolver's real port reads as from port 53.
#[inline(always)]
pub fn from_resolver(ctx: &SockAddrContext) {
    // SAFETY: as in `to_resolver`.
    let addr = unsafe { &mut *ctx.sock_addr };
    if addr.user_ip4 != RESOLVER_IP4 {
        return;
    }
    if resolver_port(ctx).is_some_and(|port| addr.user_port == user_port(port)) {
        addr.user_port = user_port(DNS_PORT);
    }
}

//! `/etc/resolv.conf`: the node's, read for its resolvers and search domains, and the one a
//! task on a network gets, which sends every query to the node's embedded resolver at
//! [`EMBEDDED_RESOLVER`] (docs/services.md, "Service discovery").
//!
//! As Docker writes a container's: `nameserver 127.0.0.11`, the node's `search` list, and
//! `options ndots:0`, so that a single-label name like `db` is asked as it is first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use resolv_conf::ScopedIp;

/// Where a task's resolver listens, inside the task's own network namespace (Docker's
/// address: every 127.0.0.0/8 address is local on a namespace's loopback).
pub const EMBEDDED_RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The node's file.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// glibc reads at most three name servers (`MAXNS`).
const MAX_NAMESERVERS: usize = 3;

/// What hive reads of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, port 53, at most three, the embedded resolver's own address left
    /// out (asking it would ask ourselves).
    pub nameservers: Vec<SocketAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf(5) text with the `resolv-conf` crate; lines it cannot read are
    /// skipped (and logged), as the C library skips them. A link-local IPv6 name server with
    /// a scope (`fe80::1%eth0`) is skipped too: a `SocketAddr` here carries no interface.
    pub fn parse(text: &str) -> Self {
        let (parsed, errors) = resolv_conf::Config::parse_with_errors(text.as_bytes());
        for error in errors {
            tracing::debug!(%error, "resolv.conf: line skipped");
        }
        let nameservers = parsed
            .nameservers
            .iter()
            .filter_map(|server| match server {
                ScopedIp::V4(addr) => Some(IpAddr::V4(*addr)),
                ScopedIp::V6(addr, None) => Some(IpAddr::V6(*addr)),
                ScopedIp::V6(_, Some(_)) => None,
            })
            .filter(|addr| *addr != IpAddr::V4(EMBEDDED_RESOLVER))
            .take(MAX_NAMESERVERS)
            .map(|addr| SocketAddr::new(addr, 53))
            .collect();
        Self {
            nameservers,
            search: parsed.get_last_search_or_domain().cloned().collect(),
        }
    }

    /// The node's resolv.conf; empty if it has none or it cannot be read.
    pub fn of_host() -> Self {
        Self::read(Path::new(HOST_RESOLV_CONF))
    }

    pub fn read(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// The file a task on a network gets.
    pub fn for_task(&self) -> String {
        let mut text = format!(
            "# Written by hive: the node's embedded resolver answers service names\n\
             # (`<service>`, `tasks.<service>`) and forwards other names to the node's resolvers.\n\
             nameserver {EMBEDDED_RESOLVER}\n"
        );
        if !self.search.is_empty() {
            text.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        text.push_str("options ndots:0\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_and_search_are_read_as_the_c_library_reads_them() {
        let conf = ResolvConf::parse(
            "# comment\n\
             nameserver 10.255.255.53\n\
             nameserver 127.0.0.11\n\
             nameserver ::1 ; trailing\n\
             nameserver bogus\n\
             domain old.example\n\
             search corp.example lab.example\n\
             options edns0\n\
             nameserver 1.1.1.1\n\
             nameserver 8.8.8.8\n",
        );
        assert_eq!(
            conf.nameservers,
            [
                "10.255.255.53:53".parse().expect("addr"),
                "[::1]:53".parse().expect("addr"),
                "1.1.1.1:53".parse().expect("addr"),
            ],
            "the embedded resolver is left out, bad lines skipped, three at most"
        );
        assert_eq!(
            conf.search,
            ["corp.example", "lab.example"],
            "the last line wins"
        );
    }

    #[test]
    fn a_tasks_file_points_at_the_embedded_resolver_with_the_nodes_search_list() {
        let conf = ResolvConf::parse("nameserver 10.0.0.1\nsearch corp.example\n");
        let text = conf.for_task();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "nameserver 127.0.0.11",
                "search corp.example",
                "options ndots:0"
            ]
        );
        assert_eq!(
            ResolvConf::parse(&text).nameservers,
            [],
            "it never names itself"
        );
    }

    #[test]
    fn a_missing_file_is_an_empty_configuration() {
        assert_eq!(
            ResolvConf::read(Path::new("/nonexistent/resolv.conf")),
            ResolvConf::default()
        );
    }
}

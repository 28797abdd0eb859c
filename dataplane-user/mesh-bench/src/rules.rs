//! The kernel's own load-balancing path, as kube-proxy and Swarm without
//! IPVS program it, generated for N services: the comparison hive is
//! measured against (same shape as `../shared/reference/kernel-baseline/`).
//!
//! iptables: one `KUBE-SERVICES` rule per service, matched linearly, the real
//! service LAST so a new connection to it walks all N; each service chain
//! picks one of two endpoints with `statistic random`; `MASQUERADE` out of
//! the kernel VXLAN device. nftables: one verdict-map lookup keyed by
//! address . protocol . port, jumping to a per-service chain with
//! `numgen inc mod 2`.

use std::{fmt::Write as _, net::Ipv4Addr};

/// The service every run measures, and where its two backends listen.
#[derive(Debug, Clone, Copy)]
pub struct RealService {
    pub published_addr: Ipv4Addr,
    pub published_port: u16,
    pub backends: [Ipv4Addr; 2],
    pub backend_port: u16,
}

/// Port of the first service added by the "add one service" timing; the
/// `k`-th sample adds one at `ADDED_SERVICE_PORT + k`.
pub const ADDED_SERVICE_PORT: u16 = 31_000;
/// How many services the "add one service" timing adds, one after the other,
/// on every path; the figure is their median (one sample moved by a third
/// between runs at 10,000 services).
pub const ADD_ONE_SAMPLES: u16 = 5;
/// Dummy services use ports `DUMMY_BASE_PORT + i` (never hit by traffic).
pub const DUMMY_BASE_PORT: u16 = 20_000;
/// The kernel VXLAN device of the baseline topology.
pub const VXLAN_DEV: &str = "hvx0";

/// Two made-up endpoints of dummy service `i` (never reached).
fn dummy_endpoints(i: u32) -> [Ipv4Addr; 2] {
    let a = 2 * i;
    let at = |n: u32| Ipv4Addr::new(10, 99, (n / 250) as u8, (n % 250 + 1) as u8);
    [at(a), at(a + 1)]
}

/// An `iptables-restore` file for the nat table with `dummies` dummy services.
pub fn iptables(real: &RealService, dummies: u32) -> String {
    let vip = real.published_addr;
    let mut o = String::with_capacity(256 + dummies as usize * 300);
    o.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    o.push_str(":POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n");
    o.push_str(":KUBE-SVC-REAL - [0:0]\n");
    for i in 0..dummies {
        let _ = writeln!(o, ":KUBE-SVC-{i} - [0:0]");
    }
    o.push_str("-A PREROUTING -j KUBE-SERVICES\n-A POSTROUTING -j KUBE-POSTROUTING\n");
    let _ = writeln!(o, "-A KUBE-POSTROUTING -o {VXLAN_DEV} -j MASQUERADE");
    for i in 0..dummies {
        let port = DUMMY_BASE_PORT as u32 + i;
        let _ = writeln!(
            o,
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {port} -j KUBE-SVC-{i}"
        );
    }
    let _ = writeln!(
        o,
        "-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {} -j KUBE-SVC-REAL",
        real.published_port
    );
    for i in 0..dummies {
        let [e1, e2] = dummy_endpoints(i);
        iptables_service_chain(&mut o, &format!("KUBE-SVC-{i}"), [e1, e2], 80);
    }
    iptables_service_chain(&mut o, "KUBE-SVC-REAL", real.backends, real.backend_port);
    o.push_str("COMMIT\n");
    o
}

fn iptables_service_chain(o: &mut String, chain: &str, eps: [Ipv4Addr; 2], port: u16) {
    let _ = writeln!(
        o,
        "-A {chain} -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination {}:{port}",
        eps[0]
    );
    let _ = writeln!(
        o,
        "-A {chain} -p tcp -j DNAT --to-destination {}:{port}",
        eps[1]
    );
}

/// `iptables-restore --noflush` input adding the `k`-th added service at the
/// head of `KUBE-SERVICES` (as kube-proxy's partial sync does).
pub fn iptables_add_one(real: &RealService, k: u16) -> String {
    let chain = format!("KUBE-SVC-NEW{k}");
    let mut o = format!("*nat\n:{chain} - [0:0]\n");
    let _ = writeln!(
        o,
        "-I KUBE-SERVICES 1 -d {}/32 -p tcp -m tcp --dport {} -j {chain}",
        real.published_addr,
        ADDED_SERVICE_PORT + k
    );
    iptables_service_chain(
        &mut o,
        &chain,
        [Ipv4Addr::new(10, 98, 0, 1), Ipv4Addr::new(10, 98, 0, 2)],
        80,
    );
    o.push_str("COMMIT\n");
    o
}

/// An `iptables-restore` file for the nat table forwarding `published`:`port`
/// to one backend, `MASQUERADE` out of the kernel VXLAN device: the kernel
/// path of the bulk runs (`crate::bulk`).
pub fn iptables_forward(
    published: Ipv4Addr,
    port: u16,
    backend: Ipv4Addr,
    backend_port: u16,
) -> String {
    let mut o = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    let _ = writeln!(
        o,
        "-A PREROUTING -d {published}/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination {backend}:{backend_port}"
    );
    let _ = writeln!(o, "-A POSTROUTING -o {VXLAN_DEV} -j MASQUERADE");
    o.push_str("COMMIT\n");
    o
}

/// An `nft -f` file: verdict map + per-service chains.
pub fn nftables(real: &RealService, dummies: u32) -> String {
    let vip = real.published_addr;
    let mut o = String::with_capacity(512 + dummies as usize * 200);
    o.push_str("table ip hive_bench {\n  map service_ports {\n");
    o.push_str("    type ipv4_addr . inet_proto . inet_service : verdict\n    elements = { ");
    for i in 0..dummies {
        let _ = write!(
            o,
            "{vip} . tcp . {} : goto svc_{i},\n      ",
            DUMMY_BASE_PORT as u32 + i
        );
    }
    let _ = writeln!(
        o,
        "{vip} . tcp . {} : goto svc_real }}\n  }}",
        real.published_port
    );
    for i in 0..dummies {
        nft_service_chain(&mut o, &format!("svc_{i}"), dummy_endpoints(i), 80);
    }
    nft_service_chain(&mut o, "svc_real", real.backends, real.backend_port);
    o.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    o.push_str("    ip daddr . meta l4proto . th dport vmap @service_ports\n  }\n");
    o.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    let _ = writeln!(o, "    oifname \"{VXLAN_DEV}\" masquerade\n  }}\n}}");
    o
}

fn nft_service_chain(o: &mut String, chain: &str, eps: [Ipv4Addr; 2], port: u16) {
    let _ = writeln!(
        o,
        "  chain {chain} {{\n    meta l4proto tcp dnat to numgen inc mod 2 map {{ 0 : {}, 1 : {} }} : {port}\n  }}",
        eps[0], eps[1]
    );
}

/// `nft -f` input adding the `k`-th added service (a chain and a map
/// element).
pub fn nftables_add_one(real: &RealService, k: u16) -> String {
    let mut o = format!("add chain ip hive_bench svc_new{k}\n");
    let _ = writeln!(
        o,
        "add rule ip hive_bench svc_new{k} meta l4proto tcp dnat to numgen inc mod 2 map {{ 0 : 10.98.0.1, 1 : 10.98.0.2 }} : 80"
    );
    let _ = writeln!(
        o,
        "add element ip hive_bench service_ports {{ {} . tcp . {} : goto svc_new{k} }}",
        real.published_addr,
        ADDED_SERVICE_PORT + k
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> RealService {
        RealService {
            published_addr: Ipv4Addr::new(192, 168, 77, 1),
            published_port: 8080,
            backends: [Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 3)],
            backend_port: 80,
        }
    }

    #[test]
    fn iptables_matches_the_real_service_last() {
        let rules = iptables(&real(), 3);
        let services: Vec<&str> = rules
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert_eq!(services.len(), 4);
        assert!(services[3].contains("--dport 8080 -j KUBE-SVC-REAL"));
        assert!(rules.contains("-j DNAT --to-destination 10.77.0.3:80"));
        assert!(rules.contains("-A KUBE-POSTROUTING -o hvx0 -j MASQUERADE"));
        assert!(rules.ends_with("COMMIT\n"));
    }

    #[test]
    fn the_bulk_forward_sends_one_port_to_one_backend() {
        let rules = iptables_forward(
            Ipv4Addr::new(192, 168, 77, 1),
            5201,
            Ipv4Addr::new(10, 77, 0, 12),
            5201,
        );
        assert!(rules.contains(
            "-A PREROUTING -d 192.168.77.1/32 -p tcp -m tcp --dport 5201 -j DNAT --to-destination 10.77.0.12:5201"
        ));
        assert!(rules.contains("-A POSTROUTING -o hvx0 -j MASQUERADE"));
        assert!(rules.ends_with("COMMIT\n"));
    }

    #[test]
    fn dummy_endpoints_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            for ep in dummy_endpoints(i) {
                assert!(seen.insert(ep), "{ep} repeated");
            }
        }
    }

    #[test]
    fn nftables_has_one_map_element_per_service() {
        let rules = nftables(&real(), 2);
        assert_eq!(rules.matches(": goto svc_").count(), 3);
        assert!(rules.contains("192.168.77.1 . tcp . 8080 : goto svc_real"));
        assert!(nftables_add_one(&real(), 0).contains("tcp . 31000 : goto svc_new0"));
        assert!(nftables_add_one(&real(), 2).contains("tcp . 31002 : goto svc_new2"));
        assert!(iptables_add_one(&real(), 1).contains("--dport 31001 -j KUBE-SVC-NEW1"));
    }
}

//! The underlay probe before direct return (docs/dsr.md, "What the underlay must allow"):
//! `hive swarm update --mesh-mode dsr|hybrid` asks the other nodes to send the manager a
//! packet with the manager's own address as its source. The lab's veths carry it, so the
//! mode turns on; once n2 drops every packet it sends out of its underlay NIC with a source
//! other than its own (an nft output rule: a host firewall against spoofing), the update is
//! refused with the reason and the swarm keeps its mode; the same when the underlay bridge
//! drops them on the way (the probe never arrives); without the rules it works again.
//!
//! Needs root.

use crate::support;

use support::{Swarm, privileged, text};

/// The nft table that makes n2 drop spoofed sources.
const TABLE: &str = "hive_test_spoof";

fn drop_spoofed_sources(swarm: &Swarm, node: &str) {
    let addr = swarm.lab().node_addr(node).expect("the node's address");
    let rules = format!(
        "table ip {TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    \
         oifname \"eth0\" ip saddr != {addr} drop\n  }}\n}}\n"
    );
    nft(swarm, node, &["-f", "-"], Some(&rules));
}

/// The network itself drops n1's address coming from another node (a source check on the
/// lab's underlay bridge): a frame on the bridge from n1's address to n1 can only be spoofed.
fn underlay_drops_spoofed_sources(swarm: &Swarm) {
    let n1 = swarm.lab().node_addr("n1").expect("n1's address");
    let rules = format!(
        "table bridge {TABLE} {{\n  chain spoofed {{\n    type filter hook forward priority 0; policy accept;\n    \
         ip saddr {n1} ip daddr {n1} drop\n  }}\n}}\n"
    );
    let mut command = std::process::Command::new("nsenter");
    command.arg(format!(
        "--net={}",
        swarm.lab().state().underlay.netns_path.display()
    ));
    command.arg("nft");
    run_nft(command, &["-f", "-"], Some(&rules));
}

fn nft(swarm: &Swarm, node: &str, args: &[&str], stdin: Option<&str>) {
    let command = swarm.lab().command(node, "nft").expect("nft in the node");
    run_nft(command, args, stdin);
}

fn run_nft(mut command: std::process::Command, args: &[&str], stdin: Option<&str>) {
    use std::io::Write as _;
    let mut child = command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running nft");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("nft's input");
    }
    let out = child.wait_with_output().expect("nft's exit");
    assert!(out.status.success(), "nft {args:?}: {}", text(&out.stderr));
}

#[test]
fn direct_return_is_refused_where_the_underlay_drops_spoofed_sources() {
    if !privileged("direct_return_is_refused_where_the_underlay_drops_spoofed_sources") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("dsrprobe", 2, 1);

    swarm.hive_line("n1", "swarm update --mesh-mode dsr");
    let info = swarm.hive_line("n1", "info");
    assert!(
        info.contains("Mesh Mode: dsr"),
        "the lab's underlay allows it: {info}"
    );
    swarm.hive_line("n1", "swarm update --mesh-mode snat");

    drop_spoofed_sources(&swarm, "n2");
    let refused = swarm.hive_err("n1", &["swarm", "update", "--mesh-mode", "dsr"]);
    assert!(
        refused.contains("drops packets a node sends with another node's address"),
        "{refused}"
    );
    // n2's own firewall answers its raw socket with EPERM: n2 says so.
    assert!(
        refused.contains("its own host refused to send it"),
        "{refused}"
    );
    assert!(refused.contains("--mesh-mode snat"), "{refused}");
    let info = swarm.hive_line("n1", "info");
    assert!(info.contains("Mesh Mode: snat"), "the mode stays: {info}");
    // Today's path needs no such packets: it is never refused.
    swarm.hive_line("n1", "swarm update --mesh-mode snat");

    nft(&swarm, "n2", &["delete", "table", "ip", TABLE], None);

    // Dropped on the way, not by the sender: the probe never arrives.
    underlay_drops_spoofed_sources(&swarm);
    let refused = swarm.hive_err("n1", &["swarm", "update", "--mesh-mode", "hybrid"]);
    assert!(refused.contains("never arrived"), "{refused}");
    let info = swarm.hive_line("n1", "info");
    assert!(info.contains("Mesh Mode: snat"), "the mode stays: {info}");
    let mut command = std::process::Command::new("nsenter");
    command.arg(format!(
        "--net={}",
        swarm.lab().state().underlay.netns_path.display()
    ));
    command.arg("nft");
    run_nft(command, &["delete", "table", "bridge", TABLE], None);

    swarm.hive_line("n1", "swarm update --mesh-mode hybrid");
    let info = swarm.hive_line("n1", "info");
    assert!(info.contains("Mesh Mode: hybrid"), "{info}");
}

//! Names, addresses and paths of a lab: pure functions, one source of truth.
//!
//! Everything a lab creates is named after the lab, so `hive lab down` can
//! find it again by name alone, even when the state file is gone.

use std::{
    fmt,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    str::FromStr,
};

/// The lab used when `--name` is not given.
pub const DEFAULT_LAB: &str = "default";
/// Longest lab name: short enough that a later host-visible link named
/// `hive<lab>` still fits IFNAMSIZ (15 characters).
pub const MAX_LAB_NAME_LEN: usize = 11;
/// Most nodes one lab can have: node `nI` gets host address `.I`, and `.100`
/// belongs to the client.
pub const MAX_NODES: u32 = 99;
/// Prefix of every namespace name hive's labs create.
pub const NETNS_PREFIX: &str = "hive-";
/// Name of the member that plays the outside world.
pub const CLIENT: &str = "client";
/// Suffix of the namespace holding the underlay bridge.
pub const UNDERLAY: &str = "underlay";
/// The underlay bridge, inside the underlay namespace.
pub const BRIDGE: &str = "br0";
/// The underlay link inside every node and the client.
pub const MEMBER_LINK: &str = "eth0";
/// The underlay subnet, shared by every lab (namespaces keep labs apart).
pub const UNDERLAY_NET: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 0);
/// Prefix length of [`UNDERLAY_NET`].
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// Host part of the client's underlay address.
pub const CLIENT_HOST: u8 = 100;
/// Runtime state of every lab: `<dir>/<lab>/state.json` and per-member dirs.
pub const LAB_RUN_DIR: &str = "/run/hive/lab";
/// Where bpffs is mounted.
pub const BPFFS_DIR: &str = "/sys/fs/bpf";
/// hive's pins; a lab's live under `lab-<lab>/<node>/` (the data plane's rule,
/// [`hive_dataplane::node_pins::lab_pin_root`]).
pub use hive_dataplane::loader::DEFAULT_PIN_ROOT as BPF_HIVE_DIR;
/// Locally administered MAC prefix of lab links: 02 + "hiv".
const MAC_PREFIX: [u8; 5] = [0x02, 0x68, 0x69, 0x76, 0x00];

/// Errors in user-given names and counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error(
        "invalid lab name {name:?}: use 1 to {MAX_LAB_NAME_LEN} characters from a-z, 0-9 and '-', starting and ending with a letter or digit (e.g. \"default\", \"bench-2\")"
    )]
    InvalidLabName { name: String },
    #[error("a lab needs at least one node; pass --nodes 1 or more")]
    NoNodes,
    #[error(
        "a lab has at most {MAX_NODES} nodes (node nI gets 192.168.77.I and the client .100); {nodes} is too many"
    )]
    TooManyNodes { nodes: u32 },
    #[error("unknown lab member {name:?}: members are n1..n{MAX_NODES} and \"client\"")]
    InvalidMember { name: String },
    #[error(
        "--managers {managers} is not supported: use 1, 3 or 5 managers (an odd number, so a majority survives failures), or 0 for a lab without daemons"
    )]
    ManagerCount { managers: u32 },
    #[error("--managers {managers} is more than --nodes {nodes}; every manager is a node")]
    MoreManagersThanNodes { managers: u32, nodes: u32 },
}

/// One member of a lab: a node running hive, or the outside client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Member {
    /// Node `n<index>`, index 1..=99.
    Node(u8),
    /// The `client` namespace, outside the swarm.
    Client,
}

impl Member {
    /// The member's host number in the underlay subnet.
    pub fn host(self) -> u8 {
        match self {
            Self::Node(index) => index,
            Self::Client => CLIENT_HOST,
        }
    }

    /// The member's underlay address (192.168.77.I, client .100).
    pub fn underlay_addr(self) -> Ipv4Addr {
        let [a, b, c, _] = UNDERLAY_NET.octets();
        Ipv4Addr::new(a, b, c, self.host())
    }

    /// The MAC of the member's `eth0`: fixed, so captures read the same in
    /// every run.
    pub fn mac(self) -> [u8; 6] {
        let [a, b, c, d, e] = MAC_PREFIX;
        [a, b, c, d, e, self.host()]
    }

    /// The member's end of its veth inside the underlay namespace (`u-n1`).
    pub fn peer_link(self) -> String {
        format!("u-{self}")
    }

    /// Whether this member is a node (runs hive) rather than the client.
    pub fn is_node(self) -> bool {
        matches!(self, Self::Node(_))
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(index) => write!(f, "n{index}"),
            Self::Client => f.write_str(CLIENT),
        }
    }
}

impl FromStr for Member {
    type Err = NamingError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name == CLIENT {
            return Ok(Self::Client);
        }
        let invalid = || NamingError::InvalidMember {
            name: name.to_owned(),
        };
        let digits = name.strip_prefix('n').ok_or_else(invalid)?;
        // No sign, no leading zero: "n01" would alias "n1".
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let index: u32 = digits.parse().map_err(|_| invalid())?;
        match u8::try_from(index) {
            Ok(index) if u32::from(index) <= MAX_NODES => Ok(Self::Node(index)),
            _ => Err(invalid()),
        }
    }
}

/// Check a lab name: `[a-z0-9-]`, 1..=11 characters, no leading or trailing
/// '-'.
pub fn validate_lab_name(name: &str) -> Result<(), NamingError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NamingError::InvalidLabName {
            name: name.to_owned(),
        })
    }
}

/// Check a node count and return it as the type the rest of the lab uses.
pub fn validate_node_count(nodes: u32) -> Result<u8, NamingError> {
    if nodes == 0 {
        return Err(NamingError::NoNodes);
    }
    match u8::try_from(nodes) {
        Ok(n) if nodes <= MAX_NODES => Ok(n),
        _ => Err(NamingError::TooManyNodes { nodes }),
    }
}

/// The members of a lab with `nodes` nodes: n1..nN, then the client.
pub fn members(nodes: u8) -> Vec<Member> {
    (1..=nodes)
        .map(Member::Node)
        .chain(std::iter::once(Member::Client))
        .collect()
}

/// Name of a member's network namespace: `hive-<lab>-<member>`.
pub fn member_netns(lab: &str, member: Member) -> String {
    format!("{NETNS_PREFIX}{lab}-{member}")
}

/// Name of the underlay namespace: `hive-<lab>-underlay`.
pub fn underlay_netns(lab: &str) -> String {
    format!("{NETNS_PREFIX}{lab}-{UNDERLAY}")
}

/// If `netns` is a namespace name some lab made, that lab's name.
///
/// The suffix (`n<i>`, `client`, `underlay`) never contains '-', so splitting
/// at the last '-' is unambiguous: `hive-a-n1-n2` is lab `a-n1`'s node n2,
/// never lab `a`'s.
pub fn lab_of_netns(netns: &str) -> Option<&str> {
    let rest = netns.strip_prefix(NETNS_PREFIX)?;
    let (lab, suffix) = rest.rsplit_once('-')?;
    let known_suffix = suffix == UNDERLAY || suffix.parse::<Member>().is_ok();
    (known_suffix && validate_lab_name(lab).is_ok()).then_some(lab)
}

/// The underlay subnet in CIDR notation.
pub fn underlay_cidr() -> String {
    format!("{UNDERLAY_NET}/{UNDERLAY_PREFIX_LEN}")
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// `/run/hive/lab/<lab>`: everything the lab keeps on disk.
pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(LAB_RUN_DIR).join(lab)
}

/// `/run/hive/lab/<lab>/state.json`.
pub fn state_file(lab: &str) -> PathBuf {
    lab_dir(lab).join("state.json")
}

/// `/run/hive/lab/<lab>/<member>`.
pub fn member_dir(lab: &str, member: Member) -> PathBuf {
    lab_dir(lab).join(member.to_string())
}

/// The member's UTS namespace file (a bind mount).
pub fn uts_path(lab: &str, member: Member) -> PathBuf {
    member_dir(lab, member).join("uts")
}

/// A node's data directory (reserved for its `hive daemon`).
pub fn data_dir(lab: &str, member: Member) -> PathBuf {
    member_dir(lab, member).join("data")
}

/// A node's API socket (reserved for its `hive daemon`).
pub fn api_socket(lab: &str, member: Member) -> PathBuf {
    member_dir(lab, member).join("hive.sock")
}

/// A node's Docker Engine API socket (its `hive daemon --docker-api`); `hive lab exec`
/// points `DOCKER_HOST` at it.
pub fn docker_socket(lab: &str, member: Member) -> PathBuf {
    member_dir(lab, member).join("docker.sock")
}

/// The log file of the node's `hive daemon`.
pub fn daemon_log(lab: &str, member: Member) -> PathBuf {
    member_dir(lab, member).join("daemon.log")
}

/// Managers a lab's swarm may have: 1, 3 or 5, as Swarm recommends odd counts (an even one
/// tolerates no more failures than the odd one below it).
pub const MANAGER_COUNTS: [u32; 3] = [1, 3, 5];

/// Checks `--managers` against the node count; 0 means a lab without daemons.
pub fn validate_manager_count(managers: u32, nodes: u32) -> Result<(), NamingError> {
    if managers != 0 && !MANAGER_COUNTS.contains(&managers) {
        return Err(NamingError::ManagerCount { managers });
    }
    if managers > nodes {
        return Err(NamingError::MoreManagersThanNodes { managers, nodes });
    }
    Ok(())
}

/// `/sys/fs/bpf/hive/lab-<lab>`: every pin of the lab's nodes.
pub fn bpf_lab_dir(lab: &str) -> PathBuf {
    hive_dataplane::node_pins::lab_pin_root(lab)
}

/// A node's BPF pin directory.
pub fn bpf_pin_dir(lab: &str, member: Member) -> PathBuf {
    bpf_lab_dir(lab).join(member.to_string())
}

/// `hive/lab-<lab>`, relative to each cgroup hierarchy's root: the cgroups of every task the
/// lab's daemons run.
pub fn cgroup_lab_parent(lab: &str) -> PathBuf {
    Path::new("hive").join(format!("lab-{lab}"))
}

/// The cgroup parent of a node's tasks (the daemon's `--cgroup-parent`).
pub fn cgroup_parent(lab: &str, member: Member) -> PathBuf {
    cgroup_lab_parent(lab).join(member.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names() {
        for good in ["default", "a", "bench-2", "x1", "abcdefghijk"] {
            assert_eq!(validate_lab_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a/b",
            "abcdefghijkl",
            "é",
            "a b",
        ] {
            assert!(validate_lab_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn node_counts() {
        assert_eq!(validate_node_count(0), Err(NamingError::NoNodes));
        assert_eq!(validate_node_count(1), Ok(1));
        assert_eq!(validate_node_count(99), Ok(99));
        assert_eq!(
            validate_node_count(100),
            Err(NamingError::TooManyNodes { nodes: 100 })
        );
        assert_eq!(
            validate_node_count(300),
            Err(NamingError::TooManyNodes { nodes: 300 })
        );
    }

    #[test]
    fn member_names_round_trip() {
        for member in members(99) {
            assert_eq!(member.to_string().parse::<Member>(), Ok(member));
        }
        for bad in [
            "n0", "n01", "n100", "n", "n-1", "n+1", "node1", "", "underlay", "N1",
        ] {
            assert!(bad.parse::<Member>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn addressing() {
        assert_eq!(
            Member::Node(1).underlay_addr(),
            Ipv4Addr::new(192, 168, 77, 1)
        );
        assert_eq!(
            Member::Node(99).underlay_addr(),
            Ipv4Addr::new(192, 168, 77, 99)
        );
        assert_eq!(
            Member::Client.underlay_addr(),
            Ipv4Addr::new(192, 168, 77, 100)
        );
        assert_eq!(underlay_cidr(), "192.168.77.0/24");
        assert_eq!(format_mac(Member::Node(3).mac()), "02:68:69:76:00:03");
        assert_eq!(format_mac(Member::Client.mac()), "02:68:69:76:00:64");
        assert_eq!(Member::Node(12).peer_link(), "u-n12");
        assert_eq!(Member::Client.peer_link(), "u-client");
        // Link names must fit IFNAMSIZ - 1.
        assert!(Member::Node(99).peer_link().len() <= 15);
    }

    #[test]
    fn members_are_nodes_then_client() {
        assert_eq!(
            members(2),
            vec![Member::Node(1), Member::Node(2), Member::Client]
        );
    }

    #[test]
    fn namespace_names() {
        assert_eq!(member_netns("default", Member::Node(1)), "hive-default-n1");
        assert_eq!(member_netns("x", Member::Client), "hive-x-client");
        assert_eq!(underlay_netns("x"), "hive-x-underlay");
    }

    #[test]
    fn namespaces_map_back_to_exactly_one_lab() {
        assert_eq!(lab_of_netns("hive-default-n1"), Some("default"));
        assert_eq!(lab_of_netns("hive-a-underlay"), Some("a"));
        assert_eq!(lab_of_netns("hive-a-n1-client"), Some("a-n1"));
        assert_eq!(lab_of_netns("hive-a-n1-n2"), Some("a-n1"));
        assert_eq!(lab_of_netns("hive-a-bogus"), None);
        assert_eq!(lab_of_netns("hive-a"), None);
        assert_eq!(lab_of_netns("other-a-n1"), None);
        assert_eq!(lab_of_netns("hive--n1"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(state_file("x"), PathBuf::from("/run/hive/lab/x/state.json"));
        assert_eq!(
            uts_path("x", Member::Node(2)),
            PathBuf::from("/run/hive/lab/x/n2/uts")
        );
        assert_eq!(
            api_socket("x", Member::Node(2)),
            PathBuf::from("/run/hive/lab/x/n2/hive.sock")
        );
        assert_eq!(
            bpf_pin_dir("x", Member::Node(2)),
            PathBuf::from("/sys/fs/bpf/hive/lab-x/n2")
        );
    }
}

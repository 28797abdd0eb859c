//! [`MeshMode`]: how replies of north-south flows to a remote backend travel
//! (`docs/dsr.md`). Swarm-wide (`hive swarm init|update --mesh-mode`), and
//! handed to every node's programs as bits of its `NodeConfig`.

use std::{fmt, str::FromStr};

use hive_common::maps::NodeConfig;
use serde::{Deserialize, Serialize};

/// The path of the replies of a client's flow that the ingress node balanced to a task on
/// another node.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshMode {
    /// Replies go back through the ingress node, which restores its address (works on any
    /// underlay).
    #[default]
    Snat,
    /// Direct return for TCP and UDP: the backend's node answers the client itself, with
    /// the ingress node's address and published port as the source.
    Dsr,
    /// Direct return for TCP, today's path for UDP (Cilium's "hybrid").
    Hybrid,
}

impl MeshMode {
    pub const NAMES: &'static str = "snat, dsr, hybrid";

    pub fn as_str(self) -> &'static str {
        match self {
            MeshMode::Snat => "snat",
            MeshMode::Dsr => "dsr",
            MeshMode::Hybrid => "hybrid",
        }
    }

    /// The `NodeConfig::FLAG_DIRECT_RETURN_*` bits of the mode.
    pub fn node_flags(self) -> u16 {
        match self {
            MeshMode::Snat => 0,
            MeshMode::Dsr => {
                NodeConfig::FLAG_DIRECT_RETURN_TCP | NodeConfig::FLAG_DIRECT_RETURN_UDP
            }
            MeshMode::Hybrid => NodeConfig::FLAG_DIRECT_RETURN_TCP,
        }
    }
}

impl fmt::Display for MeshMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of [`MeshMode::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mesh mode {0:?}: use one of {names}", names = MeshMode::NAMES)]
pub struct UnknownMeshMode(pub String);

impl FromStr for MeshMode {
    type Err = UnknownMeshMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "snat" => Ok(MeshMode::Snat),
            "dsr" => Ok(MeshMode::Dsr),
            "hybrid" => Ok(MeshMode::Hybrid),
            other => Err(UnknownMeshMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for mode in [MeshMode::Snat, MeshMode::Dsr, MeshMode::Hybrid] {
            assert_eq!(mode.as_str().parse::<MeshMode>(), Ok(mode));
        }
        assert!("DSR ".parse::<MeshMode>().is_err());
        assert_eq!(MeshMode::default(), MeshMode::Snat);
    }

    #[test]
    fn hybrid_returns_tcp_directly_and_udp_through_the_ingress_node() {
        assert_eq!(MeshMode::Snat.node_flags(), 0);
        assert_eq!(
            MeshMode::Hybrid.node_flags(),
            NodeConfig::FLAG_DIRECT_RETURN_TCP
        );
        assert_eq!(
            MeshMode::Dsr.node_flags() & NodeConfig::FLAG_DIRECT_RETURN_UDP,
            NodeConfig::FLAG_DIRECT_RETURN_UDP
        );
    }
}

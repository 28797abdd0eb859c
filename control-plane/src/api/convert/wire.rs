//! What can be wrong with a message read off the wire, and the small conversions every object
//! shares (timestamps, durations, ports, annotations).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hive_dataplane::mesh::MacAddr;
use ipnetwork::Ipv4Network;

use crate::api::pb;
use crate::store::objects::{Annotations, Meta, ProtocolError, Resources, Timestamp};

/// A message that does not convert to the store's types. Every message a hive sends converts;
/// these are for other clients and for a peer of another version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{field}: {value} is not one of hive's values")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("{field}: {value} is not a port; use a number from 1 to 65535")]
    Port { field: &'static str, value: u32 },
    #[error("{field}: {nanos} nanoseconds is not below one second")]
    Duration { field: &'static str, nanos: u32 },
    #[error("the request carries no {0}")]
    Missing(&'static str),
    /// A port protocol hive cannot program (SCTP).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// An address, subnet or MAC that does not parse as the type it is.
    #[error("{field}: {value:?} is not {expected}")]
    Address {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    /// IPAM options that do not parse (a network spec's subnet, range or gateway).
    #[error(transparent)]
    Ipam(#[from] crate::store::objects::IpamConfigError),
    /// A mesh mode this node does not know (issue 21).
    #[error(transparent)]
    MeshMode(#[from] hive_dataplane::mesh::mode::UnknownMeshMode),
}

impl From<WireError> for crate::api::ApiError {
    fn from(error: WireError) -> Self {
        Self::Invalid(error.to_string())
    }
}

/// A prost enum field's value as its generated type.
pub fn enumeration<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<E, WireError> {
    E::try_from(value).map_err(|_| WireError::UnknownEnum { field, value })
}

pub fn port(field: &'static str, value: u32) -> Result<u16, WireError> {
    u16::try_from(value).map_err(|_| WireError::Port { field, value })
}

/// A parsed address, subnet or MAC off the wire; `expected` names its form in the error.
fn address<T: std::str::FromStr>(
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, WireError> {
    value.parse().map_err(|_| WireError::Address {
        field,
        value: value.to_owned(),
        expected,
    })
}

/// `10.0.0.7`.
pub fn ipv4_addr(field: &'static str, value: &str) -> Result<Ipv4Addr, WireError> {
    address(field, value, "an IPv4 address")
}

/// `10.0.0.7:2377` or `[fd00::7]:2377`: where a node serves (a manager's advertise address,
/// a node's Agent service), as its daemon resolved it.
pub fn socket_addr(field: &'static str, value: &str) -> Result<SocketAddr, WireError> {
    address(field, value, "an address with a port (IP:PORT)")
}

/// [`socket_addr`], or none for an empty field.
pub fn optional_socket_addr(
    field: &'static str,
    value: &str,
) -> Result<Option<SocketAddr>, WireError> {
    if value.is_empty() {
        return Ok(None);
    }
    socket_addr(field, value).map(Some)
}

/// `10.0.0.0/24`, or an address with its subnet's prefix, `10.0.0.7/24`.
pub fn ipv4_network(field: &'static str, value: &str) -> Result<Ipv4Network, WireError> {
    address(field, value, "an IPv4 address with a prefix (10.0.0.0/24)")
}

/// `02:42:ac:11:00:02`.
pub fn mac(field: &'static str, value: &str) -> Result<MacAddr, WireError> {
    address(field, value, "a MAC address (aa:bb:cc:dd:ee:ff)")
}

/// An optional value, empty on the wire when absent.
pub fn optional<T>(
    field: &'static str,
    value: &str,
    parse: fn(&'static str, &str) -> Result<T, WireError>,
) -> Result<Option<T>, WireError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(field, value).map(Some)
    }
}

/// An optional value on the wire: empty when absent.
pub fn or_empty<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

pub fn timestamp(t: Timestamp) -> pb::Timestamp {
    pb::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

/// A timestamp off the wire; absent is the epoch, as the store's default.
pub fn timestamp_of(t: Option<&pb::Timestamp>) -> Timestamp {
    t.map_or_else(Timestamp::default, |t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

pub fn duration(d: Duration) -> pb::Duration {
    pb::Duration {
        seconds: d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

/// A duration off the wire; absent is `default`.
pub fn duration_of(
    field: &'static str,
    d: Option<&pb::Duration>,
    default: Duration,
) -> Result<Duration, WireError> {
    let Some(d) = d else { return Ok(default) };
    if d.nanos >= 1_000_000_000 {
        return Err(WireError::Duration {
            field,
            nanos: d.nanos,
        });
    }
    Ok(Duration::new(d.seconds, d.nanos))
}

pub fn annotations(a: &Annotations) -> pb::Annotations {
    pb::Annotations {
        name: a.name.clone(),
        labels: map(&a.labels),
    }
}

pub fn annotations_of(a: Option<pb::Annotations>) -> Annotations {
    let a = a.unwrap_or_default();
    Annotations {
        name: a.name,
        labels: a.labels.into_iter().collect(),
    }
}

pub fn map(m: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn resources(r: Resources) -> pb::Resources {
    pb::Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    }
}

pub fn resources_of(r: Option<pb::Resources>) -> Resources {
    r.map_or_else(Resources::default, |r| Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    })
}

/// The store's metadata of an object off the wire (version and times).
pub fn meta_of(
    version: u64,
    created_at: Option<&pb::Timestamp>,
    updated_at: Option<&pb::Timestamp>,
) -> Meta {
    Meta {
        version,
        created_at: timestamp_of(created_at),
        updated_at: timestamp_of(updated_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_address_off_the_wire_is_ip_and_port_or_nothing() {
        assert_eq!(
            optional_socket_addr("RegisterRequest.agent_addr", ""),
            Ok(None)
        );
        assert_eq!(
            optional_socket_addr("RegisterRequest.agent_addr", "[fd00::2]:2377"),
            Ok(Some("[fd00::2]:2377".parse().unwrap()))
        );
        for bad in ["node1:2377", "10.0.0.1", "10.0.0.1:99999"] {
            assert_eq!(
                socket_addr("advertise_addr", bad).unwrap_err().to_string(),
                format!("advertise_addr: {bad:?} is not an address with a port (IP:PORT)")
            );
        }
    }
}

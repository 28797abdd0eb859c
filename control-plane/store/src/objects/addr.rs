//! The serde form of an optional address in a store object: the address's own string
//! (`10.0.1.1`, `02:42:ac:11:00:02`), or `""` when there is none. Earlier versions stored
//! these fields as strings with `""` for "none", so the typed field reads and writes the very
//! same JSON (docs/model.md, "A task's address").

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serializer};

/// `#[serde(with = "empty_as_none")]` for an `Option<T>` whose `None` is stored as `""`.
pub mod empty_as_none {
    use super::*;

    pub fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(deserializer)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use crate::objects::{Network, Node, NodeDescription, Service, Task};

    /// `object`'s JSON with `fields` (JSON pointers) set to the strings an earlier version
    /// stored there.
    fn old_form<T: Serialize>(object: &T, fields: &[(&str, Value)]) -> Value {
        let mut json = serde_json::to_value(object).unwrap();
        for (pointer, value) in fields {
            *json.pointer_mut(pointer).unwrap() = value.clone();
        }
        json
    }

    /// Reads `old` as the typed object and writes it back: the same JSON.
    fn round_trip<T: Serialize + DeserializeOwned>(old: &Value) -> T {
        let typed: T = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), old);
        typed
    }

    #[test]
    fn objects_stored_with_string_addresses_load_typed_and_store_the_same_json() {
        let mut task = Task::default();
        task.networks
            .push(crate::objects::NetworkAttachment::default());
        let old = old_form(
            &task,
            &[(
                "/networks/0/addresses",
                json!(["10.0.1.7/24", "10.0.2.7/16"]),
            )],
        );
        let task: Task = round_trip(&old);
        assert_eq!(
            task.networks[0].addresses,
            [
                "10.0.1.7/24".parse().unwrap(),
                "10.0.2.7/16".parse().unwrap()
            ]
        );
        assert_eq!(
            task.networks[0].addresses[0].ip(),
            Ipv4Addr::new(10, 0, 1, 7)
        );

        let old = json!({
            "id": "n", "vni": 4097,
            "spec": { "annotations": { "name": "back" }, "ipam": { "driver": "default",
                "configs": [{ "subnet": "10.0.1.0/24", "range": "", "gateway": "" }] } },
            "ipam": [{ "subnet": "10.0.1.0/24", "range": "10.0.1.128/25",
                "gateway": "10.0.1.1" }],
        });
        let network: Network = serde_json::from_value(old.clone()).unwrap();
        let config = &network.ipam[0];
        assert_eq!(config.subnet, "10.0.1.0/24".parse().unwrap());
        assert_eq!(config.range, Some("10.0.1.128/25".parse().unwrap()));
        assert_eq!(config.gateway, Some(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(
            (
                network.spec.ipam.configs[0].range,
                network.spec.ipam.configs[0].gateway
            ),
            (None, None)
        );
        let again = serde_json::to_value(&network).unwrap();
        assert_eq!(again["ipam"], old["ipam"]);
        assert_eq!(again["spec"]["ipam"], old["spec"]["ipam"]);

        let node = Node {
            description: Some(NodeDescription::default()),
            ..Node::default()
        };
        let old = old_form(
            &node,
            &[
                ("/description/underlay_mac", json!("02:42:ac:11:00:02")),
                ("/status/addr", json!("192.168.77.2")),
            ],
        );
        let typed: Node = round_trip(&old);
        assert_eq!(
            typed.description.unwrap().underlay_mac.unwrap().to_string(),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            typed.status.addr,
            Some(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 2)))
        );
        let old = old_form(
            &node,
            &[
                ("/description/underlay_mac", json!("")),
                ("/status/addr", json!("fd00::2")),
            ],
        );
        let typed: Node = round_trip(&old);
        assert_eq!(typed.description.unwrap().underlay_mac, None);
        assert_eq!(typed.status.addr, Some("fd00::2".parse().unwrap()));
        let old = old_form(&node, &[("/status/addr", json!(""))]);
        assert_eq!(round_trip::<Node>(&old).status.addr, None);

        // A manager's address and the node's Agent address, as `host:port` strings.
        let manager = Node {
            manager_status: Some(crate::objects::ManagerStatus {
                raft_id: 2,
                addr: "10.0.0.1:2377".parse().unwrap(),
                leader: false,
                reachability: Default::default(),
            }),
            ..Node::default()
        };
        let old = old_form(
            &manager,
            &[
                ("/manager_status/addr", json!("192.168.77.3:2377")),
                ("/status/agent_addr", json!("192.168.77.3:2377")),
            ],
        );
        let typed: Node = round_trip(&old);
        let addr: std::net::SocketAddr = "192.168.77.3:2377".parse().unwrap();
        assert_eq!(typed.manager_status.unwrap().addr, addr);
        assert_eq!(typed.status.agent_addr, Some(addr));
        let old = old_form(&manager, &[("/status/agent_addr", json!(""))]);
        assert_eq!(round_trip::<Node>(&old).status.agent_addr, None);

        let service = Service {
            endpoint: Some(crate::objects::Endpoint::default()),
            ..Service::default()
        };
        let old = old_form(
            &service,
            &[(
                "/endpoint/virtual_ips",
                json!([{ "network_id": "ing", "addr": "10.0.0.2/24" }]),
            )],
        );
        let service: Service = round_trip(&old);
        assert_eq!(
            service.endpoint.unwrap().virtual_ips[0].addr,
            "10.0.0.2/24".parse().unwrap()
        );
    }

    #[test]
    fn a_stored_value_that_is_not_its_type_fails_the_read() {
        let node = serde_json::to_value(Node::default()).unwrap();
        let mut bad = node.clone();
        bad["status"]["addr"] = json!("not an address");
        assert!(serde_json::from_value::<Node>(bad).is_err());
    }
}

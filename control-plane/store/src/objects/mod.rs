//! The objects of the cluster store, after SwarmKit's `api/objects.proto`.
//!
//! Every object keeps apart what the user asked for (`spec`), what the manager decided
//! (`desired_state`, `role`, allocations) and what agents observed (`status`), so that each loop
//! writes only its own fields. All of it is plain serde data: it travels in Raft log entries and
//! snapshots as JSON, and fields added later must be `#[serde(default)]` so older logs still
//! decode.

mod addr;
mod cluster;
mod common;
mod health;
mod network;
mod node;
mod registry_auth;
mod secret;
mod service;
mod task;
mod update_config;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use addr::empty_as_none;
pub use cluster::{
    CaConfig, Cluster, ClusterSpec, DEFAULT_CLUSTER_NAME, DispatcherConfig, EncryptionConfig,
    JoinTokens, OrchestrationConfig, RaftConfig, RootCa,
};
pub use cluster::{LABEL_MESH_MODE, RemovedNode, RootRotation, StoredGossipKey};
pub use common::{Annotations, Meta, ResourceRequirements, Resources, Timestamp};
pub use health::{Health, HealthCheck, HealthConfig, HealthTest, HealthTestError};
pub use network::{IpamConfig, IpamConfigError, IpamOptions, Network, NetworkSpec, parse_cidr};
pub use node::{
    ControlPort, EngineDescription, ManagerStatus, Node, NodeAvailability, NodeDescription,
    NodeMembership, NodeRole, NodeSpec, NodeState, NodeStatus, NodeTlsInfo, Platform, PortOwner,
    Reachability,
};
pub use registry_auth::RegistryAuth;
pub use secret::{Config, ConfigSpec, FileReference, FileTarget, Secret, SecretSpec};
pub use service::{
    ContainerSpec, Endpoint, EndpointMode, EndpointSpec, Mount, MountType, NetworkAttachmentConfig,
    Placement, PlacementPreference, PortConfig, Protocol, ProtocolError, PublishMode,
    RestartCondition, RestartPolicy, Service, ServiceMode, ServiceSpec, TaskSpec, Ulimit,
    VirtualIp, parse_protocol,
};
pub use task::{NetworkAttachment, RuntimeStatus, Task, TaskState, TaskStatus, UnknownTaskState};
pub use update_config::{
    FailureAction, FailureRatio, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};

/// The kinds of object the store holds; one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Node,
    Service,
    Task,
    Network,
    Cluster,
    Secret,
    Config,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        Self::Node,
        Self::Service,
        Self::Task,
        Self::Network,
        Self::Cluster,
        Self::Secret,
        Self::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Service => "service",
            Self::Task => "task",
            Self::Network => "network",
            Self::Cluster => "cluster",
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Self::Node => "nodes",
            Self::Service => "services",
            Self::Task => "tasks",
            Self::Network => "networks",
            Self::Cluster => "clusters",
            Self::Secret => "secrets",
            Self::Config => "configs",
        }
    }

    /// Whether two objects of this kind may not share a name. Swarm refuses a second service
    /// or network called the same; nodes may share hostnames (lookups then report ambiguity)
    /// and tasks are named after their service.
    pub fn has_unique_names(self) -> bool {
        matches!(
            self,
            Self::Service | Self::Network | Self::Cluster | Self::Secret | Self::Config
        )
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any object, for code that handles all kinds alike (changes, events, snapshots). Boxed:
/// objects are hundreds of bytes and differ in size, and `Object`s move through channels and
/// batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    Node(Box<Node>),
    Service(Box<Service>),
    Task(Box<Task>),
    Network(Box<Network>),
    Cluster(Box<Cluster>),
    Secret(Box<Secret>),
    Config(Box<Config>),
}

/// Runs `$body` with `$o` bound to the object inside whichever variant `$value` is.
macro_rules! each_object {
    ($value:expr, $o:ident => $body:expr) => {
        match $value {
            Object::Node($o) => $body,
            Object::Service($o) => $body,
            Object::Task($o) => $body,
            Object::Network($o) => $body,
            Object::Cluster($o) => $body,
            Object::Secret($o) => $body,
            Object::Config($o) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        each_object!(self, o => object_kind_of(&**o))
    }

    pub fn id(&self) -> &str {
        each_object!(self, o => o.id())
    }

    pub fn meta(&self) -> &Meta {
        each_object!(self, o => o.meta())
    }

    pub fn meta_mut(&mut self) -> &mut Meta {
        each_object!(self, o => o.meta_mut())
    }

    pub fn set_id(&mut self, id: String) {
        each_object!(self, o => o.set_id(id))
    }

    /// The name that must be unique among objects of this kind, if the kind has one and the
    /// object is named.
    pub fn unique_name(&self) -> Option<&str> {
        each_object!(self, o => o.unique_name())
    }

    /// The object alone, without the enum tag: the form kept in the kind's table.
    pub(crate) fn encode_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        each_object!(self, o => serde_json::to_vec(o))
    }

    pub(crate) fn decode_body(kind: ObjectKind, bytes: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ObjectKind::Node => Self::Node(serde_json::from_slice(bytes)?),
            ObjectKind::Service => Self::Service(serde_json::from_slice(bytes)?),
            ObjectKind::Task => Self::Task(serde_json::from_slice(bytes)?),
            ObjectKind::Network => Self::Network(serde_json::from_slice(bytes)?),
            ObjectKind::Cluster => Self::Cluster(serde_json::from_slice(bytes)?),
            ObjectKind::Secret => Self::Secret(serde_json::from_slice(bytes)?),
            ObjectKind::Config => Self::Config(serde_json::from_slice(bytes)?),
        })
    }
}

fn object_kind_of<T: StoreObject>(_: &T) -> ObjectKind {
    T::KIND
}

/// What the store needs to know about each object type. Implemented for the five object
/// structs; lets `view`/`update` callers work with concrete types (`tx.get::<Service>(id)`).
pub trait StoreObject:
    Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    const KIND: ObjectKind;

    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;

    /// The name lookups show and match (a node's hostname when it has no name).
    fn name(&self) -> &str;

    /// Whether a lookup by `name` finds this object. Nodes answer to their name and their
    /// hostname, as `docker node inspect` does.
    fn matches_name(&self, name: &str) -> bool {
        !name.is_empty() && self.name() == name
    }

    fn unique_name(&self) -> Option<&str> {
        let name = self.name();
        (Self::KIND.has_unique_names() && !name.is_empty()).then_some(name)
    }

    fn into_object(self) -> Object;
    fn from_object(object: Object) -> Option<Self>;
}

macro_rules! store_object {
    ($ty:ident, name: |$this:ident| $name:expr $(, matches: |$m:ident, $n:ident| $matches:expr)?) => {
        impl StoreObject for $ty {
            const KIND: ObjectKind = ObjectKind::$ty;

            fn id(&self) -> &str {
                &self.id
            }

            fn set_id(&mut self, id: String) {
                self.id = id;
            }

            fn meta(&self) -> &Meta {
                &self.meta
            }

            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }

            fn name(&self) -> &str {
                let $this = self;
                $name
            }

            $(
                fn matches_name(&self, $n: &str) -> bool {
                    let $m = self;
                    $matches
                }
            )?

            fn into_object(self) -> Object {
                Object::$ty(Box::new(self))
            }

            fn from_object(object: Object) -> Option<Self> {
                match object {
                    Object::$ty(o) => Some(*o),
                    _ => None,
                }
            }
        }
    };
}

store_object!(Node, name: |node| node.display_name(), matches: |node, name| {
    !name.is_empty()
        && (node.spec.annotations.name == name
            || node.description.as_ref().is_some_and(|d| d.hostname == name))
});
store_object!(Service, name: |service| &service.spec.annotations.name);
store_object!(Task, name: |_task| "");
store_object!(Network, name: |network| &network.spec.annotations.name);
store_object!(Cluster, name: |cluster| &cluster.spec.annotations.name);
store_object!(Secret, name: |secret| &secret.spec.annotations.name);
store_object!(Config, name: |config| &config.spec.annotations.name);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_body_round_trips_per_kind() {
        let mut service = Service {
            id: "svc".into(),
            ..Service::default()
        };
        service.spec.annotations.name = "web".into();
        let object = service.clone().into_object();
        assert_eq!(object.kind(), ObjectKind::Service);
        assert_eq!(object.unique_name(), Some("web"));
        let bytes = object.encode_body().unwrap();
        let back = Object::decode_body(ObjectKind::Service, &bytes).unwrap();
        assert_eq!(Service::from_object(back), Some(service));
    }

    #[test]
    fn nodes_answer_to_name_or_hostname_and_names_are_not_unique() {
        let mut node = Node {
            description: Some(NodeDescription {
                hostname: "host-1".into(),
                ..Default::default()
            }),
            ..Node::default()
        };
        assert!(node.matches_name("host-1"));
        assert_eq!(node.unique_name(), None);
        node.spec.annotations.name = "db".into();
        assert!(node.matches_name("db"));
        assert!(node.matches_name("host-1"));
        assert!(!node.matches_name(""));
    }

    #[test]
    fn old_records_without_new_fields_still_decode() {
        let task: Task = serde_json::from_str(r#"{"id":"t1","service_id":"s1"}"#).unwrap();
        assert_eq!(task.desired_state, TaskState::New);
        assert_eq!(task.spec.restart_policy, RestartPolicy::default());
    }
}

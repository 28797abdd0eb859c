//! Test helpers: a real cluster CA and real node credentials, made with real crypto.

use std::time::SystemTime;

use super::{CertExpiry, NodeCredentials, NodeIdentity, NodeKey, Role, RootCa};

/// A cluster: its root CA and its ID.
pub(crate) struct TestCluster {
    pub(crate) ca: RootCa,
    pub(crate) cluster_id: String,
}

impl TestCluster {
    pub(crate) fn new(cluster_id: &str, now: SystemTime) -> TestCluster {
        TestCluster {
            ca: RootCa::generate(now).unwrap(),
            cluster_id: cluster_id.to_owned(),
        }
    }

    pub(crate) fn identity(&self, node_id: &str, role: Role) -> NodeIdentity {
        NodeIdentity {
            node_id: node_id.to_owned(),
            role,
            cluster_id: self.cluster_id.clone(),
        }
    }

    /// A node of this cluster, the way a join makes it: key on the node, CSR to the CA.
    pub(crate) fn node(&self, node_id: &str, role: Role, now: SystemTime) -> NodeCredentials {
        let key = NodeKey::generate().unwrap();
        let cert = self
            .ca
            .issue_node_cert(
                &key.csr().unwrap(),
                &self.identity(node_id, role),
                CertExpiry::DEFAULT,
                now,
            )
            .unwrap();
        NodeCredentials::new(self.ca.cert().clone(), cert, key, now).unwrap()
    }
}

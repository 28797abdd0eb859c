//! Test helpers: a real cluster CA and real node credentials, made with real crypto.

// A failure here is the calling test's failure.
#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use super::{CertExpiry, NodeCredentials, NodeIdentity, NodeKey, Role, RootCa};

/// A cluster: its root CA and its ID.
pub struct TestCluster {
    pub ca: RootCa,
    pub cluster_id: String,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CA's key stays off the output.
        f.debug_struct("TestCluster")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    pub fn new(cluster_id: &str, now: SystemTime) -> TestCluster {
        TestCluster {
            ca: RootCa::generate(now).unwrap(),
            cluster_id: cluster_id.to_owned(),
        }
    }

    pub fn identity(&self, node_id: &str, role: Role) -> NodeIdentity {
        NodeIdentity {
            node_id: node_id.to_owned(),
            role,
            cluster_id: self.cluster_id.clone(),
        }
    }

    /// A node of this cluster, the way a join makes it: key on the node, CSR to the CA.
    pub fn node(&self, node_id: &str, role: Role, now: SystemTime) -> NodeCredentials {
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

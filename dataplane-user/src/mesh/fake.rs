//! An in-memory stand-in for the kernel maps, for unit tests of the diff and for the
//! agent's in-memory data plane (`hive::agent::dataplane::memory`).
//! It keeps the same keys and values as the real maps and logs every
//! operation in order, so tests can check both the end state and the order
//! in which a packet would have seen it change.

use std::collections::{BTreeMap, HashMap};

use hive_common::maps::{Backend, Endpoint, Frontend, NodeConfig, Peer, Ring, ServiceKey};

use super::ops::MeshMapOps;
use crate::maps::{BackendRecord, BalancerRecord, MapsError};

/// One map operation, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Node,
    PutPeer(u32),
    RemovePeer(u32),
    PutEndpoint(u32),
    RemoveEndpoint(u32),
    PutFrontend(ServiceKey, Frontend),
    RemoveFrontend(ServiceKey),
    SetRing(u32, Ring),
    SetBackend(u32),
    WriteSegment { offset: u32, len: u32 },
    ResetServiceCounters(u32),
    ResetBackendCounters(u32),
    PutBalancerRecord(u32),
    RemoveBalancerRecord(u32),
    PutBackendRecord(u32),
    RemoveBackendRecord(u32),
    GracePeriod,
    ForgetFlows(Vec<u32>),
}

#[derive(Debug, Default, PartialEq)]
pub struct FakeMaps {
    pub node: NodeConfig,
    pub peers: HashMap<u32, Peer>,
    pub endpoints: HashMap<u32, Endpoint>,
    pub frontends: HashMap<ServiceKey, Frontend>,
    pub rings: BTreeMap<u32, Ring>,
    pub backends: BTreeMap<u32, Backend>,
    pub maglev: BTreeMap<u32, u32>,
    pub balancer_records: BTreeMap<u32, BalancerRecord>,
    pub backend_records: BTreeMap<u32, BackendRecord>,
    pub log: Vec<Op>,
    /// Fail every write once this many operations are logged (tests of a
    /// failed apply).
    pub fail_at: Option<usize>,
}

impl FakeMaps {
    /// The backend ids a flow with `hash` would be sent to through the
    /// front end `key` (what the programs compute), if any.
    pub fn pick(&self, key: &ServiceKey, hash: u32) -> Option<u32> {
        let fe = self.frontends.get(key)?;
        let ring = self.rings.get(&fe.service)?;
        if ring.size == 0 {
            return None;
        }
        self.maglev.get(&(ring.offset + hash % ring.size)).copied()
    }

    pub fn take_log(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.log)
    }

    fn check(&self) -> Result<(), MapsError> {
        match self.fail_at {
            Some(n) if self.log.len() >= n => Err(MapsError::Barrier {
                source: std::io::Error::other("injected failure"),
            }),
            _ => Ok(()),
        }
    }
}

impl MeshMapOps for FakeMaps {
    fn set_node(&mut self, config: &NodeConfig) -> Result<(), MapsError> {
        self.check()?;
        self.node = *config;
        self.log.push(Op::Node);
        Ok(())
    }
    fn put_peer(&mut self, addr_be: u32, peer: &Peer) -> Result<(), MapsError> {
        self.check()?;
        self.peers.insert(addr_be, *peer);
        self.log.push(Op::PutPeer(addr_be));
        Ok(())
    }
    fn remove_peer(&mut self, addr_be: u32) -> Result<(), MapsError> {
        self.check()?;
        self.peers.remove(&addr_be);
        self.log.push(Op::RemovePeer(addr_be));
        Ok(())
    }
    fn put_endpoint(&mut self, addr_be: u32, endpoint: &Endpoint) -> Result<(), MapsError> {
        self.check()?;
        self.endpoints.insert(addr_be, *endpoint);
        self.log.push(Op::PutEndpoint(addr_be));
        Ok(())
    }
    fn remove_endpoint(&mut self, addr_be: u32) -> Result<(), MapsError> {
        self.check()?;
        self.endpoints.remove(&addr_be);
        self.log.push(Op::RemoveEndpoint(addr_be));
        Ok(())
    }
    fn put_frontend(&mut self, key: &ServiceKey, frontend: &Frontend) -> Result<(), MapsError> {
        self.check()?;
        self.frontends.insert(*key, *frontend);
        self.log.push(Op::PutFrontend(*key, *frontend));
        Ok(())
    }
    fn remove_frontend(&mut self, key: &ServiceKey) -> Result<(), MapsError> {
        self.check()?;
        self.frontends.remove(key);
        self.log.push(Op::RemoveFrontend(*key));
        Ok(())
    }
    fn set_ring(&mut self, service: u32, ring: &Ring) -> Result<(), MapsError> {
        self.check()?;
        self.rings.insert(service, *ring);
        self.log.push(Op::SetRing(service, *ring));
        Ok(())
    }
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), MapsError> {
        self.check()?;
        self.backends.insert(id, *backend);
        self.log.push(Op::SetBackend(id));
        Ok(())
    }
    fn write_segment(&mut self, offset: u32, slots: &[u32]) -> Result<(), MapsError> {
        self.check()?;
        for (i, &b) in (offset..).zip(slots) {
            self.maglev.insert(i, b);
        }
        self.log.push(Op::WriteSegment {
            offset,
            len: slots.len() as u32,
        });
        Ok(())
    }
    fn reset_service_counters(&mut self, service: u32) -> Result<(), MapsError> {
        self.check()?;
        self.log.push(Op::ResetServiceCounters(service));
        Ok(())
    }
    fn reset_backend_counters(&mut self, backend: u32) -> Result<(), MapsError> {
        self.check()?;
        self.log.push(Op::ResetBackendCounters(backend));
        Ok(())
    }
    fn put_balancer_record(&mut self, id: u32, record: &BalancerRecord) -> Result<(), MapsError> {
        self.check()?;
        self.balancer_records.insert(id, *record);
        self.log.push(Op::PutBalancerRecord(id));
        Ok(())
    }
    fn remove_balancer_record(&mut self, id: u32) -> Result<(), MapsError> {
        self.check()?;
        self.balancer_records.remove(&id);
        self.log.push(Op::RemoveBalancerRecord(id));
        Ok(())
    }
    fn put_backend_record(&mut self, id: u32, record: &BackendRecord) -> Result<(), MapsError> {
        self.check()?;
        self.backend_records.insert(id, *record);
        self.log.push(Op::PutBackendRecord(id));
        Ok(())
    }
    fn remove_backend_record(&mut self, id: u32) -> Result<(), MapsError> {
        self.check()?;
        self.backend_records.remove(&id);
        self.log.push(Op::RemoveBackendRecord(id));
        Ok(())
    }
    fn grace_period(&mut self) -> Result<(), MapsError> {
        self.check()?;
        self.log.push(Op::GracePeriod);
        Ok(())
    }
    fn forget_flows(&mut self, addrs: &[u32]) -> Result<usize, MapsError> {
        self.check()?;
        self.log.push(Op::ForgetFlows(addrs.to_vec()));
        Ok(0)
    }
    fn read_node(&self) -> Result<NodeConfig, MapsError> {
        Ok(self.node)
    }
    fn read_peers(&self) -> Result<Vec<(u32, Peer)>, MapsError> {
        Ok(self.peers.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn read_endpoints(&self) -> Result<Vec<(u32, Endpoint)>, MapsError> {
        Ok(self.endpoints.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn read_frontends(&self) -> Result<Vec<(ServiceKey, Frontend)>, MapsError> {
        Ok(self.frontends.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn read_ring(&self, service: u32) -> Result<Ring, MapsError> {
        Ok(self.rings.get(&service).copied().unwrap_or_default())
    }
    fn read_backend(&self, id: u32) -> Result<Backend, MapsError> {
        Ok(self.backends.get(&id).copied().unwrap_or_default())
    }
    fn read_balancer_records(&self) -> Result<Vec<(u32, BalancerRecord)>, MapsError> {
        Ok(self
            .balancer_records
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect())
    }
    fn read_backend_records(&self) -> Result<Vec<(u32, BackendRecord)>, MapsError> {
        Ok(self.backend_records.iter().map(|(k, v)| (*k, *v)).collect())
    }
}

//! The boundary between the diff logic and the maps: every map operation
//! [`super::apply::Reconciler`] performs, as a trait. The kernel maps
//! implement it ([`KernelMaps`]); unit tests of the diff use an in-memory
//! fake, so the diff's order and minimality can be checked without root.

use hive_common::maps::{Backend, Endpoint, Frontend, NodeConfig, Peer, Ring, ServiceKey};

use crate::maps::{BackendRecord, BalancerRecord, MapsError, MeshMaps, RcuBarrier};

/// Map operations the reconciler needs. Removing an absent key succeeds.
pub trait MeshMapOps {
    fn set_node(&mut self, config: &NodeConfig) -> Result<(), MapsError>;
    fn put_peer(&mut self, addr_be: u32, peer: &Peer) -> Result<(), MapsError>;
    fn remove_peer(&mut self, addr_be: u32) -> Result<(), MapsError>;
    fn put_endpoint(&mut self, addr_be: u32, endpoint: &Endpoint) -> Result<(), MapsError>;
    fn remove_endpoint(&mut self, addr_be: u32) -> Result<(), MapsError>;
    fn put_frontend(&mut self, key: &ServiceKey, frontend: &Frontend) -> Result<(), MapsError>;
    fn remove_frontend(&mut self, key: &ServiceKey) -> Result<(), MapsError>;
    fn set_ring(&mut self, service: u32, ring: &Ring) -> Result<(), MapsError>;
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), MapsError>;
    fn write_segment(&mut self, offset: u32, slots: &[u32]) -> Result<(), MapsError>;
    fn reset_service_counters(&mut self, service: u32) -> Result<(), MapsError>;
    fn reset_backend_counters(&mut self, backend: u32) -> Result<(), MapsError>;
    fn put_balancer_record(&mut self, id: u32, record: &BalancerRecord) -> Result<(), MapsError>;
    fn remove_balancer_record(&mut self, id: u32) -> Result<(), MapsError>;
    fn put_backend_record(&mut self, id: u32, record: &BackendRecord) -> Result<(), MapsError>;
    fn remove_backend_record(&mut self, id: u32) -> Result<(), MapsError>;
    /// Return once every program run that started before the call is over.
    fn grace_period(&mut self) -> Result<(), MapsError>;
    /// Delete the conntrack entries of the flows of `addrs` (sorted task
    /// addresses that left the mesh: their drain is over); how many went.
    fn forget_flows(&mut self, addrs: &[u32]) -> Result<usize, MapsError>;

    // Reads, for recovering the applied state after a restart.
    fn read_node(&self) -> Result<NodeConfig, MapsError>;
    fn read_peers(&self) -> Result<Vec<(u32, Peer)>, MapsError>;
    fn read_endpoints(&self) -> Result<Vec<(u32, Endpoint)>, MapsError>;
    fn read_frontends(&self) -> Result<Vec<(ServiceKey, Frontend)>, MapsError>;
    fn read_ring(&self, service: u32) -> Result<Ring, MapsError>;
    fn read_backend(&self, id: u32) -> Result<Backend, MapsError>;
    fn read_balancer_records(&self) -> Result<Vec<(u32, BalancerRecord)>, MapsError>;
    fn read_backend_records(&self) -> Result<Vec<(u32, BackendRecord)>, MapsError>;
}

/// The real maps plus the grace-period barrier.
#[derive(Debug)]
pub struct KernelMaps {
    pub maps: MeshMaps,
    pub barrier: RcuBarrier,
}

impl MeshMapOps for KernelMaps {
    fn set_node(&mut self, config: &NodeConfig) -> Result<(), MapsError> {
        self.maps.set_node_config(config)
    }
    fn put_peer(&mut self, addr_be: u32, peer: &Peer) -> Result<(), MapsError> {
        self.maps.put_peer(addr_be, peer)
    }
    fn remove_peer(&mut self, addr_be: u32) -> Result<(), MapsError> {
        self.maps.remove_peer(addr_be)
    }
    fn put_endpoint(&mut self, addr_be: u32, endpoint: &Endpoint) -> Result<(), MapsError> {
        self.maps.put_endpoint(addr_be, endpoint)
    }
    fn remove_endpoint(&mut self, addr_be: u32) -> Result<(), MapsError> {
        self.maps.remove_endpoint(addr_be)
    }
    fn put_frontend(&mut self, key: &ServiceKey, frontend: &Frontend) -> Result<(), MapsError> {
        self.maps.put_frontend(key, frontend)
    }
    fn remove_frontend(&mut self, key: &ServiceKey) -> Result<(), MapsError> {
        self.maps.remove_frontend(key)
    }
    fn set_ring(&mut self, service: u32, ring: &Ring) -> Result<(), MapsError> {
        self.maps.set_ring(service, ring)
    }
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), MapsError> {
        self.maps.set_backend(id, backend)
    }
    fn write_segment(&mut self, offset: u32, slots: &[u32]) -> Result<(), MapsError> {
        self.maps.write_maglev_slots(offset, slots)
    }
    fn reset_service_counters(&mut self, service: u32) -> Result<(), MapsError> {
        self.maps.reset_service_counters(service)
    }
    fn reset_backend_counters(&mut self, backend: u32) -> Result<(), MapsError> {
        self.maps.reset_backend_counters(backend)
    }
    fn put_balancer_record(&mut self, id: u32, record: &BalancerRecord) -> Result<(), MapsError> {
        self.maps.put_balancer_record(id, record)
    }
    fn remove_balancer_record(&mut self, id: u32) -> Result<(), MapsError> {
        self.maps.remove_balancer_record(id)
    }
    fn put_backend_record(&mut self, id: u32, record: &BackendRecord) -> Result<(), MapsError> {
        self.maps.put_backend_record(id, record)
    }
    fn remove_backend_record(&mut self, id: u32) -> Result<(), MapsError> {
        self.maps.remove_backend_record(id)
    }
    fn grace_period(&mut self) -> Result<(), MapsError> {
        self.barrier
            .wait()
            .map_err(|source| MapsError::Barrier { source })
    }
    fn forget_flows(&mut self, addrs: &[u32]) -> Result<usize, MapsError> {
        self.maps.forget_flows_of(addrs)
    }
    fn read_node(&self) -> Result<NodeConfig, MapsError> {
        self.maps.node_config()
    }
    fn read_peers(&self) -> Result<Vec<(u32, Peer)>, MapsError> {
        self.maps.peers()
    }
    fn read_endpoints(&self) -> Result<Vec<(u32, Endpoint)>, MapsError> {
        self.maps.endpoints()
    }
    fn read_frontends(&self) -> Result<Vec<(ServiceKey, Frontend)>, MapsError> {
        self.maps.frontends()
    }
    fn read_ring(&self, service: u32) -> Result<Ring, MapsError> {
        self.maps.ring(service)
    }
    fn read_backend(&self, id: u32) -> Result<Backend, MapsError> {
        self.maps.backend(id)
    }
    fn read_balancer_records(&self) -> Result<Vec<(u32, BalancerRecord)>, MapsError> {
        self.maps.balancer_records()
    }
    fn read_backend_records(&self) -> Result<Vec<(u32, BackendRecord)>, MapsError> {
        self.maps.backend_records()
    }
}

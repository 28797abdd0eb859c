//! The tasks' way to their embedded resolver (hive-ebpf `resolver`): three
//! cgroup sock_addr programs, loaded and pinned with the others, attached
//! once to the cgroup v2 directory that holds the node's task cgroups, and
//! the map `HIVE_RESOLVERS` from a task namespace's cookie to the port its
//! resolver really listens on.
//!
//! | pin | what |
//! |---|---|
//! | `prog_resolver_{connect4,sendmsg4,recvmsg4}` | the loaded programs |
//! | `link_resolver_{connect4,sendmsg4,recvmsg4}` | their attachment to the tasks' cgroup |
//! | `HIVE_RESOLVERS` | namespace cookie → port |
//!
//! A pinned link stays attached after the agent exits, like the others, so
//! a restarted agent finds the redirect in place and only refreshes ports.

use std::{fs::File, path::Path};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError},
    programs::{CgroupAttachMode, CgroupSockAddr, CgroupSockAddrAttachType},
};
use hive_common::maps::RESOLVER_PORTS;
use tracing::info;

use crate::loader::{Dataplane, DataplaneError, pin_link, pin_program, program, program_failed};

/// (program, its pin, its link's pin, where it attaches).
const PROGRAMS: [(&str, &str, &str, CgroupSockAddrAttachType); 3] = [
    (
        "resolver_connect4",
        "prog_resolver_connect4",
        "link_resolver_connect4",
        CgroupSockAddrAttachType::Connect4,
    ),
    (
        "resolver_sendmsg4",
        "prog_resolver_sendmsg4",
        "link_resolver_sendmsg4",
        CgroupSockAddrAttachType::UDPSendMsg4,
    ),
    (
        "resolver_recvmsg4",
        "prog_resolver_recvmsg4",
        "link_resolver_recvmsg4",
        CgroupSockAddrAttachType::UDPRecvMsg4,
    ),
];

/// Load and pin the programs (attached later, to a cgroup the agent names).
pub(crate) fn load_and_pin(ebpf: &mut aya::Ebpf, dir: &Path) -> Result<(), DataplaneError> {
    for (name, pin, _, _) in PROGRAMS {
        let prog: &mut CgroupSockAddr = program(ebpf, name)?;
        prog.load()
            .map_err(program_failed(name, "load (verifier)"))?;
        pin_program(dir, pin, |p| prog.pin(p))?;
    }
    Ok(())
}

impl Dataplane {
    /// Attach the redirect to `cgroup`, the cgroup v2 directory holding the
    /// node's task cgroups (made if missing); every task below it then
    /// reaches its resolver at 127.0.0.11:53. Idempotent: attachments
    /// already pinned are kept as they are.
    pub fn redirect_resolvers(&self, cgroup: &Path) -> Result<(), DataplaneError> {
        std::fs::create_dir_all(cgroup).map_err(|source| DataplaneError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        let dir = self.pin_dir();
        for (name, prog_pin, link_pin, attach_type) in PROGRAMS {
            let link_path = dir.join(link_pin);
            if link_path.exists() {
                continue;
            }
            let prog_path = dir.join(prog_pin);
            let mut prog = CgroupSockAddr::from_pin(&prog_path, attach_type).map_err(|e| {
                DataplaneError::OpenPinned {
                    path: prog_path.clone(),
                    detail: format!("{e} (a data plane loaded by an older hive: restart with its pins destroyed to get the resolver redirect)"),
                }
            })?;
            let target = File::open(cgroup).map_err(|source| DataplaneError::Cgroup {
                path: cgroup.to_path_buf(),
                source,
            })?;
            // A bpf_link on a cgroup always runs beside the others (the kernel
            // takes it as multi); its creation wants no flags, which is `Single`.
            let link_id = prog
                .attach(&target, CgroupAttachMode::Single)
                .map_err(program_failed(name, "attach to the tasks' cgroup"))?;
            let link = prog
                .take_link(link_id)
                .map_err(program_failed(name, "take its link"))?;
            pin_link(
                link,
                name,
                "get a bpf_link (kernel 5.7+) to pin",
                &link_path,
            )?;
        }
        info!(cgroup = %cgroup.display(), "embedded resolver redirect attached");
        Ok(())
    }

    /// The resolver of the task namespace with cookie `netns_cookie` listens
    /// on `port` (of 127.0.0.11).
    pub fn set_resolver_port(&self, netns_cookie: u64, port: u16) -> Result<(), DataplaneError> {
        let mut map = self.resolver_ports()?;
        map.insert(netns_cookie, port, 0)
            .map_err(|source| resolver_map("write", source))
    }

    /// The task namespace with cookie `netns_cookie` has no resolver now.
    pub fn forget_resolver_port(&self, netns_cookie: u64) -> Result<(), DataplaneError> {
        let mut map = self.resolver_ports()?;
        match map.remove(&netns_cookie) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(resolver_map("delete from", source)),
        }
    }

    fn resolver_ports(&self) -> Result<BpfHashMap<MapData, u64, u16>, DataplaneError> {
        let path = self.pin_dir().join(RESOLVER_PORTS);
        let data = MapData::from_pin(&path).map_err(|source| resolver_map("open", source))?;
        BpfHashMap::try_from(aya::maps::Map::LruHashMap(data))
            .map_err(|source| resolver_map("open", source))
    }
}

fn resolver_map(action: &'static str, source: MapError) -> DataplaneError {
    DataplaneError::ResolverMap {
        action,
        source: Box::new(source),
    }
}

//! Before the swarm turns direct return on (`swarm update --mesh-mode dsr|hybrid`): does
//! the underlay carry packets a node sends with another node's address as their source?
//! (`crate::underlay_probe`, docs/dsr.md.) This manager listens on its own node and asks
//! every other ready node to send it one probe with this node's address as the source; a
//! probe that never arrives refuses the mode.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use crate::api::{ApiError, pb};
use crate::manager::Manager;
use crate::pki;
use crate::store::ReadView as _;
use crate::store::objects::{Node, NodeState, PortOwner, Protocol};
use crate::transport::mtls_channel;
use crate::underlay_probe::{Listener, Nonce};

/// How long a node may take to answer the request to send its probe.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after the last node answered its probe may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(2);
/// Gossip's default port, for a node that reported none.
const GOSSIP_PORT: u16 = 7946;

/// One node asked to send a probe.
#[derive(Debug, Clone)]
struct Sender {
    name: String,
    id: String,
    agent_addr: String,
}

/// The node's underlay address: `Node.status.addr`, if it is IPv4.
fn underlay_addr(node: &Node) -> Option<Ipv4Addr> {
    match node.status.addr? {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

fn name_of(node: &Node) -> String {
    node.description
        .as_ref()
        .map(|d| d.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| node.id.clone())
}

/// Refuses with a message naming the nodes whose probe did not arrive; `Ok` if every other
/// ready node's did, or if there is no other node to ask.
pub async fn check(manager: &Manager) -> Result<(), ApiError> {
    let nodes = manager.store.view(|tx| tx.find::<Node>(|_| true))?;
    let own = nodes
        .iter()
        .find(|n| n.id == manager.node_id)
        .ok_or_else(|| {
            ApiError::internal(
                "probing the underlay",
                "this manager's node is not in the store",
            )
        })?;
    let target = underlay_addr(own).ok_or_else(|| {
        ApiError::Precondition(format!(
            "cannot probe the underlay for direct return: this node's address {:?} is not IPv4",
            crate::api::convert::or_empty(own.status.addr)
        ))
    })?;
    let port = own
        .description
        .as_ref()
        .and_then(|d| {
            d.control_ports
                .iter()
                .find(|p| p.owner == PortOwner::Gossip && p.protocol == Protocol::Udp)
        })
        .map_or(GOSSIP_PORT, |p| p.port);
    let senders: Vec<Sender> = nodes
        .iter()
        .filter(|n| n.id != own.id && n.status.state == NodeState::Ready)
        .map(|n| Sender {
            name: name_of(n),
            id: n.id.clone(),
            agent_addr: crate::manager::controlapi::logs::agent_addr(n),
        })
        .collect();
    if senders.is_empty() {
        tracing::info!("direct return: no other node to probe the underlay with");
        return Ok(());
    }
    let listener =
        Listener::open().map_err(|e| ApiError::internal("opening the probe listener", e))?;
    let nonces: HashMap<Nonce, Sender> = senders.into_iter().map(|s| (rand::random(), s)).collect();
    let expected: HashSet<Nonce> = nonces.keys().copied().collect();
    // Listen from now on; the nodes send while this waits.
    let listening = {
        let expected = expected.clone();
        let deadline = Instant::now() + ASK_TIMEOUT + ARRIVAL;
        tokio::task::spawn_blocking(move || listener.collect(target, port, &expected, deadline))
    };
    let tls = manager.peers.tls();
    let asked = futures::future::join_all(nonces.iter().map(|(nonce, sender)| {
        let tls = tls.clone();
        async move { (*nonce, ask(tls, sender, target, port, *nonce).await) }
    }))
    .await;
    let arrived = listening
        .await
        .map_err(|e| ApiError::internal("waiting for the underlay probes", e))?
        .map_err(|e| ApiError::internal("waiting for the underlay probes", e))?;
    let mut unasked = Vec::new();
    // Nodes whose host refused to send the probe, with the reason.
    let mut refused = HashMap::new();
    for (nonce, outcome) in asked {
        match outcome {
            Ok(Sent::Yes) => {}
            Ok(Sent::RefusedByHost(reason)) => {
                refused.insert(nonce, reason);
            }
            Err(line) => unasked.push(line),
        }
    }
    unasked.sort();
    if !unasked.is_empty() {
        return Err(ApiError::Precondition(format!(
            "cannot turn direct return on: could not ask every node to probe the underlay ({}); \
             retry, or keep --mesh-mode snat",
            unasked.join("; ")
        )));
    }
    let mut lost: Vec<String> = nonces
        .iter()
        .filter(|(nonce, _)| !arrived.contains(*nonce))
        .map(|(nonce, s)| match refused.get(nonce) {
            Some(reason) => format!("{}: {reason}", s.name),
            None => format!("{}: never arrived", s.name),
        })
        .collect();
    lost.sort_unstable();
    if lost.is_empty() {
        tracing::info!(
            nodes = nonces.len(),
            "direct return: every node's underlay probe with a peer's source arrived"
        );
        return Ok(());
    }
    Err(ApiError::Precondition(format!(
        "cannot turn direct return on: the underlay drops packets a node sends with another \
         node's address as their source (probes to {} with {target} as their source: {}); \
         direct return needs them (docs/dsr.md): keep --mesh-mode snat, or lift the source \
         check (host firewall, cloud source/destination check, IP source guard, uRPF)",
        name_of(own),
        lost.join("; "),
    )))
}

/// What a node answered.
#[derive(Debug)]
enum Sent {
    Yes,
    /// Its own host refused to send it (why).
    RefusedByHost(String),
}

/// Ask `sender` to send its probe; the error is a line for the message.
async fn ask(
    tls: Arc<ClientConfig>,
    sender: &Sender,
    target: Ipv4Addr,
    port: u16,
    nonce: Nonce,
) -> Result<Sent, String> {
    let failed = |reason: String| format!("{}: {reason}", sender.name);
    let name = pki::node_server_name(&sender.id).map_err(|e| failed(e.to_string()))?;
    let channel = mtls_channel(&sender.agent_addr, tls, name).map_err(|e| failed(e.to_string()))?;
    let mut call = tonic::Request::new(pb::SpoofedProbeRequest {
        target: target.to_string(),
        port: u32::from(port),
        nonce: nonce.to_vec(),
    });
    call.set_timeout(ASK_TIMEOUT);
    pb::underlay_probe_client::UnderlayProbeClient::new(channel)
        .send_spoofed_probe(call)
        .await
        .map(|response| {
            let response = response.into_inner();
            if response.sent {
                Sent::Yes
            } else {
                Sent::RefusedByHost(response.reason)
            }
        })
        .map_err(|status| failed(status.message().to_owned()))
}

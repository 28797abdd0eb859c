//! Authenticated gossip: every datagram carries the sender's node ID and an HMAC-SHA256 tag
//! (ring) made with the cluster's gossip key, which nodes receive from the leader over their
//! mutual-TLS session and never write to disk (docs/security.md, "Gossip authentication").
//!
//! A host on the underlay that is not a node has no key, so what it sends (however well
//! formed) is dropped before chitchat sees it; a removed node's datagrams are dropped by
//! sender ID, and the key is rotated when a node is removed, so it cannot pose as another
//! node for longer than the grace an older key keeps ([`OLD_KEY_GRACE`]).
//!
//! Wire format (one UDP datagram):
//! `"HVG1" | key id (u64 BE) | sender length (u8) | sender node ID | chitchat envelope | tag`,
//! the 32-byte tag covering everything before it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use ring::hmac;

/// First bytes of every authenticated datagram (format version 1).
pub const MAGIC: &[u8; 4] = b"HVG1";
/// Bytes of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Bytes of a gossip key.
pub const KEY_LEN: usize = 32;
/// How long a key that a newer one replaced is still accepted: every node learns the new key
/// at its next session heartbeat, so a few periods are enough for the switch to be seamless.
pub const OLD_KEY_GRACE: Duration = Duration::from_secs(30);
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// One key of the cluster's gossip keyring, as the store keeps it and the session carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey {
    /// Grows with each rotation; the highest is the one to sign with.
    pub id: u64,
    /// [`KEY_LEN`] random bytes.
    pub secret: Vec<u8>,
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

struct Entry {
    id: u64,
    key: hmac::Key,
    /// When this node first learned of a newer key.
    superseded_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Newest first.
    keys: Vec<Entry>,
    removed: BTreeSet<String>,
}

struct Inner {
    node_id: String,
    state: RwLock<State>,
    dropped: AtomicU64,
}

/// This node's gossip keys and the swarm's removed nodes, shared by the gossip socket and
/// the agent session that updates them. Cheap to clone; equal when it is the same keyring.
#[derive(Clone)]
pub struct GossipAuth {
    inner: Arc<Inner>,
}

impl fmt::Debug for GossipAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("GossipAuth")
            .field("node_id", &self.inner.node_id)
            .field("keys", &state.keys.iter().map(|e| e.id).collect::<Vec<_>>())
            .field("removed", &state.removed.len())
            .finish()
    }
}

impl PartialEq for GossipAuth {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl GossipAuth {
    /// An empty keyring for node `node_id`: until keys arrive, nothing is sent or accepted.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id: node_id.into(),
                state: RwLock::new(State::default()),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in the keyring and removed nodes the leader sent. Keys no longer listed are
    /// dropped at once; a key a newer one replaced is kept for [`OLD_KEY_GRACE`].
    pub fn update(&self, keys: &[GossipKey], removed: impl IntoIterator<Item = String>) {
        self.update_at(keys, removed, Instant::now());
    }

    fn update_at(
        &self,
        keys: &[GossipKey],
        removed: impl IntoIterator<Item = String>,
        now: Instant,
    ) {
        let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
        let newest = keys.iter().map(|k| k.id).max();
        let mut entries: Vec<Entry> = keys
            .iter()
            .filter(|k| k.secret.len() == KEY_LEN)
            .map(|k| {
                let before = state
                    .keys
                    .iter()
                    .find(|e| e.id == k.id)
                    .and_then(|e| e.superseded_at);
                Entry {
                    id: k.id,
                    key: hmac::Key::new(hmac::HMAC_SHA256, &k.secret),
                    superseded_at: (Some(k.id) != newest).then(|| before.unwrap_or(now)),
                }
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.id));
        state.keys = entries;
        state.removed = removed.into_iter().collect();
    }

    /// Whether the swarm removed `node_id` (its certificate is refused everywhere).
    pub fn is_removed(&self, node_id: &str) -> bool {
        self.read().removed.contains(node_id)
    }

    /// Whether this node has a key to gossip with.
    pub fn has_key(&self) -> bool {
        !self.read().keys.is_empty()
    }

    /// Datagrams dropped so far (no key, bad tag, removed sender, malformed).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// `payload` framed and tagged with the newest key; `None` without a key.
    pub fn seal(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let state = self.read();
        let entry = state.keys.first()?;
        let sender = self.inner.node_id.as_bytes();
        let sender_len = u8::try_from(sender.len()).ok()?;
        let mut out = Vec::with_capacity(4 + 8 + 1 + sender.len() + payload.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&entry.id.to_be_bytes());
        out.push(sender_len);
        out.extend_from_slice(sender);
        out.extend_from_slice(payload);
        let tag = hmac::sign(&entry.key, &out);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// The payload of an authentic datagram from a node that was not removed, with its
    /// sender; `None` (and counted) for anything else.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<(&'a str, &'a [u8])> {
        let opened = self.open_at(datagram, Instant::now());
        if opened.is_none() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }

    fn open_at<'a>(&self, datagram: &'a [u8], now: Instant) -> Option<(&'a str, &'a [u8])> {
        let rest = datagram.strip_prefix(MAGIC.as_slice())?;
        let (id, rest) = rest.split_at_checked(8)?;
        let id = u64::from_be_bytes(id.try_into().ok()?);
        let (&sender_len, rest) = rest.split_first()?;
        let (sender, rest) = rest.split_at_checked(usize::from(sender_len))?;
        let body_len = rest.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = rest.split_at(body_len);
        let signed = datagram.get(..datagram.len() - TAG_LEN)?;
        let state = self.read();
        let entry = state.keys.iter().find(|e| e.id == id)?;
        if entry
            .superseded_at
            .is_some_and(|at| now.saturating_duration_since(at) > OLD_KEY_GRACE)
        {
            return None;
        }
        hmac::verify(&entry.key, signed, tag).ok()?;
        let sender = std::str::from_utf8(sender).ok()?;
        if state.removed.contains(sender) {
            return None;
        }
        Some((sender, payload))
    }
}

/// A new random gossip key with id `id`.
pub fn generate_key(id: u64) -> Result<GossipKey, crate::pki::RandomError> {
    Ok(GossipKey {
        id,
        secret: crate::pki::random_bytes::<KEY_LEN>()?.to_vec(),
    })
}

/// chitchat's UDP transport, with every datagram sealed and opened by a [`GossipAuth`].
///
/// chitchat 0.13 keeps its envelope encoding private, so the encoding stays chitchat's own:
/// its `UdpSocket` is bound on loopback and talks only to a relay socket of ours, which gets
/// the encoded bytes to seal from it and hands it the opened bytes to decode. Two loopback
/// copies per datagram, at about a hundred datagrams a second.
#[derive(Debug)]
pub struct AuthTransport(pub GossipAuth);

#[tonic::async_trait]
impl Transport for AuthTransport {
    async fn open(&self, bind_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(bind_addr)
            .await
            .with_context(|| format!("failed to bind to {bind_addr}/UDP for gossip"))?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let relay = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("failed to bind the gossip relay on loopback")?;
        let inner = UdpSocket::open(loopback).await?;
        let inner_addr = inner.local_addr()?;
        Ok(Box::new(AuthSocket {
            auth: self.0.clone(),
            socket,
            relay,
            inner,
            inner_addr,
            buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        }))
    }
}

struct AuthSocket {
    auth: GossipAuth,
    /// The gossip port on the underlay.
    socket: tokio::net::UdpSocket,
    /// Ours, on loopback: the only peer of `inner`.
    relay: tokio::net::UdpSocket,
    /// chitchat's own socket, on loopback: encodes and decodes envelopes.
    inner: UdpSocket,
    inner_addr: SocketAddr,
    buf: Box<[u8]>,
}

impl AuthSocket {
    /// `envelope` as chitchat encodes it.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        let relay_addr = self.relay.local_addr()?;
        self.inner.send(relay_addr, envelope).await?;
        loop {
            let (len, from) = self.relay.recv_from(&mut self.buf).await?;
            if from == self.inner_addr {
                return Ok(self.buf.get(..len).unwrap_or_default().to_vec());
            }
        }
    }

    /// `payload` decoded by chitchat (`None` if it is not an envelope).
    async fn decode(&mut self, payload: &[u8]) -> anyhow::Result<Option<ChitchatEnvelope>> {
        let relay_addr = self.relay.local_addr()?;
        self.relay.send_to(payload, self.inner_addr).await?;
        // chitchat's socket skips what does not decode; bound the wait for that case.
        match tokio::time::timeout(DECODE_WAIT, self.inner.recv()).await {
            Ok(Ok(outcome)) if outcome.from_addr == relay_addr => Ok(Some(outcome.envelope)),
            Ok(Ok(_)) | Err(_) => Ok(None),
            Ok(Err(err)) => Err(err),
        }
    }
}

/// How long a relayed datagram may take to come back decoded over loopback.
const DECODE_WAIT: Duration = Duration::from_millis(50);

#[tonic::async_trait]
impl Socket for AuthSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket
            .local_addr()
            .context("failed to get UDP socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let payload = self.encode(envelope).await?;
        // Without a key yet (a node whose session has not answered) or for a datagram the
        // frame would push over the UDP limit, nothing is sent: UDP may drop it anyway, and
        // an error here would stop chitchat's server.
        let Some(datagram) = self.auth.seal(&payload).filter(|d| d.len() <= MAX_DATAGRAM) else {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        match self.socket.send_to(&datagram, to).await {
            Ok(sent) => Ok(SendOutcome {
                num_bytes_sent: sent,
            }),
            Err(err) if transient(&err) => Ok(SendOutcome { num_bytes_sent: 0 }),
            Err(err) => Err(err).context("failed to send a gossip datagram"),
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (len, from_addr) = match self.socket.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(err) if transient(&err) => continue,
                Err(err) => return Err(err).context("fatal UDP recv error"),
            };
            let Some(payload) = self
                .buf
                .get(..len)
                .and_then(|datagram| self.auth.open(datagram))
                .map(|(_sender, payload)| payload.to_vec())
            else {
                tracing::trace!(from = %from_addr, len, "gossip: dropped an unauthenticated datagram");
                continue;
            };
            if let Some(envelope) = self.decode(&payload).await? {
                return Ok(RecvOutcome {
                    from_addr,
                    envelope,
                    num_bytes_received: len,
                });
            }
        }
    }
}

fn transient(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64, byte: u8) -> GossipKey {
        GossipKey {
            id,
            secret: vec![byte; KEY_LEN],
        }
    }

    #[test]
    fn nothing_is_sealed_or_opened_without_a_key() {
        let a = GossipAuth::new("a");
        assert!(a.seal(b"x").is_none());
        let b = GossipAuth::new("b");
        b.update(&[key(1, 7)], []);
        let sealed = b.seal(b"hello").unwrap();
        assert!(a.open(&sealed).is_none());
        assert_eq!(a.dropped(), 1);
    }

    #[test]
    fn a_sealed_datagram_opens_with_the_same_key_only() {
        let a = GossipAuth::new("node-a");
        let b = GossipAuth::new("node-b");
        a.update(&[key(1, 7)], []);
        b.update(&[key(1, 7)], []);
        let sealed = a.seal(b"hello").unwrap();
        assert_eq!(b.open(&sealed), Some(("node-a", b"hello".as_slice())));
        let other = GossipAuth::new("c");
        other.update(&[key(1, 8)], []);
        assert!(other.open(&sealed).is_none(), "another key");
        // Any change is refused: payload, sender, key id, tag.
        for at in [0, 5, 13, 16, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(b.open(&bad).is_none(), "byte {at} changed");
        }
        assert!(b.open(&sealed[..sealed.len() - 1]).is_none());
        assert!(b.open(b"HVG1").is_none());
    }

    #[test]
    fn a_removed_senders_datagrams_are_dropped() {
        let a = GossipAuth::new("gone");
        let b = GossipAuth::new("b");
        a.update(&[key(1, 7)], []);
        b.update(&[key(1, 7)], ["gone".to_owned()]);
        assert!(b.is_removed("gone"));
        assert!(b.open(&a.seal(b"x").unwrap()).is_none());
    }

    #[test]
    fn an_old_key_is_accepted_for_the_grace_period_only() {
        let a = GossipAuth::new("a");
        let b = GossipAuth::new("b");
        let t0 = Instant::now();
        a.update_at(&[key(1, 7)], [], t0);
        b.update_at(&[key(2, 9), key(1, 7)], [], t0);
        let sealed = a.seal(b"x").unwrap();
        assert!(b.open_at(&sealed, t0 + OLD_KEY_GRACE).is_some());
        // A later update does not restart the grace.
        b.update_at(&[key(2, 9), key(1, 7)], [], t0 + Duration::from_secs(10));
        assert!(
            b.open_at(&sealed, t0 + OLD_KEY_GRACE + Duration::from_secs(1))
                .is_none()
        );
        // b signs with the newest key, which a does not know yet but accepts once told.
        let from_b = b.seal(b"y").unwrap();
        assert!(a.open_at(&from_b, t0).is_none());
        a.update_at(&[key(2, 9), key(1, 7)], [], t0);
        assert!(a.open_at(&from_b, t0).is_some());
    }
}

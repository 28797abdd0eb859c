//! rustls configurations for mutual TLS between nodes (port 2377).
//!
//! Choices (see docs/security.md):
//! - The server requires a client certificate issued by the cluster root (webpki's client
//!   verifier); roles are checked per call by [`super::authz`], not at the handshake, because
//!   workers and managers reach the same port.
//! - The client verifies the server against the cluster root and the server name
//!   [`MANAGER_SERVER_NAME`] (`swarm-manager`), a DNS SAN only manager certificates carry. So a
//!   worker's certificate, although issued by the same CA, cannot pose as a manager, and no
//!   custom verifier is needed: this is stock webpki name checking. To reach one particular
//!   node, use [`node_server_name`]: every certificate also carries its node ID as a SAN.
//! - TLS 1.3 only: both ends are hive, so there is no older peer to talk to.
//! - ALPN `h2`: the only protocol on this port is gRPC over HTTP/2.
//! - ring as the crypto provider, passed explicitly rather than through the process-wide
//!   default, so the build does not depend on which rustls features other crates enable.

use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

use super::ca::RootCert;
use super::credentials::NodeCredentials;

/// The server name a client checks when it wants "any manager".
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";

/// ALPN protocol id of HTTP/2, which tonic speaks.
pub const ALPN_H2: &[u8] = b"h2";

/// The crypto provider every hive TLS config uses.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether a server accepts connections without a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate of this swarm (e.g. the Raft peer port).
    Required,
    /// Clients may connect without a certificate, so that a joining node can fetch the root
    /// CA and ask for its first certificate with a join token (SwarmKit serves the CA API on
    /// the same port the same way). Any certificate that is presented must still be this
    /// swarm's; every API other than the join API must call [`super::authorize`], which
    /// refuses callers without one.
    OptionalForJoin,
}

/// This node's certificate and key as both ends of mTLS present them, replaceable while
/// servers and clients run: after a renewal ([`CertSlot::set`]) every new handshake uses the
/// new certificate, and nothing has to be restarted (SwarmKit swaps its TLS credentials the
/// same way on rotation).
#[derive(Debug)]
pub struct CertSlot {
    keys: RwLock<SlotKeys>,
}

#[derive(Debug)]
struct SlotKeys {
    /// Certificate then root: a joining node pins the root by the digest in its token.
    server: Arc<CertifiedKey>,
    /// The certificate alone.
    client: Arc<CertifiedKey>,
    cert: rustls::pki_types::CertificateDer<'static>,
}

impl CertSlot {
    pub fn new(creds: &NodeCredentials) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            keys: RwLock::new(SlotKeys::of(creds)?),
        }))
    }

    /// Presents `creds` from the next handshake on. Their root must be the one the
    /// configurations were built with.
    pub fn set(&self, creds: &NodeCredentials) -> Result<(), TlsError> {
        let keys = SlotKeys::of(creds)?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// The certificate presented now.
    pub fn cert(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .cert
            .clone()
    }

    fn server_key(&self) -> Arc<CertifiedKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .server
            .clone()
    }

    fn client_key(&self) -> Arc<CertifiedKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .client
            .clone()
    }
}

impl SlotKeys {
    fn of(creds: &NodeCredentials) -> Result<Self, TlsError> {
        let signing_key = crypto_provider()
            .key_provider
            .load_private_key(creds.key().private_key_der())
            .map_err(|source| TlsError::Rustls {
                what: "load the node key",
                source,
            })?;
        Ok(Self {
            server: Arc::new(CertifiedKey::new(
                vec![creds.cert().clone(), creds.root().der().clone()],
                signing_key.clone(),
            )),
            client: Arc::new(CertifiedKey::new(vec![creds.cert().clone()], signing_key)),
            cert: creds.cert().clone(),
        })
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.server_key())
    }
}

impl ResolvesClientCert for CertSlot {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.client_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Server side of node-to-node mTLS, with a fixed certificate (see [`server_config_with`]).
pub fn server_config(
    creds: &NodeCredentials,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    server_config_with(CertSlot::new(creds)?, creds.root(), client_auth)
}

/// Server side of node-to-node mTLS, presenting what `slot` holds.
///
/// The server sends its certificate followed by the root CA certificate, so that a joining
/// node can pin the root by the digest in its join token (see [`super::join_client_config`]).
pub fn server_config_with(
    slot: Arc<CertSlot>,
    root: &RootCert,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(root_store(root)?, provider.clone());
    let verifier = match client_auth {
        ClientAuth::Required => verifier,
        ClientAuth::OptionalForJoin => verifier.allow_unauthenticated(),
    }
    .build()
    .map_err(|source| TlsError::Verifier { source })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "choose TLS 1.3",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(slot);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Client side of node-to-node mTLS with a fixed certificate (see [`client_config_with`]).
pub fn client_config(creds: &NodeCredentials) -> Result<ClientConfig, TlsError> {
    client_config_with(CertSlot::new(creds)?, creds.root())
}

/// Client side of node-to-node mTLS: presents what `slot` holds, trusts only the cluster
/// root. Connect with [`manager_server_name`] (or [`node_server_name`]).
pub fn client_config_with(slot: Arc<CertSlot>, root: &RootCert) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "choose TLS 1.3",
            source,
        })?
        .with_root_certificates(root_store(root)?)
        .with_client_cert_resolver(slot);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The name to pass to a TLS connect to reach any manager, whatever its address.
pub fn manager_server_name() -> ServerName<'static> {
    // A constant that is a valid DNS name: the conversion cannot fail.
    #[allow(clippy::expect_used)]
    ServerName::try_from(MANAGER_SERVER_NAME).expect("`swarm-manager` is a valid DNS name")
}

/// The name to pass to a TLS connect to reach the node `node_id` and no other (for example a
/// Raft peer whose ID is known).
pub fn node_server_name(node_id: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(node_id.to_owned()).map_err(|_| TlsError::BadServerName {
        name: node_id.to_owned(),
    })
}

/// A trust store holding only the cluster root.
pub(crate) fn root_store(root: &RootCert) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root.der().clone())
        .map_err(|source| TlsError::Rustls {
            what: "use the root CA as trust anchor",
            source,
        })?;
    Ok(Arc::new(roots))
}

/// A TLS configuration that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused part of the configuration.
    #[error("cannot {what} for TLS: {source}")]
    Rustls {
        /// The step that failed.
        what: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {source}")]
    Verifier {
        /// rustls's reason.
        source: rustls::server::VerifierBuilderError,
    },
    /// A node ID that is not a DNS name cannot be used as a server name.
    #[error("\"{name}\" is not a node ID that can be used as a TLS server name")]
    BadServerName {
        /// The name refused.
        name: String,
    },
}

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
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::ca::{CaDigest, RootCert};
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
    /// The root whose key signed `cert`.
    issuer: CaDigest,
}

impl CertSlot {
    pub fn new(creds: &NodeCredentials) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            keys: RwLock::new(SlotKeys::of(creds)?),
        }))
    }

    /// Presents `creds` from the next handshake on. Peers must trust their root (or an
    /// intermediate they carry must lead to a root peers trust).
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

    /// The digest of the root that issued the certificate presented now.
    pub fn issuer(&self) -> CaDigest {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).issuer
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
        let chain: Vec<_> = std::iter::once(creds.cert())
            .chain(creds.intermediates())
            .cloned()
            .collect();
        let mut server_chain = chain.clone();
        server_chain.push(creds.root().der().clone());
        Ok(Self {
            server: Arc::new(CertifiedKey::new(server_chain, signing_key.clone())),
            client: Arc::new(CertifiedKey::new(chain, signing_key)),
            cert: creds.cert().clone(),
            issuer: creds.root().digest(),
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
    server_config_with(
        CertSlot::new(creds)?,
        TrustSlot::new(vec![creds.root().clone()])?,
        client_auth,
    )
}

/// Server side of node-to-node mTLS, presenting what `slot` holds.
///
/// The server sends its certificate followed by the root CA certificate, so that a joining
/// node can pin the root by the digest in its join token (see [`super::join_client_config`]).
pub fn server_config_with(
    slot: Arc<CertSlot>,
    trust: Arc<TrustSlot>,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider();
    let verifier = Arc::new(TrustedClients { trust, client_auth });
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
    client_config_with(
        CertSlot::new(creds)?,
        TrustSlot::new(vec![creds.root().clone()])?,
    )
}

/// Client side of node-to-node mTLS: presents what `slot` holds, trusts only the cluster
/// roots `trust` holds. Connect with [`manager_server_name`] (or [`node_server_name`]).
pub fn client_config_with(
    slot: Arc<CertSlot>,
    trust: Arc<TrustSlot>,
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "choose TLS 1.3",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustedServers { trust }))
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
    roots_store(std::slice::from_ref(root))
}

/// A trust store holding `roots`.
fn roots_store(roots: &[RootCert]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.der().clone())
            .map_err(|source| TlsError::Rustls {
                what: "use the root CA as trust anchor",
                source,
            })?;
    }
    Ok(Arc::new(store))
}

/// The roots this node trusts, replaceable while servers and clients run, as [`CertSlot`] is
/// for its own certificate. Usually the cluster root alone; during a root rotation the
/// outgoing and the incoming root, then the incoming one alone (docs/security.md, "CA
/// rotation"). The verifiers are rustls's stock webpki ones, rebuilt at each change; the
/// configurations ask the slot for the current ones at each handshake.
#[derive(Debug)]
pub struct TrustSlot {
    state: RwLock<TrustState>,
}

#[derive(Debug)]
struct TrustState {
    roots: Vec<RootCert>,
    servers: Arc<rustls::client::WebPkiServerVerifier>,
    clients_required: Arc<dyn ClientCertVerifier>,
    clients_optional: Arc<dyn ClientCertVerifier>,
}

impl TrustSlot {
    /// Trusts `roots` (at least one).
    pub fn new(roots: Vec<RootCert>) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            state: RwLock::new(TrustState::of(roots)?),
        }))
    }

    /// Trusts `roots` from the next handshake on (unchanged if they are the same).
    pub fn set(&self, roots: Vec<RootCert>) -> Result<(), TlsError> {
        if self.digests() == roots.iter().map(RootCert::digest).collect::<Vec<_>>() {
            return Ok(());
        }
        let state = TrustState::of(roots)?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }

    /// The roots trusted now.
    pub fn roots(&self) -> Vec<RootCert> {
        self.read().roots.clone()
    }

    /// The digests of the roots trusted now, in order.
    pub fn digests(&self) -> Vec<CaDigest> {
        self.read().roots.iter().map(RootCert::digest).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TrustState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn servers(&self) -> Arc<rustls::client::WebPkiServerVerifier> {
        self.read().servers.clone()
    }

    fn clients(&self, auth: ClientAuth) -> Arc<dyn ClientCertVerifier> {
        let state = self.read();
        match auth {
            ClientAuth::Required => state.clients_required.clone(),
            ClientAuth::OptionalForJoin => state.clients_optional.clone(),
        }
    }
}

impl TrustState {
    fn of(roots: Vec<RootCert>) -> Result<Self, TlsError> {
        if roots.is_empty() {
            return Err(TlsError::NoTrustedRoot);
        }
        let store = roots_store(&roots)?;
        let provider = crypto_provider();
        let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(
            store.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|source| TlsError::Verifier { source })?;
        let clients = |optional: bool| {
            let builder =
                WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone());
            let builder = if optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|source| TlsError::Verifier { source })
        };
        Ok(Self {
            roots,
            servers,
            clients_required: clients(false)?,
            clients_optional: clients(true)?,
        })
    }
}

/// The server verifier of [`client_config_with`]: webpki's, with the roots of a [`TrustSlot`].
#[derive(Debug)]
struct TrustedServers {
    trust: Arc<TrustSlot>,
}

impl ServerCertVerifier for TrustedServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.trust.servers().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .servers()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .servers()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.servers().supported_verify_schemes()
    }
}

/// The client verifier of [`server_config_with`]: webpki's, with the roots of a
/// [`TrustSlot`]. It sends no CA names in its certificate request: every node has exactly
/// one certificate to present.
#[derive(Debug)]
struct TrustedClients {
    trust: Arc<TrustSlot>,
    client_auth: ClientAuth,
}

impl ClientCertVerifier for TrustedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust
            .clients(self.client_auth)
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .clients(self.client_auth)
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .clients(self.client_auth)
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .clients(self.client_auth)
            .supported_verify_schemes()
    }
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
    /// A trust slot needs at least one root.
    #[error("no root CA to trust")]
    NoTrustedRoot,
    /// A node ID that is not a DNS name cannot be used as a server name.
    #[error("\"{name}\" is not a node ID that can be used as a TLS server name")]
    BadServerName {
        /// The name refused.
        name: String,
    },
}

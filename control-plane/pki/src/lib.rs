//! Cluster PKI: the root CA, node certificates, join tokens and the mTLS configuration
//! between nodes. The design and its reasons are in `docs/security.md`.
//!
//! Flow, as in Swarm:
//! 1. `swarm init`: [`RootCa::generate`], [`JoinTokens::generate`]; the first manager issues
//!    its own certificate from a [`NodeKey`] CSR and stores the CA PEM in Raft.
//! 2. `swarm join`: the node parses the token, connects with [`join_client_config`] (the
//!    manager's root must match the token's digest), saves [`pinned_root`], sends a CSR and the
//!    token; the manager checks it with [`JoinTokens::role_for`] and answers with
//!    [`RootCa::issue_node_cert`]. The node saves everything with [`CertDir::save`].
//! 3. Afterwards every connection uses [`server_config`] / [`client_config`], and every API
//!    handler calls [`authorize`]. Certificates are renewed when
//!    [`NodeCredentials::needs_renewal`] says so, through [`RootCa::renew_node_cert`].

mod authz;
mod base36;
mod ca;
mod credentials;
mod disk;
mod identity;
mod join;
mod random;
mod renewal;
mod tls;
mod token;

#[cfg(test)]
mod ca_tests;
#[cfg(test)]
mod handshake_tests;
/// A real cluster CA and node credentials for tests (hive's through the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use authz::{AuthzError, authorize, peer_identity, refuse_removed, require_role};
pub use ca::{
    CERT_BACKDATE, CaDigest, CaError, CertExpiry, ROOT_CA_VALIDITY, ROOT_CN, RootCa, RootCaPem,
    RootCert, pem_certificate,
};
pub use credentials::{CredentialsError, NodeCredentials, NodeKey};
pub use disk::{
    CERTIFICATES_DIR, CertDir, DiskError, NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE,
};
pub use identity::{IdentityError, NodeIdentity, Role};
pub use join::{JoinError, join_client_config, join_refusal, pinned_root};
pub use random::bytes as random_bytes;
pub use random::{RandomError, random_id};
pub use renewal::{CertValidity, RenewalError, RenewalPolicy, needs_renewal};
pub use tls::{
    ALPN_H2, CertSlot, ClientAuth, MANAGER_SERVER_NAME, TlsError, TrustSlot, client_config,
    client_config_with, crypto_provider, manager_server_name, node_server_name, server_config,
    server_config_with,
};
pub use token::{
    DIGEST_LEN, JoinToken, JoinTokens, SECRET_LEN, TOKEN_PREFIX, TokenError, TokenPart,
};

/// Any PKI error, for callers that handle them alike (the daemon's start-up, say).
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// See [`CaError`].
    #[error(transparent)]
    Ca(#[from] CaError),
    /// See [`TokenError`].
    #[error(transparent)]
    Token(#[from] TokenError),
    /// See [`CredentialsError`].
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// See [`DiskError`].
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// See [`TlsError`].
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// See [`JoinError`].
    #[error(transparent)]
    Join(#[from] JoinError),
    /// See [`AuthzError`].
    #[error(transparent)]
    Authz(#[from] AuthzError),
    /// See [`IdentityError`].
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// See [`RenewalError`].
    #[error(transparent)]
    Renewal(#[from] RenewalError),
    /// See [`RandomError`].
    #[error(transparent)]
    Random(#[from] RandomError),
}

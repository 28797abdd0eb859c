//! A node's own key and certificate, checked against the cluster root.
//!
//! The key is made on the node and never sent anywhere: the node sends a CSR (its public key,
//! signed with the key to prove possession) and gets a certificate back. Renewal makes a new
//! key each time, as SwarmKit does, so a leaked old key stops mattering when its certificate
//! expires.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};

use super::ca::RootCert;
use super::identity::{IdentityError, NodeIdentity, parse_cert};
use super::renewal::{CertValidity, RenewalError, RenewalPolicy};
use super::tls::crypto_provider;

/// A node's private key (ECDSA P-256). `Debug` does not print it.
pub struct NodeKey {
    key: KeyPair,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeKey(<redacted>)")
    }
}

impl NodeKey {
    /// A new P-256 key from the OS CSPRNG (through ring).
    pub fn generate() -> Result<NodeKey, CredentialsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            CredentialsError::Key {
                reason: e.to_string(),
            }
        })?;
        Ok(NodeKey { key })
    }

    /// Parses a PKCS#8 PEM key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<NodeKey, CredentialsError> {
        let key = KeyPair::from_pem(pem).map_err(|e| CredentialsError::Key {
            reason: e.to_string(),
        })?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(CredentialsError::Key {
                reason: "not an ECDSA P-256 key".to_owned(),
            });
        }
        Ok(NodeKey { key })
    }

    /// The key as PKCS#8 PEM, for `swarm-node.key`. Secret.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A CSR for this key. The subject is left empty: the manager decides it.
    pub fn csr(&self) -> Result<CertificateSigningRequestDer<'static>, CredentialsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&self.key)
            .map_err(|e| CredentialsError::Key {
                reason: format!("cannot sign a certificate request: {e}"),
            })?;
        Ok(csr.der().clone())
    }

    /// The key in the form rustls loads.
    pub(crate) fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// Everything a node needs for mTLS: the cluster root, its certificate and its key, checked
/// to belong together. Build it with [`NodeCredentials::new`] or load it with
/// [`super::CertDir::load`].
#[derive(Debug)]
pub struct NodeCredentials {
    root: RootCert,
    cert: CertificateDer<'static>,
    /// Presented after `cert`: the cross-signed intermediate while a root rotation runs, so
    /// that peers still trusting only the outgoing root verify `cert` (docs/security.md).
    intermediates: Vec<CertificateDer<'static>>,
    key: NodeKey,
    identity: NodeIdentity,
    validity: CertValidity,
}

impl NodeCredentials {
    /// Checks that `cert` was issued by `root`, is valid at `now`, carries a node identity,
    /// and is the certificate of `key`.
    pub fn new(
        root: RootCert,
        cert: CertificateDer<'static>,
        key: NodeKey,
        now: SystemTime,
    ) -> Result<NodeCredentials, CredentialsError> {
        let identity = NodeIdentity::from_cert_der(&cert)?;
        let validity = CertValidity::from_cert_der(&cert)?;
        let parsed = parse_cert(&cert)?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.key.public_key_raw() {
            return Err(CredentialsError::KeyMismatch {
                node_id: identity.node_id,
            });
        }
        verify_issued_by(&root, &cert, now).map_err(|reason| match reason {
            ChainProblem::Expired => CredentialsError::Expired {
                node_id: identity.node_id.clone(),
                not_after: validity.not_after,
            },
            ChainProblem::NotYetValid => CredentialsError::NotYetValid {
                node_id: identity.node_id.clone(),
            },
            ChainProblem::Other(reason) => CredentialsError::NotIssuedByRoot {
                node_id: identity.node_id.clone(),
                reason,
            },
        })?;
        Ok(NodeCredentials {
            root,
            cert,
            intermediates: Vec::new(),
            key,
            identity,
            validity,
        })
    }

    /// The same credentials, presenting `intermediates` after the certificate. They are not
    /// checked here: they only help peers that trust another root; whoever verifies the chain
    /// checks them.
    pub fn with_intermediates(
        mut self,
        intermediates: Vec<CertificateDer<'static>>,
    ) -> NodeCredentials {
        self.intermediates = intermediates;
        self
    }

    /// Certificates presented after this node's own (see [`Self::with_intermediates`]).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// Who this node is.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The cluster root CA certificate.
    pub fn root(&self) -> &RootCert {
        &self.root
    }

    /// This node's certificate (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// This node's key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// When this node's certificate is valid.
    pub fn validity(&self) -> CertValidity {
        self.validity
    }

    /// Whether to ask for a new certificate now (SwarmKit's policy: half the lifetime gone).
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        RenewalPolicy::SWARMKIT.needs_renewal(&self.validity, now)
    }
}

/// Why a certificate did not verify against the root.
enum ChainProblem {
    Expired,
    NotYetValid,
    Other(String),
}

/// Verifies `cert` against `root` at `now` with webpki, the same check a peer's rustls does.
fn verify_issued_by(
    root: &RootCert,
    cert: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(), ChainProblem> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root.der().clone())
        .map_err(|e| ChainProblem::Other(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| ChainProblem::Other(e.to_string()))?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    match verifier.verify_client_cert(cert, &[], UnixTime::since_unix_epoch(since_epoch)) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => Err(ChainProblem::Expired),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => Err(ChainProblem::NotYetValid),
        Err(e) => Err(ChainProblem::Other(e.to_string())),
    }
}

/// A node key or certificate that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The key cannot be made, parsed or used.
    #[error("the node key is unusable: {reason}")]
    Key {
        /// Why.
        reason: String,
    },
    /// The certificate has no node identity.
    #[error("the node certificate is unusable: {source}")]
    Identity {
        /// Why.
        #[from]
        source: IdentityError,
    },
    /// The certificate's validity cannot be read.
    #[error("the node certificate is unusable: {source}")]
    Validity {
        /// Why.
        #[from]
        source: RenewalError,
    },
    /// Key and certificate are not a pair.
    #[error(
        "the node key does not belong to the certificate of node {node_id}; the files were mixed up: restore both from the same backup, or leave the swarm and join again"
    )]
    KeyMismatch {
        /// From the certificate.
        node_id: String,
    },
    /// The certificate was not issued by the cluster root.
    #[error(
        "the certificate of node {node_id} was not issued by this swarm's root CA ({reason}); leave the swarm and join again"
    )]
    NotIssuedByRoot {
        /// From the certificate.
        node_id: String,
        /// webpki's reason.
        reason: String,
    },
    /// The certificate expired (the node was away longer than its lifetime).
    #[error(
        "the certificate of node {node_id} expired at {not_after:?}; the node was offline too long to renew it: leave the swarm (`hive swarm leave`) and join again"
    )]
    Expired {
        /// From the certificate.
        node_id: String,
        /// When it expired.
        not_after: SystemTime,
    },
    /// The certificate starts in the future: this host's clock is behind.
    #[error(
        "the certificate of node {node_id} is not valid yet: this host's clock is behind the managers'; fix the clock (NTP) and retry"
    )]
    NotYetValid {
        /// From the certificate.
        node_id: String,
    },
}

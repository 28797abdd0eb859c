//! TLS for a node that is joining: it has a join token but no certificate and no root CA yet.
//!
//! The token carries the SHA-256 digest of the swarm's root CA certificate. The manager sends
//! the root after its own certificate (see [`super::server_config`]); the joining node accepts
//! the connection only if one certificate in the chain has exactly the token's digest, and the
//! manager's certificate verifies against that root for the name `swarm-manager`. So the very
//! first connection is authenticated by the token (no trust on first use), and an impostor —
//! another swarm, a worker, a machine in the middle — is refused during the handshake.
//!
//! After the handshake, [`pinned_root`] turns the peer's chain into the [`RootCert`] the node
//! saves as `swarm-root-ca.crt`.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};

use super::ca::{CaDigest, CaError, RootCert};
use super::tls::{ALPN_H2, TlsError, crypto_provider, root_store};
use super::token::{JoinToken, TokenError};

/// Client config for the join connection: no client certificate, server pinned by the
/// token's CA digest. Connect with [`super::manager_server_name`].
pub fn join_client_config(token: &JoinToken) -> Result<ClientConfig, TlsError> {
    let provider = crypto_provider();
    let verifier = Arc::new(TokenPinnedVerifier {
        token: token.clone(),
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "choose TLS 1.3",
            source,
        })?
        .dangerous()
        // "dangerous" only in rustls's naming: the verifier below still does full webpki
        // chain and name verification, against a root chosen by the token's digest.
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The root CA the token pins, found in a certificate chain a manager presented.
pub fn pinned_root(
    token: &JoinToken,
    presented: &[CertificateDer<'_>],
) -> Result<RootCert, JoinError> {
    let wanted = token.ca_digest();
    if let Some(root) = presented
        .iter()
        .find(|cert| CaDigest::of_der(cert) == wanted)
    {
        return Ok(RootCert::from_der(root.clone().into_owned())?);
    }
    // By TLS convention the root, when sent, comes last; report its digest so the operator
    // can compare it with `hive swarm ca` on the manager they meant to reach.
    match presented {
        [_leaf, .., last] => Err(JoinError::Token(TokenError::UntrustedCa {
            expected: wanted,
            presented: CaDigest::of_der(last),
        })),
        _ => Err(JoinError::NoRootPresented),
    }
}

/// The reason a join handshake was refused by the token check, if that was the reason.
///
/// rustls carries our [`JoinError`] inside its own error and prints it with `Debug`; the
/// daemon should look it up with this and show its `Display` text to the operator. Accepts the
/// `io::Error` tokio-rustls returns, a `rustls::Error`, or anything whose source chain holds one.
pub fn join_refusal<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a JoinError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) =
            e.downcast_ref::<rustls::Error>()
        {
            return inner.downcast_ref::<JoinError>();
        }
        // `io::Error::source` skips the wrapped error itself, so unwrap it by hand.
        current = match e.downcast_ref::<io::Error>() {
            Some(io_err) => io_err
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Verifies a manager for a joining node, with the root picked by the join token's digest.
#[derive(Debug)]
struct TokenPinnedVerifier {
    token: JoinToken,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for TokenPinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let root = pinned_root(&self.token, &chain).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })?;
        let roots = root_store(&root).map_err(|e| rustls::Error::General(e.to_string()))?;
        // From here on this is rustls's stock verifier: chain, validity, EKU and server name.
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a joining node refused the manager it reached.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The manager sent only its own certificate.
    #[error(
        "the manager did not present its root CA certificate, so it cannot be checked against the join token; is the address a hive manager on port 2377?"
    )]
    NoRootPresented,
    /// The presented root is not the one the token pins.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The certificate with the right digest is not a usable CA.
    #[error(transparent)]
    Root(#[from] CaError),
}

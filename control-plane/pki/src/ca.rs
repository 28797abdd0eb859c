//! The cluster root CA: made at `swarm init`, signs every node certificate.
//!
//! As SwarmKit (`ca/certificates.go`): ECDSA P-256, CN `swarm-ca`, 20 years. Node certificates
//! are issued from a CSR, so a node's private key never leaves it; from the CSR we take only the
//! public key (after checking its self-signature, which proves the requester holds the key).
//! Everything else in the certificate — node ID, role, cluster ID, validity — is decided by the
//! manager, as SwarmKit's `CSRWhitelist` does.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::identity::{NodeIdentity, Role, parse_cert};
use super::random::{self, RandomError};

/// CN of the root CA certificate (SwarmKit `rootCN`).
pub const ROOT_CN: &str = "swarm-ca";

/// Validity of the root CA: 20 years, SwarmKit's `RootCAExpiration = "630720000s"`.
pub const ROOT_CA_VALIDITY: Duration = Duration::from_secs(630_720_000);

/// How far back `not_before` is set, so a node whose clock is a little behind the CA's still
/// accepts a fresh certificate (SwarmKit `CertBackdate`).
pub const CERT_BACKDATE: Duration = Duration::from_secs(3600);

/// SAN every manager certificate carries besides its role, as SwarmKit (`CARole`).
const CA_SAN: &str = "swarm-ca";

/// The SHA-256 digest of the root CA certificate (DER). It is what a join token pins.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaDigest(pub [u8; 32]);

impl CaDigest {
    /// Digest of a DER certificate.
    pub fn of_der(cert_der: &[u8]) -> CaDigest {
        CaDigest(Sha256::digest(cert_der).into())
    }
}

impl fmt::Display for CaDigest {
    /// `sha256:<hex>`, the form `docker swarm ca` prints as "root digest".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CaDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaDigest({self})")
    }
}

/// The root CA certificate alone: what every node holds to verify its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCert {
    der: CertificateDer<'static>,
    digest: CaDigest,
}

impl RootCert {
    /// Wraps a DER certificate after checking that it is a CA certificate.
    pub fn from_der(der: CertificateDer<'static>) -> Result<RootCert, CaError> {
        let cert = parse_cert(&der).map_err(|e| CaError::BadRootCert {
            reason: e.to_string(),
        })?;
        if !cert.is_ca() {
            return Err(CaError::BadRootCert {
                reason: "it is not a CA certificate (no basicConstraints CA:TRUE)".to_owned(),
            });
        }
        let digest = CaDigest::of_der(&der);
        Ok(RootCert { der, digest })
    }

    /// Parses a PEM root certificate.
    pub fn from_pem(pem: &str) -> Result<RootCert, CaError> {
        use rustls::pki_types::pem::PemObject;
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::BadRootCert {
                reason: format!("not a PEM certificate: {e}"),
            })?;
        RootCert::from_der(der)
    }

    /// The certificate, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The certificate, PEM.
    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// SHA-256 of the DER certificate, as pinned by join tokens.
    pub fn digest(&self) -> CaDigest {
        self.digest
    }

    /// The DER of its subject and of its SubjectPublicKeyInfo: what Docker's `TLSInfo` calls
    /// `CertIssuerSubject` and `CertIssuerPublicKey` for the certificates it issues.
    pub fn issuer_identity(&self) -> (Vec<u8>, Vec<u8>) {
        match parse_cert(&self.der) {
            Ok(cert) => (
                cert.tbs_certificate.subject.as_raw().to_vec(),
                cert.tbs_certificate.subject_pki.raw.to_vec(),
            ),
            // Checked when it was made (`from_der`).
            Err(_) => (Vec::new(), Vec::new()),
        }
    }
}

/// The root CA in PEM, as stored in the Raft store. The key is secret: keep it off logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCaPem {
    /// `-----BEGIN CERTIFICATE-----`.
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for RootCaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCaPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// How long node certificates last: the cluster's `--cert-expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertExpiry(Duration);

impl CertExpiry {
    /// 90 days, Swarm's default (`DefaultNodeCertExpiration`, `--cert-expiry 2160h`).
    pub const DEFAULT: CertExpiry = CertExpiry(Duration::from_secs(2160 * 3600));
    /// One hour, Swarm's minimum (`MinNodeCertExpiration`).
    pub const MIN: Duration = Duration::from_secs(3600);

    /// Validates a user-chosen expiry.
    pub fn new(duration: Duration) -> Result<CertExpiry, CaError> {
        if duration < Self::MIN {
            return Err(CaError::ExpiryTooShort {
                requested: duration,
            });
        }
        if duration > ROOT_CA_VALIDITY {
            return Err(CaError::ExpiryTooLong {
                requested: duration,
            });
        }
        Ok(CertExpiry(duration))
    }

    /// The duration.
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl Default for CertExpiry {
    fn default() -> Self {
        CertExpiry::DEFAULT
    }
}

/// The root CA with its signing key. Only managers hold it (from the Raft store).
pub struct RootCa {
    cert: RootCert,
    key: KeyPair,
}

impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.cert.digest)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl RootCa {
    /// Makes a new root CA, valid from `now` (backdated one hour) for 20 years.
    pub fn generate(now: SystemTime) -> Result<RootCa, CaError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Sign {
                what: "the root CA key",
                reason: e.to_string(),
            })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, ROOT_CN);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = (now - CERT_BACKDATE).into();
        params.not_after = (now + ROOT_CA_VALIDITY).into();
        let cert = params.self_signed(&key).map_err(|e| CaError::Sign {
            what: "the root CA certificate",
            reason: e.to_string(),
        })?;
        let cert = RootCert::from_der(cert.der().clone())?;
        Ok(RootCa { cert, key })
    }

    /// Loads a root CA from the PEM pair kept in the store, checking that key and cert match.
    pub fn from_pem(pem: &RootCaPem) -> Result<RootCa, CaError> {
        let cert = RootCert::from_pem(&pem.cert_pem)?;
        let key = KeyPair::from_pem(&pem.key_pem).map_err(|e| CaError::BadRootKey {
            reason: e.to_string(),
        })?;
        let parsed = parse_cert(cert.der()).map_err(|e| CaError::BadRootCert {
            reason: e.to_string(),
        })?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::KeyMismatch);
        }
        Ok(RootCa { cert, key })
    }

    /// The PEM pair to store in Raft.
    pub fn to_pem(&self) -> RootCaPem {
        RootCaPem {
            cert_pem: self.cert.to_pem(),
            key_pem: self.key.serialize_pem(),
        }
    }

    /// The public half, for trust stores and join-token digests.
    pub fn cert(&self) -> &RootCert {
        &self.cert
    }

    /// The cross-signed intermediate of a root rotation (SwarmKit `CrossSignCACertificate`):
    /// `next`'s subject and public key, signed by this (the outgoing) root. A node that still
    /// trusts only this root verifies a certificate issued by `next` through it
    /// (`leaf → intermediate → this root`), so nodes holding old and new certificates keep
    /// talking while the rotation runs. It is valid as long as `next` itself.
    pub fn cross_sign(&self, next: &RootCa) -> Result<CertificateDer<'static>, CaError> {
        let validity =
            super::renewal::CertValidity::from_cert_der(next.cert.der()).map_err(|e| {
                CaError::BadRootCert {
                    reason: e.to_string(),
                }
            })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject_of(next.cert.der())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let issuer =
            Issuer::from_ca_cert_der(self.cert.der(), &self.key).map_err(|e| CaError::Sign {
                what: "the issuer from the outgoing root certificate",
                reason: e.to_string(),
            })?;
        let cert = params
            .signed_by(&next.key, &issuer)
            .map_err(|e| CaError::Sign {
                what: "the cross-signed intermediate",
                reason: e.to_string(),
            })?;
        Ok(cert.der().clone())
    }

    /// Issues a node certificate for the public key in `csr` (DER PKCS#10).
    ///
    /// The CSR's subject and extensions are ignored: node ID, role and cluster come from
    /// `identity`, which the manager decided (the node ID it assigned at join, the role the
    /// join token granted or the store records). Only ECDSA P-256 keys are accepted.
    pub fn issue_node_cert(
        &self,
        csr: &CertificateSigningRequestDer<'_>,
        identity: &NodeIdentity,
        expiry: CertExpiry,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, CaError> {
        check_dns_label("node ID", &identity.node_id)?;
        check_cluster_id(&identity.cluster_id)?;
        let request =
            CertificateSigningRequestParams::from_der(csr).map_err(|e| CaError::BadCsr {
                reason: e.to_string(),
            })?;
        if request.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::BadCsr {
                reason: "the key is not ECDSA P-256; hive node keys are P-256".to_owned(),
            });
        }

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, identity.cluster_id.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, identity.role.as_ou());
        params
            .distinguished_name
            .push(DnType::CommonName, identity.node_id.as_str());
        // SANs as SwarmKit: the role (so a client can require "a manager" by server name),
        // the node ID (to reach one particular node), and `swarm-ca` on managers.
        let mut sans = vec![identity.role.as_ou(), identity.node_id.as_str()];
        if identity.role == Role::Manager {
            sans.push(CA_SAN);
        }
        params.subject_alt_names = sans
            .into_iter()
            .map(|name| {
                name.to_owned()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| CaError::InvalidName {
                        what: "subject alternative name",
                        value: name.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // Every node is both a TLS server (managers on 2377) and a client.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = (now - CERT_BACKDATE).into();
        params.not_after = (now + expiry.duration()).into();

        let issuer =
            Issuer::from_ca_cert_der(self.cert.der(), &self.key).map_err(|e| CaError::Sign {
                what: "the issuer from the root certificate",
                reason: e.to_string(),
            })?;
        let cert = params
            .signed_by(&request.public_key, &issuer)
            .map_err(|e| CaError::Sign {
                what: "the node certificate",
                reason: e.to_string(),
            })?;
        Ok(cert.der().clone())
    }

    /// Renews the certificate of an already authenticated node from its new CSR.
    ///
    /// `peer` is the identity the node proved on this connection (its current certificate);
    /// `current_role` is the role the store records now, so a promotion or demotion takes
    /// effect at the next renewal, as in SwarmKit.
    pub fn renew_node_cert(
        &self,
        csr: &CertificateSigningRequestDer<'_>,
        peer: &NodeIdentity,
        current_role: Role,
        expiry: CertExpiry,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, CaError> {
        let identity = NodeIdentity {
            role: current_role,
            ..peer.clone()
        };
        self.issue_node_cert(csr, &identity, expiry, now)
    }
}

/// A positive 128-bit random serial, so two certificates of one node never share a serial.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = random::bytes::<16>()?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Node IDs become DNS SANs, so they must be DNS labels: 1–63 of `a-z0-9-`, no leading `-`.
fn check_dns_label(what: &'static str, value: &str) -> Result<(), CaError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

/// Cluster IDs go in O: any short printable ASCII without spaces.
fn check_cluster_id(value: &str) -> Result<(), CaError> {
    if !value.is_empty() && value.len() <= 64 && value.bytes().all(|c| c.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(CaError::InvalidName {
            what: "cluster ID",
            value: value.to_owned(),
        })
    }
}

/// PEM text for one DER block, with `\n` line ends as rcgen writes them.
/// The subject of a CA certificate, attribute by attribute with the same string types, so that
/// a certificate naming it as issuer matches it byte for byte (webpki compares the encoding).
fn subject_of(cert_der: &[u8]) -> Result<DistinguishedName, CaError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let bad = |reason: &str| CaError::BadRootCert {
        reason: format!("its subject cannot be copied: {reason}"),
    };
    let cert = parse_cert(cert_der).map_err(|e| CaError::BadRootCert {
        reason: e.to_string(),
    })?;
    let mut name = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(bad("a name part with several attributes"));
        };
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| bad("an attribute type that is not an OID"))?
            .collect();
        let text = std::str::from_utf8(attribute.attr_value().data)
            .map_err(|_| bad("an attribute that is not text"))?;
        let value = match attribute.attr_value().header.tag() {
            Tag::Utf8String => rcgen::DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => rcgen::DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| bad("an invalid PrintableString"))?,
            ),
            Tag::Ia5String => {
                rcgen::DnValue::Ia5String(text.try_into().map_err(|_| bad("an invalid IA5String"))?)
            }
            _ => {
                return Err(bad(
                    "an attribute that is neither UTF8String, PrintableString nor IA5String",
                ));
            }
        };
        name.push(DnType::from_oid(&oid), value);
    }
    Ok(name)
}

/// A certificate (DER) as PEM.
pub fn pem_certificate(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// What went wrong with the CA or with a certificate request.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The root certificate cannot be used.
    #[error("the swarm root CA certificate is unusable: {reason}")]
    BadRootCert {
        /// Why.
        reason: String,
    },
    /// The root key cannot be parsed.
    #[error("the swarm root CA key is unusable: {reason}")]
    BadRootKey {
        /// Why.
        reason: String,
    },
    /// The stored key is not the key of the stored certificate.
    #[error(
        "the swarm root CA key does not belong to the root CA certificate; the stored CA is damaged: restore the manager from a backup"
    )]
    KeyMismatch,
    /// The CSR cannot be parsed, has a bad signature or an unsupported key.
    #[error("invalid certificate signing request: {reason}")]
    BadCsr {
        /// Why.
        reason: String,
    },
    /// A name that goes into the certificate is not acceptable.
    #[error("invalid {what} \"{value}\" for a node certificate")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The value refused.
        value: String,
    },
    /// `--cert-expiry` below Swarm's minimum.
    #[error("--cert-expiry {requested:?} is too short: node certificates must last at least 1h")]
    ExpiryTooShort {
        /// What was asked for.
        requested: Duration,
    },
    /// `--cert-expiry` beyond the root's own lifetime.
    #[error(
        "--cert-expiry {requested:?} is too long: node certificates cannot outlive the 20-year root CA"
    )]
    ExpiryTooLong {
        /// What was asked for.
        requested: Duration,
    },
    /// rcgen failed to make a key or sign.
    #[error("could not create {what}: {reason}")]
    Sign {
        /// What was being made.
        what: &'static str,
        /// rcgen's reason.
        reason: String,
    },
    /// No randomness for a serial number.
    #[error(transparent)]
    Random(#[from] RandomError),
}

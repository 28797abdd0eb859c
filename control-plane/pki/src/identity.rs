//! Who a node is, as its certificate says: node ID (CN), role (OU) and cluster ID (O).
//!
//! The subject layout is SwarmKit's (`ca/certificates.go`), so that a hive certificate reads
//! like a Swarm one in `openssl x509 -text`:
//! `Subject: O=<cluster ID>, OU=swarm-worker, CN=<node ID>`, `Issuer: CN=swarm-ca`.

use std::fmt;
use std::str::FromStr;

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AttributeTypeAndValue;

/// What a node may do in the swarm. The certificate's OU carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs tasks; talks to managers as a client only.
    Worker,
    /// Runs Raft and the manager APIs; is also a worker.
    Manager,
}

impl Role {
    /// OU value SwarmKit uses for this role (`ManagerRole`, `WorkerRole` in `ca/config.go`).
    pub fn as_ou(self) -> &'static str {
        match self {
            Role::Worker => "swarm-worker",
            Role::Manager => "swarm-manager",
        }
    }

    /// The role named by a certificate OU, if it is one of ours.
    pub fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            "swarm-worker" => Some(Role::Worker),
            "swarm-manager" => Some(Role::Manager),
            _ => None,
        }
    }

    /// The user-facing name, as `hive node ls` and `hive swarm join-token <role>` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Manager => "manager",
        }
    }

    /// Whether a node with this role may call an API that requires `required`.
    ///
    /// A manager is also a worker (it runs tasks and has an agent session), so a manager
    /// passes a worker check, as in SwarmKit where worker APIs accept both OUs.
    pub fn satisfies(self, required: Role) -> bool {
        match required {
            Role::Worker => true,
            Role::Manager => self == Role::Manager,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "worker" => Ok(Role::Worker),
            "manager" => Ok(Role::Manager),
            other => Err(IdentityError::UnknownRoleName {
                name: other.to_owned(),
            }),
        }
    }
}

/// The identity a node certificate proves, once its chain has been verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NodeIdentity {
    /// Subject CN: the node ID the manager assigned at join.
    pub node_id: String,
    /// Subject OU: `swarm-manager` or `swarm-worker`.
    pub role: Role,
    /// Subject O: the ID of the cluster the node belongs to.
    pub cluster_id: String,
}

impl NodeIdentity {
    /// Reads the identity from a DER certificate's subject.
    ///
    /// This does not check who signed the certificate: call it on certificates that rustls
    /// or [`super::NodeCredentials`] already verified against the cluster root.
    pub fn from_cert_der(cert_der: &[u8]) -> Result<Self, IdentityError> {
        let cert = parse_cert(cert_der)?;
        let subject = cert.subject();
        let node_id = single_value("CN (node ID)", subject.iter_common_name())?;
        let ou = single_value("OU (role)", subject.iter_organizational_unit())?;
        let cluster_id = single_value("O (cluster ID)", subject.iter_organization())?;
        let role = Role::from_ou(&ou).ok_or(IdentityError::UnknownRole { ou })?;
        Ok(NodeIdentity {
            node_id,
            role,
            cluster_id,
        })
    }
}

/// Parses DER into an X.509 certificate, refusing trailing bytes.
pub(crate) fn parse_cert(cert_der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    match X509Certificate::from_der(cert_der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(IdentityError::NotACertificate {
            reason: format!("{} unexpected bytes after the certificate", rest.len()),
        }),
        Err(e) => Err(IdentityError::NotACertificate {
            reason: e.to_string(),
        }),
    }
}

/// The one value of a subject attribute; node certificates carry each exactly once.
fn single_value<'a, 'b: 'a>(
    field: &'static str,
    mut values: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
) -> Result<String, IdentityError> {
    let first = values.next().ok_or(IdentityError::MissingField { field })?;
    if values.next().is_some() {
        return Err(IdentityError::RepeatedField { field });
    }
    let value = first
        .as_str()
        .map_err(|_| IdentityError::NotText { field })?;
    if value.is_empty() {
        return Err(IdentityError::MissingField { field });
    }
    Ok(value.to_owned())
}

/// A certificate that does not carry a hive node identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a DER X.509 certificate.
    #[error("not an X.509 certificate: {reason}")]
    NotACertificate {
        /// What the parser said.
        reason: String,
    },
    /// A subject attribute the node identity needs is absent or empty.
    #[error(
        "the certificate subject has no {field}; it was not issued by a hive swarm CA for a node"
    )]
    MissingField {
        /// Which attribute.
        field: &'static str,
    },
    /// A subject attribute appears more than once, so the identity would be ambiguous.
    #[error(
        "the certificate subject has more than one {field}; hive node certificates carry exactly one"
    )]
    RepeatedField {
        /// Which attribute.
        field: &'static str,
    },
    /// A subject attribute is not a text string.
    #[error("the certificate subject's {field} is not a text string")]
    NotText {
        /// Which attribute.
        field: &'static str,
    },
    /// The OU is not a role hive knows.
    #[error(
        "the certificate's OU \"{ou}\" is not a swarm role (expected swarm-manager or swarm-worker)"
    )]
    UnknownRole {
        /// The OU found.
        ou: String,
    },
    /// A role name typed by a user is not `worker` or `manager`.
    #[error("unknown role \"{name}\": use worker or manager")]
    UnknownRoleName {
        /// What was typed.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_match_swarmkit() {
        assert_eq!(Role::Manager.as_ou(), "swarm-manager");
        assert_eq!(Role::Worker.as_ou(), "swarm-worker");
        assert_eq!(Role::from_ou("swarm-ca"), None);
        assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
        let err = "admin".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role \"admin\": use worker or manager"
        );
    }

    #[test]
    fn a_manager_is_also_a_worker_but_not_the_reverse() {
        assert!(Role::Manager.satisfies(Role::Worker));
        assert!(Role::Manager.satisfies(Role::Manager));
        assert!(Role::Worker.satisfies(Role::Worker));
        assert!(!Role::Worker.satisfies(Role::Manager));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let err = NodeIdentity::from_cert_der(b"not a cert").unwrap_err();
        assert!(
            matches!(err, IdentityError::NotACertificate { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_without_a_role_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "node1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "cluster1");
        let cert = params.self_signed(&key).unwrap();
        let err = NodeIdentity::from_cert_der(cert.der()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the certificate subject has no OU (role); it was not issued by a hive swarm CA for a node"
        );
    }
}

//! The CA with real keys: what it issues, what it refuses, and renewal on a fixed clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateSigningRequestDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::test_support::TestCluster;
use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A fixed instant, far from the real clock on purpose: 2030-01-01T00:00:00Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn dns_sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(s) => (*s).to_owned(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[test]
fn root_ca_is_swarmkits_shape() {
    let ca = RootCa::generate(t0()).unwrap();
    let (_, cert) = X509Certificate::from_der(ca.cert().der()).unwrap();
    assert!(cert.is_ca());
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["swarm-ca"]);
    // ecdsa-with-SHA256 over a P-256 key.
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.10045.4.3.2"
    );
    let curve = cert
        .public_key()
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    assert_eq!(cert.validity().not_before.timestamp(), unix(t0() - HOUR));
    assert_eq!(
        cert.validity().not_after.timestamp(),
        unix(t0() + 20 * 365 * DAY)
    );
    assert_eq!(ca.cert().digest(), CaDigest::of_der(ca.cert().der()));
}

#[test]
fn root_ca_survives_a_pem_round_trip() {
    let ca = RootCa::generate(t0()).unwrap();
    let pem = ca.to_pem();
    assert!(pem.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!format!("{pem:?}").contains(&pem.key_pem));
    let json = serde_json::to_string(&pem).unwrap();
    let loaded = RootCa::from_pem(&serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(loaded.cert(), ca.cert());
    // The reloaded CA still signs certificates that verify against the original root.
    let key = NodeKey::generate().unwrap();
    let identity = NodeIdentity {
        node_id: "node1".into(),
        role: Role::Worker,
        cluster_id: "c1".into(),
    };
    let cert = loaded
        .issue_node_cert(&key.csr().unwrap(), &identity, CertExpiry::DEFAULT, t0())
        .unwrap();
    NodeCredentials::new(ca.cert().clone(), cert, key, t0()).unwrap();
}

#[test]
fn root_ca_with_someone_elses_key_is_refused() {
    let a = RootCa::generate(t0()).unwrap().to_pem();
    let b = RootCa::generate(t0()).unwrap().to_pem();
    let mixed = RootCaPem {
        cert_pem: a.cert_pem,
        key_pem: b.key_pem,
    };
    let err = RootCa::from_pem(&mixed).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch), "{err}");
    let err = RootCa::from_pem(&RootCaPem {
        cert_pem: "garbage".into(),
        key_pem: mixed.key_pem,
    })
    .unwrap_err();
    assert!(matches!(err, CaError::BadRootCert { .. }), "{err}");
}

#[test]
fn manager_certificate_has_swarm_subject_sans_and_validity() {
    let cluster = TestCluster::new("ec2adilxf4ngv7ev8fwsi61i7", t0());
    let creds = cluster.node("bvz81updecsj6wjz393c09vti", Role::Manager, t0());
    assert_eq!(
        creds.identity(),
        &cluster.identity("bvz81updecsj6wjz393c09vti", Role::Manager)
    );
    assert_eq!(
        NodeIdentity::from_cert_der(creds.cert()).unwrap(),
        *creds.identity()
    );
    assert_eq!(
        dns_sans(creds.cert()),
        ["swarm-manager", "bvz81updecsj6wjz393c09vti", "swarm-ca"]
    );
    let (_, cert) = X509Certificate::from_der(creds.cert()).unwrap();
    let issuer_cn: Vec<_> = cert
        .issuer()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(issuer_cn, ["swarm-ca"]);
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    // 90 days by default, backdated one hour for clock skew.
    assert_eq!(creds.validity().not_before, t0() - HOUR);
    assert_eq!(creds.validity().not_after, t0() + 90 * DAY);
}

#[test]
fn worker_certificate_does_not_name_itself_a_manager() {
    let cluster = TestCluster::new("c1", t0());
    let creds = cluster.node("worker1", Role::Worker, t0());
    assert_eq!(creds.identity().role, Role::Worker);
    assert_eq!(dns_sans(creds.cert()), ["swarm-worker", "worker1"]);
}

#[test]
fn the_csr_subject_is_ignored_the_manager_decides() {
    let cluster = TestCluster::new("c1", t0());
    let key = rcgen::KeyPair::generate().unwrap();
    // A node asking for more than it was granted.
    let mut params = rcgen::CertificateParams::new(vec!["swarm-manager".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "someone-else");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "swarm-manager");
    let csr = params.serialize_request(&key).unwrap();
    let cert = cluster
        .ca
        .issue_node_cert(
            csr.der(),
            &cluster.identity("worker1", Role::Worker),
            CertExpiry::DEFAULT,
            t0(),
        )
        .unwrap();
    assert_eq!(
        NodeIdentity::from_cert_der(&cert).unwrap(),
        cluster.identity("worker1", Role::Worker)
    );
    assert_eq!(dns_sans(&cert), ["swarm-worker", "worker1"]);
}

#[test]
fn a_tampered_or_foreign_csr_is_refused() {
    let cluster = TestCluster::new("c1", t0());
    let identity = cluster.identity("node1", Role::Worker);
    let mut csr = NodeKey::generate().unwrap().csr().unwrap().to_vec();
    // Flip a bit in the signature (the last bytes): proof of possession fails.
    let last = csr.len() - 1;
    csr[last] ^= 1;
    let err = cluster
        .ca
        .issue_node_cert(
            &CertificateSigningRequestDer::from(csr),
            &identity,
            CertExpiry::DEFAULT,
            t0(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::BadCsr { .. }), "{err}");

    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&ed25519)
        .unwrap();
    let err = cluster
        .ca
        .issue_node_cert(csr.der(), &identity, CertExpiry::DEFAULT, t0())
        .unwrap_err();
    assert!(err.to_string().contains("not ECDSA P-256"), "{err}");
}

#[test]
fn names_that_cannot_be_sans_are_refused() {
    let cluster = TestCluster::new("c1", t0());
    let csr = NodeKey::generate().unwrap().csr().unwrap();
    for bad in ["", "Node_1", "-node", "a.b", &"x".repeat(64)] {
        let err = cluster
            .ca
            .issue_node_cert(
                &csr,
                &cluster.identity(bad, Role::Worker),
                CertExpiry::DEFAULT,
                t0(),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidName {
                    what: "node ID",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn cert_expiry_has_swarms_bounds() {
    assert_eq!(CertExpiry::default().duration(), 90 * DAY);
    assert_eq!(CertExpiry::new(HOUR).unwrap().duration(), HOUR);
    let err = CertExpiry::new(HOUR - Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("at least 1h"), "{err}");
    assert!(CertExpiry::new(21 * 365 * DAY).is_err());
}

#[test]
fn renewal_is_due_after_half_the_lifetime_on_a_fixed_clock() {
    let cluster = TestCluster::new("c1", t0());
    let creds = cluster.node("node1", Role::Worker, t0());
    // Lifetime is 90 days + 1 hour from t0 - 1 h; half of it is 45 days 30 min.
    assert!(!creds.needs_renewal(t0()));
    assert!(!creds.needs_renewal(t0() + 44 * DAY));
    assert!(creds.needs_renewal(t0() + 46 * DAY));
    assert!(!needs_renewal(creds.cert(), t0() + 44 * DAY).unwrap());
    assert!(needs_renewal(creds.cert(), t0() + 46 * DAY).unwrap());
}

#[test]
fn renewal_issues_a_new_cert_for_a_new_key_and_applies_a_role_change() {
    let cluster = TestCluster::new("c1", t0());
    let old = cluster.node("node1", Role::Worker, t0());
    let later = t0() + 50 * DAY;
    let new_key = NodeKey::generate().unwrap();
    // The node was promoted meanwhile; the store says manager.
    let cert = cluster
        .ca
        .renew_node_cert(
            &new_key.csr().unwrap(),
            old.identity(),
            Role::Manager,
            CertExpiry::DEFAULT,
            later,
        )
        .unwrap();
    let renewed = NodeCredentials::new(cluster.ca.cert().clone(), cert, new_key, later).unwrap();
    assert_eq!(
        renewed.identity(),
        &cluster.identity("node1", Role::Manager)
    );
    assert_eq!(renewed.validity().not_after, later + 90 * DAY);
    assert!(!renewed.needs_renewal(later));
    let serial = |der: &[u8]| {
        X509Certificate::from_der(der)
            .unwrap()
            .1
            .raw_serial()
            .to_vec()
    };
    assert_ne!(serial(old.cert()), serial(renewed.cert()));
}

#[test]
fn credentials_are_checked_against_root_key_and_clock() {
    let ours = TestCluster::new("c1", t0());
    let theirs = TestCluster::new("c2", t0());
    let good = ours.node("node1", Role::Worker, t0());

    let other_key = NodeKey::generate().unwrap();
    let err = NodeCredentials::new(ours.ca.cert().clone(), good.cert().clone(), other_key, t0())
        .unwrap_err();
    assert!(matches!(err, CredentialsError::KeyMismatch { .. }), "{err}");

    let foreign = theirs.node("node2", Role::Worker, t0());
    let key = NodeKey::from_pem(&foreign.key().to_pem()).unwrap();
    let err = NodeCredentials::new(ours.ca.cert().clone(), foreign.cert().clone(), key, t0())
        .unwrap_err();
    assert!(
        matches!(err, CredentialsError::NotIssuedByRoot { .. }),
        "{err}"
    );

    let key = NodeKey::from_pem(&good.key().to_pem()).unwrap();
    let err = NodeCredentials::new(
        ours.ca.cert().clone(),
        good.cert().clone(),
        key,
        t0() + 91 * DAY,
    )
    .unwrap_err();
    assert!(matches!(err, CredentialsError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("leave the swarm"), "{err}");

    let key = NodeKey::from_pem(&good.key().to_pem()).unwrap();
    let err = NodeCredentials::new(
        ours.ca.cert().clone(),
        good.cert().clone(),
        key,
        t0() - 2 * HOUR,
    )
    .unwrap_err();
    assert!(matches!(err, CredentialsError::NotYetValid { .. }), "{err}");
}

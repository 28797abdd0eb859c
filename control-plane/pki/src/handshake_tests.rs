//! Real TLS over real TCP on 127.0.0.1: the handshakes a swarm relies on, and the ones it
//! must refuse.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::test_support::TestCluster;
use super::*;

/// What each side saw.
struct Outcome {
    /// The server: the client's certificate chain (if any), or why the handshake failed.
    server: io::Result<Option<Vec<CertificateDer<'static>>>>,
    /// The client: the server's chain and the negotiated ALPN, or why it failed.
    client: io::Result<(Vec<CertificateDer<'static>>, Option<Vec<u8>>)>,
}

/// One connection on a fresh loopback port. The server answers `ok` after the handshake; the
/// client reads it, so a client certificate refused by the server shows up on the client too
/// (in TLS 1.3 the server checks the client's certificate after the client has finished).
async fn connect(server: ServerConfig, client: ClientConfig, name: ServerName<'static>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let connector = TlsConnector::from(Arc::new(client));

    let server_side = async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peer = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
        tls.write_all(b"ok").await?;
        tls.shutdown().await?;
        Ok(peer)
    };
    let client_side = async move {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(name, tcp).await?;
        let mut answer = [0u8; 2];
        tls.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"ok");
        let (_, conn) = tls.get_ref();
        let chain = conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        Ok((chain, conn.alpn_protocol().map(<[u8]>::to_vec)))
    };
    // A guard against a hung test, not an assertion about time.
    let (server, client) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(server_side, client_side)
    })
    .await
    .expect("handshake test hung");
    Outcome { server, client }
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[tokio::test]
async fn worker_connects_to_manager_and_server_sees_its_identity() {
    let cluster = TestCluster::new("clusterA", now());
    let manager = cluster.node("manager1", Role::Manager, now());
    let worker = cluster.node("worker1", Role::Worker, now());

    let out = connect(
        server_config(&manager, ClientAuth::Required).unwrap(),
        client_config(&worker).unwrap(),
        manager_server_name(),
    )
    .await;

    let (server_chain, alpn) = out.client.unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_H2));
    // The manager sends the root after its own certificate, for joining nodes to pin.
    assert_eq!(server_chain.len(), 2);
    assert_eq!(&server_chain[1], cluster.ca.cert().der());

    let peer = out.server.unwrap();
    let caller = authorize(peer.as_deref(), "clusterA", Role::Worker).unwrap();
    assert_eq!(caller, cluster.identity("worker1", Role::Worker));

    // The gRPC layer's check for a manager-only API.
    let err = authorize(peer.as_deref(), "clusterA", Role::Manager).unwrap_err();
    assert!(matches!(err, AuthzError::RoleDenied { .. }), "{err}");
    // And for a caller with the right CA but another cluster ID.
    let err = authorize(peer.as_deref(), "clusterB", Role::Worker).unwrap_err();
    assert!(matches!(err, AuthzError::WrongCluster { .. }), "{err}");
}

#[tokio::test]
async fn manager_reaches_a_named_manager_and_may_call_manager_apis() {
    let cluster = TestCluster::new("clusterA", now());
    let m1 = cluster.node("manager1", Role::Manager, now());
    let m2 = cluster.node("manager2", Role::Manager, now());

    let out = connect(
        server_config(&m1, ClientAuth::Required).unwrap(),
        client_config(&m2).unwrap(),
        node_server_name("manager1").unwrap(),
    )
    .await;
    out.client.unwrap();
    let peer = out.server.unwrap();
    let caller = authorize(peer.as_deref(), "clusterA", Role::Manager).unwrap();
    assert_eq!(caller.node_id, "manager2");
}

#[tokio::test]
async fn client_cert_from_another_cluster_is_refused_at_the_handshake() {
    let ours = TestCluster::new("clusterA", now());
    let theirs = TestCluster::new("clusterB", now());
    let manager = ours.node("manager1", Role::Manager, now());
    let intruder = theirs.node("manager9", Role::Manager, now());

    // The intruder's client must trust our root to get as far as sending its certificate.
    let client = client_trusting(&intruder, ours.ca.cert());
    let out = connect(
        server_config(&manager, ClientAuth::Required).unwrap(),
        client,
        manager_server_name(),
    )
    .await;
    // Both roots are named `CN=swarm-ca`, so webpki finds "our" anchor by name and then
    // the signature does not verify: BadSignature rather than UnknownIssuer. Refused either way.
    let err = out.server.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "server: {err}"
    );
    assert!(out.client.is_err());
}

#[tokio::test]
async fn server_from_another_cluster_is_refused_by_the_client() {
    let ours = TestCluster::new("clusterA", now());
    let theirs = TestCluster::new("clusterB", now());
    let worker = ours.node("worker1", Role::Worker, now());
    let impostor = theirs.node("manager9", Role::Manager, now());

    let out = connect(
        server_config(&impostor, ClientAuth::OptionalForJoin).unwrap(),
        client_config(&worker).unwrap(),
        manager_server_name(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "client: {err}"
    );
    assert!(out.server.is_err());
}

#[tokio::test]
async fn client_without_a_certificate_is_refused_when_required() {
    let cluster = TestCluster::new("clusterA", now());
    let manager = cluster.node("manager1", Role::Manager, now());
    let anonymous = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(tls::root_store(cluster.ca.cert()).unwrap())
        .with_no_client_auth();

    let out = connect(
        server_config(&manager, ClientAuth::Required).unwrap(),
        anonymous,
        manager_server_name(),
    )
    .await;
    let err = out.server.unwrap_err();
    assert!(
        err.to_string().contains("peer sent no certificates"),
        "server: {err}"
    );
    assert!(out.client.is_err());
}

#[tokio::test]
async fn a_worker_certificate_cannot_pose_as_a_manager_server() {
    let cluster = TestCluster::new("clusterA", now());
    let worker = cluster.node("worker1", Role::Worker, now());
    let manager = cluster.node("manager1", Role::Manager, now());

    let out = connect(
        server_config(&worker, ClientAuth::Required).unwrap(),
        client_config(&manager).unwrap(),
        manager_server_name(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(
        err.to_string().contains("not valid for name"),
        "client: {err}"
    );
}

#[tokio::test]
async fn joining_node_pins_the_root_by_the_token_digest() {
    let cluster = TestCluster::new("clusterA", now());
    let manager = cluster.node("manager1", Role::Manager, now());
    let tokens = JoinTokens::generate(cluster.ca.cert().digest()).unwrap();
    let token: JoinToken = tokens.worker.to_string().parse().unwrap();

    let out = connect(
        server_config(&manager, ClientAuth::OptionalForJoin).unwrap(),
        join_client_config(&token).unwrap(),
        manager_server_name(),
    )
    .await;
    let (chain, _) = out.client.unwrap();
    let root = pinned_root(&token, &chain).unwrap();
    assert_eq!(&root, cluster.ca.cert());

    // The joining node has no certificate: only the join API may serve it.
    let peer = out.server.unwrap();
    assert!(peer.is_none());
    let err = authorize(peer.as_deref(), "clusterA", Role::Worker).unwrap_err();
    assert!(err.is_unauthenticated(), "{err}");
    assert_eq!(tokens.role_for(&token.to_string()).unwrap(), Role::Worker);
}

#[tokio::test]
async fn joining_node_refuses_a_manager_whose_root_does_not_match_the_token() {
    let ours = TestCluster::new("clusterA", now());
    let theirs = TestCluster::new("clusterB", now());
    let impostor = theirs.node("manager9", Role::Manager, now());
    let token = JoinToken::generate(ours.ca.cert().digest()).unwrap();

    let out = connect(
        server_config(&impostor, ClientAuth::OptionalForJoin).unwrap(),
        join_client_config(&token).unwrap(),
        manager_server_name(),
    )
    .await;
    let err = out.client.unwrap_err();
    let refusal = join_refusal(&err).expect("the handshake failed on the token check");
    assert!(
        matches!(refusal, JoinError::Token(TokenError::UntrustedCa { presented, .. })
            if *presented == theirs.ca.cert().digest()),
        "{refusal:?}"
    );
    let text = refusal.to_string();
    assert!(
        text.contains("this is not the swarm the token belongs to"),
        "{text}"
    );
    assert!(text.contains("hive swarm join-token worker"), "{text}");
    assert!(out.server.is_err());
}

#[tokio::test]
async fn joining_node_refuses_a_worker_of_the_right_swarm_posing_as_manager() {
    let cluster = TestCluster::new("clusterA", now());
    let worker = cluster.node("worker1", Role::Worker, now());
    let token = JoinToken::generate(cluster.ca.cert().digest()).unwrap();

    let out = connect(
        server_config(&worker, ClientAuth::OptionalForJoin).unwrap(),
        join_client_config(&token).unwrap(),
        manager_server_name(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(
        err.to_string().contains("not valid for name"),
        "client: {err}"
    );
    assert!(join_refusal(&err).is_none());
}

/// The same client identity, but trusting `root` instead of its own cluster's.
fn client_trusting(creds: &NodeCredentials, root: &RootCert) -> ClientConfig {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(tls::root_store(root).unwrap())
        .with_client_auth_cert(vec![creds.cert().clone()], creds.key().private_key_der())
        .unwrap()
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_from_the_next_handshake_without_new_configs() {
    let cluster = TestCluster::new("clusterA", now());
    let manager = cluster.node("manager1", Role::Manager, now());
    let worker = cluster.node("worker1", Role::Worker, now());
    let manager_slot = CertSlot::new(&manager).unwrap();
    let worker_slot = CertSlot::new(&worker).unwrap();
    let server = server_config_with(
        manager_slot.clone(),
        TrustSlot::new(vec![manager.root().clone()]).unwrap(),
        ClientAuth::Required,
    )
    .unwrap();
    let mut client = client_config_with(
        worker_slot.clone(),
        TrustSlot::new(vec![worker.root().clone()]).unwrap(),
    )
    .unwrap();
    // A resumed TLS 1.3 session reports the certificates of the session it resumes; a full
    // handshake shows what each end presents now.
    client.resumption = rustls::client::Resumption::disabled();

    let before = connect(server.clone(), client.clone(), manager_server_name()).await;
    assert_eq!(before.client.unwrap().0[0], *manager.cert());
    assert_eq!(before.server.unwrap().unwrap()[0], *worker.cert());

    // Both nodes renew: same IDs and roles, new keys and certificates.
    let manager_renewed = cluster.node("manager1", Role::Manager, now());
    let worker_renewed = cluster.node("worker1", Role::Worker, now());
    assert_ne!(manager_renewed.cert(), manager.cert());
    manager_slot.set(&manager_renewed).unwrap();
    worker_slot.set(&worker_renewed).unwrap();

    let after = connect(server, client, manager_server_name()).await;
    assert_eq!(after.client.unwrap().0[0], *manager_renewed.cert());
    assert_eq!(after.server.unwrap().unwrap()[0], *worker_renewed.cert());
}

/// A root rotation, step by step, with real TLS: a node renewed by the new root (presenting
/// the cross-signed intermediate) and a node still on the old root talk both ways, whatever
/// each trusts meanwhile; at the end, trusting the new root alone refuses an old certificate.
#[tokio::test]
async fn nodes_on_the_old_and_the_new_root_keep_talking_during_a_rotation() {
    let old = TestCluster::new("clusterA", now());
    let new = TestCluster::new("clusterA", now());
    let cross_signed = old.ca.cross_sign(&new.ca).unwrap();
    let manager = new
        .node("manager1", Role::Manager, now())
        .with_intermediates(vec![cross_signed.clone()]);
    let worker = old.node("worker1", Role::Worker, now());
    let both = || TrustSlot::new(vec![old.ca.cert().clone(), new.ca.cert().clone()]).unwrap();
    let old_only = || TrustSlot::new(vec![old.ca.cert().clone()]).unwrap();

    // The renewed manager trusts both roots; the worker has not heard of the rotation yet.
    let server_trust = both();
    let server = server_config_with(
        CertSlot::new(&manager).unwrap(),
        server_trust.clone(),
        ClientAuth::Required,
    )
    .unwrap();
    let client_trust = old_only();
    let client = client_config_with(CertSlot::new(&worker).unwrap(), client_trust.clone()).unwrap();
    let out = connect(server.clone(), client.clone(), manager_server_name()).await;
    let chain = out
        .client
        .expect("the old-root worker verifies the new-root manager")
        .0;
    assert_eq!(chain[1], cross_signed, "the intermediate is presented");
    out.server.expect("the manager accepts the old-root worker");

    // Without the intermediate, the old root alone cannot verify the new certificate.
    let bare = new.node("manager1", Role::Manager, now());
    let out = connect(
        server_config_with(CertSlot::new(&bare).unwrap(), both(), ClientAuth::Required).unwrap(),
        client_config_with(CertSlot::new(&worker).unwrap(), old_only()).unwrap(),
        manager_server_name(),
    )
    .await;
    assert!(out.client.is_err(), "no intermediate, no trust");

    // The end of the rotation: trusting the new root alone (swapped in place), the manager
    // refuses the worker's old certificate.
    server_trust.set(vec![new.ca.cert().clone()]).unwrap();
    client_trust
        .set(vec![old.ca.cert().clone(), new.ca.cert().clone()])
        .unwrap();
    let mut client = client;
    client.resumption = rustls::client::Resumption::disabled();
    let out = connect(server, client, manager_server_name()).await;
    assert!(
        out.server.is_err(),
        "an old-root certificate after the rotation"
    );
}

//! The agent's session with the leader: register, then heartbeat every period the leader
//! asks for. Followers name the leader, and the session moves there; if the leader dies, the
//! session tries the other managers it knows until one leads. What the session learns — the
//! managers' addresses, and a role the swarm wants this node to take — goes to the daemon as
//! [`SessionEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::sync::{mpsc, watch};

use super::assignment::{Assignment, AssignmentChange, receive};
use super::status::StatusQueue;
use crate::api::{convert, is_retryable, leader_hint, pb};
use crate::pki;
use crate::transport::mtls_channel;

/// Bound of one register or heartbeat call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// First and last pause between failed attempts (doubling in between).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the session tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The current managers' addresses (persist them: they are where to reconnect after a
    /// restart).
    Managers(Vec<String>),
    /// The swarm wants this node to have another role than its certificate says.
    RoleChange(pki::Role),
}

/// One node's session.
#[derive(Debug)]
pub struct Session {
    pub tls: Arc<ClientConfig>,
    /// Managers to try, in order; updated from the leader's answers.
    pub managers: Vec<String>,
    /// The role in this node's certificate.
    pub role: pki::Role,
    pub events: mpsc::Sender<SessionEvent>,
    /// host:port of this node's Agent service, sent in `Register`.
    pub agent_addr: String,
    /// MAC of this node's underlay NIC, sent in `Register` (empty if unknown).
    pub underlay_mac: String,
    /// Why this node's data plane failed to load, sent in `Register` (empty if it loaded or
    /// was turned off): `hive node inspect` shows it.
    pub dataplane_error: String,
    /// The ports this node's control plane listens on, sent in `Register`.
    pub control_ports: Vec<crate::store::objects::ControlPort>,
    /// Where the node's assignment goes after each message (the worker follows it).
    pub assignments: watch::Sender<Option<Arc<Assignment>>>,
    /// Task statuses waiting to be sent.
    pub statuses: StatusQueue,
    /// Mesh versions applied here, and the leader to wait on before a stop.
    pub mesh_link: Arc<super::mesh_link::MeshLink>,
    /// Where the gossip keyring and removed nodes of each answer go.
    pub gossip_auth: crate::gossip::GossipAuth,
    /// The certificate this node presents (its issuer is reported in each call).
    pub cert_slot: Arc<pki::CertSlot>,
    /// The roots this node trusts: each answer's `trusted_roots` replace them.
    pub trust: Arc<pki::TrustSlot>,
    /// Notified when the swarm issues certificates from a root other than this node's.
    pub renew_now: Arc<tokio::sync::Notify>,
}

impl Session {
    /// Runs until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        let mut next = 0usize;
        let mut hint: Option<String> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let Some(addr) = hint.take().or_else(|| {
                let addr = self
                    .managers
                    .get(next % self.managers.len().max(1))
                    .cloned();
                next = next.wrapping_add(1);
                addr
            }) else {
                tracing::warn!("agent: no manager address known; waiting");
                if sleep_or_stop(BACKOFF_MAX, &mut stop).await {
                    return;
                }
                continue;
            };
            let ended = self.session_with(&addr, &mut stop).await;
            self.mesh_link.set_session(None);
            match ended {
                Ended::Stopped => return,
                Ended::Moved(leader) => {
                    tracing::debug!(from = %addr, to = %leader, "agent: following the leader");
                    hint = Some(leader);
                    backoff = BACKOFF_MIN;
                }
                Ended::Failed(status) => {
                    tracing::debug!(%addr, %status, "agent: session failed");
                    if sleep_or_stop(backoff, &mut stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn session_with(&mut self, addr: &str, stop: &mut watch::Receiver<bool>) -> Ended {
        let channel = match mtls_channel(addr, self.tls.clone(), pki::manager_server_name()) {
            Ok(channel) => channel,
            Err(err) => return Ended::Failed(tonic::Status::unavailable(err.to_string())),
        };
        let mut client = pb::dispatcher_client::DispatcherClient::new(channel);
        let mut description = convert::local_description();
        description.underlay_mac = self.underlay_mac.clone();
        description.dataplane_error = self.dataplane_error.clone();
        description.control_ports = self
            .control_ports
            .iter()
            .map(convert::control_port_pb)
            .collect();
        let registered = client
            .register(request(pb::RegisterRequest {
                description: Some(description),
                agent_addr: self.agent_addr.clone(),
                tls_info: Some(self.tls_info()),
            }))
            .await;
        let mut session = match self.outcome(registered).await {
            Ok(session) => session,
            Err(ended) => return ended,
        };
        tracing::info!(manager = %addr, "agent: session open");
        // The assignment stream lives as long as the session; no call timeout on it.
        let stream = client
            .assignments(pb::AssignmentsRequest {
                session_id: session.session_id.clone(),
            })
            .await;
        let mut stream = match stream {
            Ok(stream) => stream.into_inner(),
            Err(status) => return self.ended(status),
        };
        let mut next_beat =
            tokio::time::Instant::now() + Duration::from_millis(session.period_ms.max(100));
        let mut flush_backoff = BACKOFF_MIN;
        self.mesh_link
            .set_session(Some((client.clone(), session.session_id.clone())));
        let mut applied = self.mesh_link.applied();
        applied.mark_changed();
        // The stream's first message is complete (it replaces what is held), the others change it.
        let mut started = false;
        // After a failed send, when to try again; heartbeats and assignments go on meanwhile.
        let mut retry_at: Option<tokio::time::Instant> = None;
        // Statuses left from an earlier session go first.
        let mut flush_now = !self.statuses.pending().is_empty();
        loop {
            if flush_now {
                flush_now = false;
                let batch = self.statuses.pending();
                if !batch.is_empty() {
                    match self
                        .send_statuses(&mut client, &session.session_id, &batch)
                        .await
                    {
                        Ok(version) => {
                            self.statuses.sent(&batch, Some(version));
                            flush_backoff = BACKOFF_MIN;
                            retry_at = None;
                        }
                        Err(status) if status.code() == tonic::Code::InvalidArgument => {
                            tracing::warn!(%status, "agent: the leader refused task statuses; dropping them");
                            self.statuses.sent(&batch, None);
                        }
                        Err(status) => {
                            tracing::debug!(%status, "agent: sending task statuses failed; retrying");
                            if leader_hint(&status).is_some()
                                || status.code() == tonic::Code::FailedPrecondition
                            {
                                return self.ended(status);
                            }
                            retry_at = Some(tokio::time::Instant::now() + flush_backoff);
                            flush_backoff = (flush_backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => return Ended::Stopped,
                () = self.statuses.changed() => flush_now = retry_at.is_none(),
                Ok(()) = applied.changed() => {
                    let version = *applied.borrow_and_update();
                    let reported = client
                        .report_mesh_applied(request(pb::ReportMeshAppliedRequest {
                            session_id: session.session_id.clone(),
                            version,
                        }))
                        .await;
                    if let Err(status) = reported {
                        tracing::debug!(%status, version, "agent: reporting the applied mesh failed");
                        if leader_hint(&status).is_some()
                            || status.code() == tonic::Code::FailedPrecondition
                        {
                            return self.ended(status);
                        }
                    }
                }
                () = async { tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)).await }, if retry_at.is_some() => {
                    retry_at = None;
                    flush_now = true;
                }
                message = stream.message() => match message {
                    Ok(Some(message)) => match AssignmentChange::decode(message) {
                        Ok(change) => {
                            if !change.complete && !started {
                                return Ended::Failed(tonic::Status::internal("the leader's assignment stream did not start with a complete view"));
                            }
                            started = true;
                            tracing::debug!(version = change.version, complete = change.complete,
                                tasks = change.update_tasks.len(), removed = change.remove_tasks.len(),
                                "agent: assignments");
                            self.mesh_link.set_received(change.version);
                            receive(&self.assignments, change);
                        }
                        // The stream is a sequence of changes: one left out would leave this
                        // node's view wrong for good. A new stream starts from a complete view.
                        Err(err) => return Ended::Failed(tonic::Status::internal(format!("an assignments message that does not decode: {err}"))),
                    },
                    Ok(None) => return Ended::Failed(tonic::Status::unavailable("the leader ended the assignment stream")),
                    Err(status) => return self.ended(status),
                },
                () = tokio::time::sleep_until(next_beat) => {
                    let beat = client
                        .heartbeat(request(pb::HeartbeatRequest {
                            session_id: session.session_id.clone(),
                            tls_info: Some(self.tls_info()),
                        }))
                        .await;
                    session = match self.outcome(beat).await {
                        Ok(session) => session,
                        Err(ended) => return ended,
                    };
                    next_beat = tokio::time::Instant::now()
                        + Duration::from_millis(session.period_ms.max(100));
                }
            }
        }
    }

    async fn send_statuses(
        &self,
        client: &mut pb::dispatcher_client::DispatcherClient<tonic::transport::Channel>,
        session_id: &str,
        batch: &[(String, crate::store::objects::TaskStatus)],
    ) -> Result<u64, tonic::Status> {
        let updates = batch
            .iter()
            .map(|(task_id, status)| pb::TaskStatusUpdate {
                task_id: task_id.clone(),
                status: Some(status.into()),
            })
            .collect();
        client
            .update_task_status(request(pb::UpdateTaskStatusRequest {
                session_id: session_id.to_owned(),
                updates,
            }))
            .await
            .map(|reply| reply.into_inner().version)
    }

    fn ended(&self, status: tonic::Status) -> Ended {
        match leader_hint(&status) {
            Some(leader) if is_retryable(&status) => Ended::Moved(leader),
            _ => Ended::Failed(status),
        }
    }

    /// Takes in a register or heartbeat answer.
    async fn outcome(
        &mut self,
        reply: Result<tonic::Response<pb::SessionResponse>, tonic::Status>,
    ) -> Result<pb::SessionResponse, Ended> {
        let session = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                return Err(match leader_hint(&status) {
                    Some(leader) if is_retryable(&status) => Ended::Moved(leader),
                    _ => Ended::Failed(status),
                });
            }
        };
        if !session.managers.is_empty() && session.managers != self.managers {
            self.managers = session.managers.clone();
            let _ = self
                .events
                .try_send(SessionEvent::Managers(self.managers.clone()));
        }
        if !session.gossip_keys.is_empty() {
            let keys: Vec<crate::gossip::GossipKey> = session
                .gossip_keys
                .iter()
                .map(|k| crate::gossip::GossipKey {
                    id: k.id,
                    secret: k.secret.clone(),
                })
                .collect();
            self.gossip_auth
                .update(&keys, session.removed_nodes.iter().cloned());
        }
        self.follow_root_rotation(&session);
        let desired = convert::pki_role(session.desired_role());
        if desired != self.role {
            let _ = self.events.try_send(SessionEvent::RoleChange(desired));
        }
        Ok(session)
    }
}

impl Session {
    /// What this node reports of its TLS state, from which the leader counts a root rotation's
    /// progress.
    fn tls_info(&self) -> pb::NodeTlsInfo {
        pb::NodeTlsInfo {
            trusted_roots: self
                .trust
                .digests()
                .iter()
                .map(ToString::to_string)
                .collect(),
            cert_issuer: self.cert_slot.issuer().to_string(),
        }
    }

    /// Trusts the roots the answer lists, and renews at once if new certificates come from
    /// another root than this node's (docs/security.md, "CA rotation").
    fn follow_root_rotation(&self, session: &pb::SessionResponse) {
        if !session.trusted_roots.is_empty() {
            let roots = session
                .trusted_roots
                .iter()
                .map(|der| {
                    pki::RootCert::from_der(rustls::pki_types::CertificateDer::from(der.clone()))
                })
                .collect::<Result<Vec<_>, _>>();
            match roots.map(|roots| self.trust.set(roots)) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(%err, "cannot trust the swarm's root CAs"),
                Err(err) => tracing::warn!(%err, "the leader sent an unreadable root CA"),
            }
        }
        if !session.desired_root_digest.is_empty()
            && session.desired_root_digest != self.cert_slot.issuer().to_string()
        {
            self.renew_now.notify_one();
        }
    }
}

enum Ended {
    Stopped,
    Moved(String),
    Failed(tonic::Status),
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// Sleeps `period`; true if `stop` came first.
async fn sleep_or_stop(period: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(period) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

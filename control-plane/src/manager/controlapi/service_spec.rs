//! Checks of a service spec before it is stored: what SwarmKit's `controlapi/service.go`
//! validates, with its texts where users know them, and the ingress port conflict check that
//! has to run inside the write that stores the service.

use std::collections::BTreeSet;

use crate::api::ApiError;
use crate::store::ReadView;
use crate::store::objects::{EndpointMode, PortConfig, PublishMode, Service, ServiceSpec};

/// Longest service name: a DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Why a service spec is refused. Texts follow SwarmKit's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("meta: name must be provided")]
    NameMissing,
    #[error("name must be valid as a DNS name component")]
    NameInvalid { name: String },
    #[error("name must be {MAX_NAME_LEN} characters or fewer")]
    NameTooLong { name: String },
    #[error("ContainerSpec: image reference must be provided")]
    ImageMissing,
    #[error("invalid environment variable \"{entry}\": use KEY=value with a non-empty KEY")]
    Env { entry: String },
    #[error("EndpointSpec: target port must be between 1 and 65535 (published port {published})")]
    TargetPortZero { published: u16 },
    #[error(
        "EndpointSpec: a host-mode port needs a published port in hive (target port {target}); \
         use --publish mode=host,published=PORT,target={target}"
    )]
    HostPortUnset { target: u16 },
    #[error("EndpointSpec: duplicate published ports provided")]
    DuplicatePublished { port: u16 },
    #[error("EndpointSpec: port published with ingress mode can't be used with dnsrr mode")]
    IngressWithDnsrr,
    #[error(transparent)]
    Constraint(crate::manager::scheduler::constraint::ConstraintError),
    #[error(
        "invalid placement preference spread={descriptor}: spread over node.labels.NAME or engine.labels.NAME"
    )]
    Preference { descriptor: String },
    #[error("invalid {what} {value}: resources can't be negative")]
    NegativeResource { what: &'static str, value: i64 },
    #[error(
        "invalid --reserve-{what}: the reservation ({reserved}) is larger than the limit ({limit})"
    )]
    ReservationOverLimit {
        what: &'static str,
        reserved: i64,
        limit: i64,
    },
    /// Bounds and node-side rules (`spec_limits`).
    #[error(transparent)]
    Limit(#[from] crate::manager::controlapi::spec_limits::LimitError),
}

impl From<SpecError> for ApiError {
    fn from(error: SpecError) -> Self {
        ApiError::Invalid(error.to_string())
    }
}

/// SwarmKit's name rule: letters and digits, with `-` or `_` only between them.
fn is_dns_component(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// A light check of one `--constraint` expression.
/// The scheduler's own parser: the API refuses exactly what the scheduler could not evaluate.
fn check_constraint(expression: &str) -> Result<(), SpecError> {
    crate::manager::scheduler::constraint::Constraint::parse(expression)
        .map(drop)
        .map_err(SpecError::Constraint)
}

/// Everything that can be checked on the spec alone (no other objects).
pub fn validate(spec: &ServiceSpec) -> Result<(), SpecError> {
    let name = &spec.annotations.name;
    if name.is_empty() {
        return Err(SpecError::NameMissing);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SpecError::NameTooLong { name: name.clone() });
    }
    if !is_dns_component(name) {
        return Err(SpecError::NameInvalid { name: name.clone() });
    }
    let container = &spec.task_template.container;
    if container.image.trim().is_empty() {
        return Err(SpecError::ImageMissing);
    }
    for entry in &container.env {
        if entry.split_once('=').is_none_or(|(key, _)| key.is_empty()) {
            return Err(SpecError::Env {
                entry: entry.clone(),
            });
        }
    }
    for expression in &spec.task_template.placement.constraints {
        check_constraint(expression)?;
    }
    for preference in &spec.task_template.placement.preferences {
        if !crate::manager::scheduler::spread::valid_descriptor(&preference.spread) {
            return Err(SpecError::Preference {
                descriptor: preference.spread.clone(),
            });
        }
    }
    validate_resources(spec)?;
    crate::manager::controlapi::spec_limits::check(spec)?;
    validate_ports(spec)
}

fn validate_resources(spec: &ServiceSpec) -> Result<(), SpecError> {
    let r = &spec.task_template.resources;
    for (what, value) in [
        ("--limit-cpu", r.limits.nano_cpus),
        ("--limit-memory", r.limits.memory_bytes),
        ("--reserve-cpu", r.reservations.nano_cpus),
        ("--reserve-memory", r.reservations.memory_bytes),
    ] {
        if value < 0 {
            return Err(SpecError::NegativeResource { what, value });
        }
    }
    for (what, reserved, limit) in [
        ("cpu", r.reservations.nano_cpus, r.limits.nano_cpus),
        ("memory", r.reservations.memory_bytes, r.limits.memory_bytes),
    ] {
        if limit > 0 && reserved > limit {
            return Err(SpecError::ReservationOverLimit {
                what,
                reserved,
                limit,
            });
        }
    }
    Ok(())
}

fn validate_ports(spec: &ServiceSpec) -> Result<(), SpecError> {
    let ports = &spec.endpoint_spec.ports;
    let mut published = BTreeSet::new();
    for port in ports {
        if port.target_port == 0 {
            return Err(SpecError::TargetPortZero {
                published: port.published_port,
            });
        }
        if port.publish_mode == PublishMode::Ingress
            && spec.endpoint_spec.mode == EndpointMode::Dnsrr
        {
            return Err(SpecError::IngressWithDnsrr);
        }
        // Docker would bind a random host port; hive's mesh publishes host-mode ports at
        // a number the whole cluster knows, so it must be given.
        if port.publish_mode == PublishMode::Host && port.published_port == 0 {
            return Err(SpecError::HostPortUnset {
                target: port.target_port,
            });
        }
        // SwarmKit: the same published port twice (per protocol) in one spec.
        if port.published_port != 0 && !published.insert((port.published_port, port.protocol)) {
            return Err(SpecError::DuplicatePublished {
                port: port.published_port,
            });
        }
    }
    Ok(())
}

/// A published port another service holds: the one error, and the one text (SwarmKit's,
/// `checkPortConflicts`), of the Control API's check and of the allocator's guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port '{port}' is already in use by service '{owner_name}' ({owner_id}) as {}",
    match .held_as { PublishMode::Ingress => "an ingress port", PublishMode::Host => "a host-published port" })]
pub struct PortInUse {
    pub port: u16,
    pub owner_name: String,
    pub owner_id: String,
    /// How the owner publishes it.
    pub held_as: PublishMode,
}

impl From<PortInUse> for ApiError {
    fn from(error: PortInUse) -> Self {
        Self::Invalid(error.to_string())
    }
}

/// The rule: whether a port asked for (`wanted`) conflicts with one another service holds
/// (`held`). An ingress port is published on every node, so it conflicts with any other
/// service's port of that number and protocol, ingress or host mode; two host-mode ports of
/// one number may coexist (the scheduler keeps them on different nodes). A port asked for
/// without a number (0) conflicts with nothing.
pub fn port_conflicts(wanted: &PortConfig, held: &PortConfig) -> bool {
    wanted.published_port != 0
        && wanted.published_port == held.published_port
        && wanted.protocol == held.protocol
        && (wanted.publish_mode == PublishMode::Ingress
            || held.publish_mode == PublishMode::Ingress)
}

/// Refuses published ports another service already holds ([`port_conflicts`]). Run inside
/// the write that stores `spec`, so two creates cannot both take a port; `own_id` is the
/// service being updated (empty on create).
pub fn check_port_conflicts(
    tx: &impl ReadView,
    own_id: &str,
    spec: &ServiceSpec,
) -> Result<(), ApiError> {
    // Only a port asked for by number can conflict; without one, no service needs reading.
    if spec
        .endpoint_spec
        .ports
        .iter()
        .all(|p| p.published_port == 0)
    {
        return Ok(());
    }
    // Only the services holding one of the ports asked for can conflict: read those, through
    // the store's port index, in ID order (the first conflict found is the one reported).
    let mut holders = BTreeSet::new();
    for wanted in spec
        .endpoint_spec
        .ports
        .iter()
        .filter(|p| p.published_port != 0)
    {
        holders.extend(tx.services_holding_port(wanted.protocol, wanted.published_port)?);
    }
    for id in holders.iter().filter(|id| id.as_str() != own_id) {
        let Some(other) = tx.get::<Service>(id)? else {
            continue;
        };
        for held in other.held_ports() {
            if spec
                .endpoint_spec
                .ports
                .iter()
                .any(|wanted| port_conflicts(wanted, held))
            {
                return Err(PortInUse {
                    port: held.published_port,
                    owner_name: other.spec.annotations.name.clone(),
                    owner_id: other.id.clone(),
                    held_as: held.publish_mode,
                }
                .into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::objects::{Annotations, ContainerSpec, EndpointSpec, Protocol, TaskSpec};

    pub(crate) fn spec(name: &str, image: &str) -> ServiceSpec {
        ServiceSpec {
            annotations: Annotations::named(name),
            task_template: TaskSpec {
                container: ContainerSpec {
                    image: image.into(),
                    ..ContainerSpec::default()
                },
                ..TaskSpec::default()
            },
            ..ServiceSpec::default()
        }
    }

    fn port(published: u16, target: u16, protocol: Protocol) -> PortConfig {
        PortConfig {
            published_port: published,
            target_port: target,
            protocol,
            ..PortConfig::default()
        }
    }

    #[test]
    fn names_follow_swarmkit() {
        assert_eq!(validate(&spec("web-1_a", "hive/whoami")), Ok(()));
        assert_eq!(validate(&spec("", "x")), Err(SpecError::NameMissing));
        assert_eq!(
            validate(&spec("-web", "x")).unwrap_err().to_string(),
            "name must be valid as a DNS name component"
        );
        assert!(matches!(
            validate(&spec("web.1", "x")),
            Err(SpecError::NameInvalid { .. })
        ));
        assert!(matches!(
            validate(&spec(&"a".repeat(64), "x")),
            Err(SpecError::NameTooLong { .. })
        ));
        assert_eq!(
            validate(&spec("web", " ")).unwrap_err().to_string(),
            "ContainerSpec: image reference must be provided"
        );
    }

    #[test]
    fn env_and_constraints_get_a_light_check() {
        let mut s = spec("web", "x");
        s.task_template.container.env = vec!["A=1".into(), "B=".into()];
        assert_eq!(validate(&s), Ok(()));
        s.task_template.container.env.push("=x".into());
        assert!(matches!(validate(&s), Err(SpecError::Env { .. })));
        s.task_template.container.env.pop();
        s.task_template.placement.constraints = vec!["node.role==manager".into()];
        assert_eq!(validate(&s), Ok(()));
        s.task_template.placement.constraints = vec!["node.labels.zone != b".into()];
        assert_eq!(validate(&s), Ok(()));
        s.task_template.placement.constraints = vec!["node.role=manager".into()];
        assert!(matches!(validate(&s), Err(SpecError::Constraint(_))));
    }

    #[test]
    fn ports_are_checked_within_the_spec() {
        let mut s = spec("web", "x");
        s.endpoint_spec = EndpointSpec {
            mode: EndpointMode::Vip,
            ports: vec![port(8080, 80, Protocol::Tcp), port(8080, 80, Protocol::Udp)],
        };
        assert_eq!(validate(&s), Ok(()));
        s.endpoint_spec.ports.push(port(8080, 81, Protocol::Tcp));
        assert_eq!(
            validate(&s).unwrap_err().to_string(),
            "EndpointSpec: duplicate published ports provided"
        );
        s.endpoint_spec.ports = vec![port(8080, 0, Protocol::Tcp)];
        assert!(matches!(
            validate(&s),
            Err(SpecError::TargetPortZero { .. })
        ));
        s.endpoint_spec.ports = vec![port(8080, 80, Protocol::Tcp)];
        s.endpoint_spec.mode = EndpointMode::Dnsrr;
        assert_eq!(validate(&s), Err(SpecError::IngressWithDnsrr));
        s.endpoint_spec.ports[0].publish_mode = PublishMode::Host;
        assert_eq!(validate(&s), Ok(()));
        s.endpoint_spec.ports[0].published_port = 0;
        assert_eq!(validate(&s), Err(SpecError::HostPortUnset { target: 80 }));
    }

    #[test]
    fn resources_must_be_sane() {
        let mut s = spec("web", "x");
        const MIB: i64 = 1 << 20;
        s.task_template.resources.limits.memory_bytes = 100 * MIB;
        s.task_template.resources.reservations.memory_bytes = 200 * MIB;
        assert!(matches!(
            validate(&s),
            Err(SpecError::ReservationOverLimit { .. })
        ));
        s.task_template.resources.reservations.memory_bytes = 50 * MIB;
        assert_eq!(validate(&s), Ok(()));
        s.task_template.resources.limits.nano_cpus = -1;
        assert!(matches!(
            validate(&s),
            Err(SpecError::NegativeResource { .. })
        ));
    }
}

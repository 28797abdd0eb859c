//! Leader-side network operations: create, remove, inspect, list (`hive network ...`), and the
//! check of a service's `--network` attachments. Networks travel as the API's messages,
//! converted once by `api::convert` (docs/control-plane.md, "The wire"), like services.
//!
//! As in `services`, each operation is a function over a store transaction (`*_in`), which
//! the tests run against a real one-manager store, and an async wrapper around it.

use ipnetwork::Ipv4Network;

use crate::api::{ApiError, pb};
use crate::manager::Manager;
use crate::manager::allocator::ipam::canonical;
use crate::store::objects::{Network, NetworkSpec, ObjectKind, Service, ServiceSpec, Task};
use crate::store::{ReadView, WriteTx};

/// The only driver hive has.
pub const OVERLAY: &str = "overlay";

/// Driver options hive refuses rather than silently ignore.
const UNSUPPORTED_OPTIONS: &[(&str, &str)] = &[(
    "encrypted",
    "hive does not encrypt overlay traffic (no IPsec); create the network without -o encrypted",
)];

/// Docker's name rule for networks (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The subnets of `spec`'s IPAM configs, after checking each config (parsed where the spec
/// entered the cluster, [`IpamConfig::parse`]): a subnet without host bits, a range inside it,
/// a gateway inside it, and no overlap between them.
fn validate_ipam(spec: &NetworkSpec) -> Result<Vec<Ipv4Network>, ApiError> {
    let invalid = |m: String| Err(ApiError::Invalid(m));
    let mut subnets: Vec<Ipv4Network> = Vec::new();
    for config in &spec.ipam.configs {
        let subnet = canonical(config.subnet);
        if subnet != config.subnet {
            return invalid(format!(
                "invalid subnet {}: it should be {subnet}",
                config.subnet
            ));
        }
        if subnet.prefix() > 30 {
            return invalid(format!(
                "invalid subnet {subnet}: an overlay subnet needs a prefix length of 30 or less"
            ));
        }
        if let Some(range) = config.range
            && (range.prefix() < subnet.prefix() || !subnet.contains(range.network()))
        {
            return invalid(format!("ip-range {range} is not inside subnet {subnet}"));
        }
        if let Some(gateway) = config.gateway
            && !subnet.contains(gateway)
        {
            return invalid(format!("no matching subnet for gateway {gateway}"));
        }
        if subnets.iter().any(|s| s.overlaps(subnet)) {
            return invalid(format!(
                "invalid pool request: subnet {subnet} overlaps with another subnet of this network"
            ));
        }
        subnets.push(subnet);
    }
    Ok(subnets)
}

/// Checks a spec as `hive network create` sends it.
pub fn validate(spec: &NetworkSpec) -> Result<(), ApiError> {
    let name = &spec.annotations.name;
    if name.is_empty() {
        return Err(ApiError::Invalid("a network needs a name".into()));
    }
    if !valid_name(name) {
        return Err(ApiError::Invalid(format!(
            "invalid network name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if spec.driver != OVERLAY {
        return Err(ApiError::Invalid(format!(
            "network driver \"{}\" is not supported: hive networks are swarm-scope overlay \
             networks (-d overlay)",
            spec.driver
        )));
    }
    if spec.ingress {
        return Err(ApiError::Invalid(
            "hive has exactly one routing-mesh network, \"ingress\", made at swarm init; \
             creating another with --ingress is not supported"
                .into(),
        ));
    }
    if !spec.ipam.driver.is_empty() && spec.ipam.driver != "default" {
        return Err(ApiError::Invalid(format!(
            "IPAM driver \"{}\" is not supported; hive has only the default one",
            spec.ipam.driver
        )));
    }
    for (option, why) in UNSUPPORTED_OPTIONS {
        if spec.driver_options.contains_key(*option) {
            return Err(ApiError::Invalid(format!("option \"{option}\": {why}")));
        }
    }
    validate_ipam(spec)?;
    Ok(())
}

/// Validates `spec` and stores a new network (the allocator then gives it a VNI and, without
/// `--subnet`, a subnet); returns its ID.
pub fn create_in(tx: &mut WriteTx, spec: &NetworkSpec) -> Result<String, ApiError> {
    let mut spec = spec.clone();
    if spec.driver.is_empty() {
        spec.driver = OVERLAY.to_owned();
    }
    validate(&spec)?;
    let name = &spec.annotations.name;
    if tx.id_by_name(ObjectKind::Network, name)?.is_some() {
        return Err(ApiError::AlreadyExists(format!(
            "network with name {name} already exists"
        )));
    }
    let subnets = validate_ipam(&spec)?;
    for other in tx.list::<Network>()? {
        let theirs = other
            .ipam
            .iter()
            .chain(other.spec.ipam.configs.iter())
            .map(|c| canonical(c.subnet));
        for used in theirs {
            if let Some(mine) = subnets.iter().find(|s| s.overlaps(used)) {
                return Err(ApiError::Precondition(format!(
                    "invalid pool request: Pool overlaps with other one on this address space \
                     ({mine} overlaps {used} of network {})",
                    other.spec.annotations.name
                )));
            }
        }
    }
    let network = Network {
        spec,
        ..Network::default()
    };
    Ok(tx.create(network)?)
}

/// Deletes the network `query` names, unless it is the ingress network or a service or a
/// live task uses it. Returns its ID.
pub fn remove_in(tx: &mut WriteTx, query: &str) -> Result<String, ApiError> {
    let network = tx.lookup::<Network>(query)?;
    let services = tx.list::<Service>()?;
    if network.spec.ingress {
        if let Some(service) = services.iter().find(|s| publishes_ingress(s)) {
            return Err(ApiError::Precondition(format!(
                "ingress network cannot be removed because service {} depends on it",
                service.id
            )));
        }
        return Err(ApiError::Precondition(
            "the ingress network cannot be removed: hive makes it at swarm init and cannot \
             re-create it (no --ingress)"
                .into(),
        ));
    }
    if let Some(service) = services.iter().find(|s| attaches(&s.spec, &network.id)) {
        return Err(ApiError::Precondition(format!(
            "network {} is in use by service {}",
            network.id, service.id
        )));
    }
    let live_task = tx.list::<Task>()?.into_iter().find(|t| {
        !t.status.state.is_terminal() && t.networks.iter().any(|n| n.network_id == network.id)
    });
    if let Some(task) = live_task {
        return Err(ApiError::Precondition(format!(
            "network {} is in use by task {}",
            network.id, task.id
        )));
    }
    tx.delete::<Network>(&network.id)?;
    Ok(network.id)
}

fn attaches(spec: &ServiceSpec, network_id: &str) -> bool {
    spec.task_template
        .networks
        .iter()
        .any(|n| n.target == network_id)
}

fn publishes_ingress(service: &Service) -> bool {
    use crate::store::objects::PublishMode;
    let endpoint_ports = service.endpoint.iter().flat_map(|e| e.ports.iter());
    service
        .spec
        .endpoint_spec
        .ports
        .iter()
        .chain(endpoint_ports)
        .any(|p| p.publish_mode == PublishMode::Ingress)
}

/// Resolves a service's `--network` targets (ID, prefix or name) to network IDs, refusing
/// unknown networks, the ingress network and a network named twice. Run on create and update,
/// so the stored spec always holds IDs.
pub fn resolve_attachments(view: &impl ReadView, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    let mut seen: Vec<String> = Vec::new();
    for attachment in &mut spec.task_template.networks {
        let network = view.lookup::<Network>(&attachment.target)?;
        if network.spec.ingress {
            return Err(ApiError::Invalid(format!(
                "service cannot be explicitly attached to the ingress network \"{}\"",
                network.spec.annotations.name
            )));
        }
        if seen.contains(&network.id) {
            return Err(ApiError::Invalid(format!(
                "service cannot be attached to network \"{}\" twice",
                network.spec.annotations.name
            )));
        }
        seen.push(network.id.clone());
        attachment.target = network.id;
    }
    Ok(())
}

fn reply(view: &impl ReadView, query: &str) -> Result<pb::NetworkReply, ApiError> {
    let network = view.lookup::<Network>(query)?;
    Ok(pb::NetworkReply {
        network: Some((&network).into()),
    })
}

pub async fn create(
    manager: &Manager,
    request: pb::CreateNetworkRequest,
) -> Result<pb::NetworkReply, ApiError> {
    let spec = NetworkSpec::try_from(
        request
            .spec
            .ok_or(crate::api::convert::WireError::Missing("network spec"))?,
    )?;
    let _serial = manager.service_writes.lock().await;
    let id = manager.update(|tx| create_in(tx, &spec)).await?;
    tracing::info!(network = %id, name = %spec.annotations.name, "network created");
    manager.store.view(|tx| reply(tx, &id))
}

pub async fn remove(
    manager: &Manager,
    request: pb::RemoveNetworkRequest,
) -> Result<pb::RemoveNetworkResponse, ApiError> {
    let _serial = manager.service_writes.lock().await;
    let id = manager.update(|tx| remove_in(tx, &request.network)).await?;
    tracing::info!(network = %id, "network removed");
    Ok(pb::RemoveNetworkResponse { network_id: id })
}

pub async fn inspect(
    manager: &Manager,
    request: pb::InspectNetworkRequest,
) -> Result<pb::NetworkReply, ApiError> {
    manager.store.view(|tx| reply(tx, &request.network))
}

pub async fn list(
    manager: &Manager,
    _: pb::ListNetworksRequest,
) -> Result<pb::ListNetworksResponse, ApiError> {
    let networks = manager.store.view(|tx| tx.list::<Network>())?;
    Ok(pb::ListNetworksResponse {
        networks: networks.iter().map(pb::Network::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::allocator::networks::ensure_ingress;
    use crate::manager::controlapi::service_spec::tests::spec as service_spec;
    use crate::manager::controlapi::services;
    use crate::store::Store;
    use crate::store::objects::{Annotations, IpamConfig, NetworkAttachmentConfig, PortConfig};
    use crate::store::test_support::single_manager;

    fn net(name: &str) -> NetworkSpec {
        NetworkSpec {
            annotations: Annotations::named(name),
            ..NetworkSpec::default()
        }
    }

    fn with_subnet(name: &str, subnet: &str, gateway: &str, range: &str) -> NetworkSpec {
        let mut spec = net(name);
        spec.ipam
            .configs
            .push(IpamConfig::parse(subnet, range, gateway).unwrap());
        spec
    }

    /// The message of a config refused where it enters (its parse) or by [`validate`].
    fn refused(subnet: &str, gateway: &str, range: &str) -> String {
        match IpamConfig::parse(subnet, range, gateway) {
            Err(err) => ApiError::from(err).to_string(),
            Ok(config) => {
                let mut spec = net("b");
                spec.ipam.configs.push(config);
                invalid(&spec)
            }
        }
    }

    async fn create(store: &Store, spec: &NetworkSpec) -> Result<String, ApiError> {
        store.update(|tx| create_in(tx, spec)).await
    }

    fn invalid(spec: &NetworkSpec) -> String {
        match validate(spec) {
            Err(ApiError::Invalid(message)) => message,
            other => panic!("{spec:?} gave {other:?}"),
        }
    }

    #[test]
    fn validation_follows_dockers_rules() {
        validate(&net("backend")).unwrap();
        validate(&with_subnet(
            "b",
            "10.5.0.0/16",
            "10.5.0.254",
            "10.5.1.0/24",
        ))
        .unwrap();

        assert_eq!(invalid(&net("")), "a network needs a name");
        assert!(invalid(&net("a b")).contains("invalid network name"));
        let mut bridge = net("b");
        bridge.driver = "bridge".into();
        assert!(invalid(&bridge).starts_with("network driver \"bridge\" is not supported"));
        let mut ingress = net("b");
        ingress.ingress = true;
        assert!(invalid(&ingress).contains("--ingress is not supported"));
        let mut encrypted = net("b");
        encrypted
            .driver_options
            .insert("encrypted".into(), String::new());
        assert!(invalid(&encrypted).starts_with("option \"encrypted\""));
        let mut mtu = net("b");
        mtu.driver_options
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
        validate(&mtu).unwrap();

        assert_eq!(refused("10.5.0.0", "", ""), "invalid subnet 10.5.0.0");
        assert_eq!(
            refused("10.5.0.7/24", "", ""),
            "invalid subnet 10.5.0.7/24: it should be 10.5.0.0/24"
        );
        assert_eq!(
            refused("10.5.0.0/24", "10.6.0.1", ""),
            "no matching subnet for gateway 10.6.0.1"
        );
        assert_eq!(
            refused("10.5.0.0/24", "nope", ""),
            "invalid gateway address nope"
        );
        assert_eq!(
            refused("10.5.0.0/24", "", "10.6.0.0/25"),
            "ip-range 10.6.0.0/25 is not inside subnet 10.5.0.0/24"
        );
        assert_eq!(
            refused("", "10.5.0.1", ""),
            "every ip-range or gateway must have a corresponding subnet"
        );
        let mut two = with_subnet("b", "10.5.0.0/16", "", "");
        two.ipam
            .configs
            .push(IpamConfig::of_subnet("10.5.3.0/24".parse().unwrap()));
        assert!(invalid(&two).contains("overlaps"));
    }

    #[tokio::test]
    async fn create_refuses_duplicate_names_and_overlapping_subnets() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        store.update(ensure_ingress).await.unwrap();
        let id = create(&store, &net("backend")).await.unwrap();
        let stored = store.view(|tx| tx.lookup::<Network>("backend")).unwrap();
        assert_eq!(stored.id, id);
        assert_eq!(stored.spec.driver, "overlay");

        let err = create(&store, &net("backend")).await.unwrap_err();
        assert_eq!(err.to_string(), "network with name backend already exists");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::AlreadyExists);

        // ingress holds 10.0.0.0/24.
        let err = create(&store, &with_subnet("x", "10.0.0.0/16", "", ""))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Pool overlaps"), "{err}");
        assert!(err.to_string().contains("network ingress"), "{err}");
        create(&store, &with_subnet("x", "10.9.0.0/16", "", ""))
            .await
            .unwrap();
        let err = create(&store, &with_subnet("y", "10.9.4.0/24", "", ""))
            .await
            .unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::FailedPrecondition
        );
    }

    #[tokio::test]
    async fn services_attach_by_name_and_pin_networks_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        store.update(ensure_ingress).await.unwrap();
        let backend = create(&store, &net("backend")).await.unwrap();

        let attach = |target: &str| NetworkAttachmentConfig {
            target: target.into(),
            aliases: vec!["database".into()],
        };
        let mut db = service_spec("db", "hive/echo");
        db.task_template.networks = vec![attach("backend")];
        let db_id = store
            .update(|tx| services::create_in(tx, &db))
            .await
            .unwrap();
        let stored = store.view(|tx| tx.lookup::<Service>("db")).unwrap();
        assert_eq!(stored.spec.task_template.networks, vec![attach(&backend)]);

        let mut unknown = service_spec("api", "x");
        unknown.task_template.networks = vec![attach("nope")];
        let err = store
            .update(|tx| services::create_in(tx, &unknown))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "network nope not found");
        let mut ingress = service_spec("api", "x");
        ingress.task_template.networks = vec![attach("ingress")];
        let err = store
            .update(|tx| services::create_in(tx, &ingress))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service cannot be explicitly attached to the ingress network \"ingress\""
        );
        let mut twice = service_spec("api", "x");
        twice.task_template.networks = vec![attach("backend"), attach(&backend[..5])];
        assert!(
            store
                .update(|tx| services::create_in(tx, &twice))
                .await
                .is_err()
        );

        let err = store
            .update(|tx| remove_in(tx, "backend"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("network {backend} is in use by service {db_id}")
        );
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::FailedPrecondition
        );

        // The ingress network is never removed; a publishing service is named.
        let err = store
            .update(|tx| remove_in(tx, "ingress"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot be removed"), "{err}");
        let mut web = service_spec("web", "x");
        web.endpoint_spec.ports.push(PortConfig {
            published_port: 8080,
            target_port: 80,
            ..PortConfig::default()
        });
        let web_id = store
            .update(|tx| services::create_in(tx, &web))
            .await
            .unwrap();
        let err = store
            .update(|tx| remove_in(tx, "ingress"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("ingress network cannot be removed because service {web_id} depends on it")
        );

        store
            .update(|tx| services::remove_in(tx, "db"))
            .await
            .unwrap();
        let removed = store
            .update(|tx| remove_in(tx, &backend[..6]))
            .await
            .unwrap();
        assert_eq!(removed, backend);
        let err: ApiError = store
            .view(|tx| tx.lookup::<Network>("backend"))
            .unwrap_err()
            .into();
        assert_eq!(err.to_string(), "network backend not found");
    }
}

//! Leader-side secret and config operations (`hive secret|config ...`, docs/secrets.md), and
//! the check of a service's `--secret`/`--config` references. Both kinds follow one set of
//! rules, SwarmKit's (`manager/controlapi/secret.go`, `config.go`): a name of at most 64
//! `[a-zA-Z0-9-_.]` starting and ending alphanumeric, data of 1 byte to 500 KiB, only labels
//! may change, and no removal while a service names it.

use std::collections::BTreeSet;

use crate::api::convert::WireError;
use crate::api::{ApiError, pb};
use crate::manager::Manager;
use crate::store::objects::{
    Annotations, Config, ConfigSpec, ContainerSpec, FileReference, Secret, SecretSpec, Service,
    ServiceSpec, StoreObject,
};
use crate::store::{ReadView, WriteTx};

/// Docker's limit on a secret's or config's data (`MaxSecretSize`, `MaxConfigSize`).
pub const MAX_DATA_BYTES: usize = 500 * 1024;
/// Docker's limit on their names.
pub const MAX_NAME_LEN: usize = 64;

/// What secrets and configs share, for the operations below.
pub trait FileObject: StoreObject {
    /// `secret` or `config`, as the messages say.
    const WORD: &'static str;
    fn annotations(&self) -> &Annotations;
    fn annotations_mut(&mut self) -> &mut Annotations;
    fn data(&self) -> &[u8];
    /// The references to objects of this kind in a container spec.
    fn references(container: &ContainerSpec) -> &[FileReference];
    fn references_mut(container: &mut ContainerSpec) -> &mut Vec<FileReference>;
}

impl FileObject for Secret {
    const WORD: &'static str = "secret";
    fn annotations(&self) -> &Annotations {
        &self.spec.annotations
    }
    fn annotations_mut(&mut self) -> &mut Annotations {
        &mut self.spec.annotations
    }
    fn data(&self) -> &[u8] {
        &self.spec.data
    }
    fn references(container: &ContainerSpec) -> &[FileReference] {
        &container.secrets
    }
    fn references_mut(container: &mut ContainerSpec) -> &mut Vec<FileReference> {
        &mut container.secrets
    }
}

impl FileObject for Config {
    const WORD: &'static str = "config";
    fn annotations(&self) -> &Annotations {
        &self.spec.annotations
    }
    fn annotations_mut(&mut self) -> &mut Annotations {
        &mut self.spec.annotations
    }
    fn data(&self) -> &[u8] {
        &self.spec.data
    }
    fn references(container: &ContainerSpec) -> &[FileReference] {
        &container.configs
    }
    fn references_mut(container: &mut ContainerSpec) -> &mut Vec<FileReference> {
        &mut container.configs
    }
}

/// Docker's name rule: `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// SwarmKit's checks of a new object's name and data, in its words.
pub fn validate<T: FileObject>(object: &T) -> Result<(), ApiError> {
    let name = &object.annotations().name;
    if name.is_empty() {
        return Err(ApiError::Invalid("name must be provided".to_owned()));
    }
    if !valid_name(name) {
        return Err(ApiError::Invalid(format!(
            "invalid name, only {MAX_NAME_LEN} [a-zA-Z0-9-_.] characters allowed, and the start \
             and end character must be [a-zA-Z0-9]"
        )));
    }
    let size = object.data().len();
    if size == 0 || size > MAX_DATA_BYTES {
        return Err(ApiError::Invalid(format!(
            "{} data must be larger than 0 and less than {MAX_DATA_BYTES} bytes",
            T::WORD
        )));
    }
    Ok(())
}

/// Refuses a secret driver: hive keeps every secret in its own store.
pub fn check_driver(driver: &str) -> Result<(), ApiError> {
    if driver.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid(format!(
        "secret driver \"{driver}\" is not supported: hive keeps secrets in its own Raft store \
         (no secret driver plugins); leave --driver off"
    )))
}

/// Refuses config templating, which hive does not do.
pub fn check_templating(driver: &str) -> Result<(), ApiError> {
    if driver.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid(format!(
        "template driver \"{driver}\" is not supported: hive does not expand templates in \
         configs; leave --template-driver off"
    )))
}

/// Validates and stores a new secret or config; returns its ID.
pub fn create_in<T: FileObject>(tx: &mut WriteTx, object: T) -> Result<String, ApiError> {
    validate(&object)?;
    let name = object.annotations().name.clone();
    if tx.id_by_name(T::KIND, &name)?.is_some() {
        return Err(ApiError::AlreadyExists(format!(
            "{} {name} already exists",
            T::WORD
        )));
    }
    Ok(tx.create(object)?)
}

/// The names of the services that name the object `id` of kind `T`.
fn users<T: FileObject>(view: &impl ReadView, id: &str) -> Result<Vec<String>, ApiError> {
    Ok(view
        .list::<Service>()?
        .into_iter()
        .filter(|s| {
            T::references(&s.spec.task_template.container)
                .iter()
                .any(|r| r.id == id)
        })
        .map(|s| s.spec.annotations.name)
        .collect())
}

/// Deletes the object `query` names unless a service uses it (Docker's message). Returns its
/// ID.
pub fn remove_in<T: FileObject>(tx: &mut WriteTx, query: &str) -> Result<String, ApiError> {
    let object = tx.lookup::<T>(query)?;
    let users = users::<T>(&*tx, object.id())?;
    if !users.is_empty() {
        let services = if users.len() == 1 {
            "service"
        } else {
            "services"
        };
        return Err(ApiError::Invalid(format!(
            "{} '{}' is in use by the following {services}: {}",
            T::WORD,
            object.annotations().name,
            users.join(", ")
        )));
    }
    let id = object.id().to_owned();
    tx.delete::<T>(&id)?;
    Ok(id)
}

/// Changes the labels of the object `query` names, at `version`; any other change (the name,
/// the data) is refused as SwarmKit refuses it.
pub fn update_in<T: FileObject>(
    tx: &mut WriteTx,
    query: &str,
    version: u64,
    annotations: &Annotations,
    data: &[u8],
) -> Result<String, ApiError> {
    let mut object = tx.lookup::<T>(query)?;
    if annotations.name != object.annotations().name || (!data.is_empty() && data != object.data())
    {
        return Err(ApiError::Invalid(
            "only updates to Labels are allowed".to_owned(),
        ));
    }
    object.annotations_mut().labels = annotations.labels.clone();
    object.meta_mut().version = version;
    let id = object.id().to_owned();
    tx.update(object)?;
    Ok(id)
}

/// Resolves a service's secret and config references (ID, name or ID prefix) to IDs, fills
/// their defaults (target: the name; owner root; mode 0444) and refuses an unknown source
/// (Docker's `secret not found: x`) or a target named twice. Run on create and update, so the
/// stored spec always holds IDs.
pub fn resolve_references(view: &impl ReadView, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    resolve::<Secret>(view, &mut spec.task_template.container)?;
    resolve::<Config>(view, &mut spec.task_template.container)
}

fn resolve<T: FileObject>(
    view: &impl ReadView,
    container: &mut ContainerSpec,
) -> Result<(), ApiError> {
    let mut targets = BTreeSet::new();
    for reference in T::references_mut(container) {
        let source = if reference.name.is_empty() {
            reference.id.clone()
        } else {
            reference.name.clone()
        };
        let object = view
            .lookup::<T>(&source)
            .map_err(|_| ApiError::Invalid(format!("{} not found: {source}", T::WORD)))?;
        reference.id = object.id().to_owned();
        reference.name.clone_from(&object.annotations().name);
        let target = &mut reference.target;
        if target.name.is_empty() {
            target.name.clone_from(&reference.name);
        }
        if target.uid.is_empty() {
            target.uid = "0".to_owned();
        }
        if target.gid.is_empty() {
            target.gid = "0".to_owned();
        }
        if target.mode == 0 {
            target.mode = 0o444;
        }
        if target.mode > 0o7777 {
            return Err(ApiError::Invalid(format!(
                "invalid file mode {:o} for {} {}",
                target.mode,
                T::WORD,
                reference.name
            )));
        }
        for (what, id) in [("uid", &target.uid), ("gid", &target.gid)] {
            if id.parse::<u32>().is_err() {
                return Err(ApiError::Invalid(format!(
                    "invalid {what} {id:?} for {} {}: a number is needed",
                    T::WORD,
                    reference.name
                )));
            }
        }
        if target.name.contains('\0') || target.name.split('/').any(|part| part == "..") {
            return Err(ApiError::Invalid(format!(
                "invalid {} target {:?}: no NUL and no \"..\"",
                T::WORD,
                target.name
            )));
        }
        if !targets.insert(target.name.clone()) {
            return Err(ApiError::Invalid(format!(
                "duplicate {} target for {} not allowed",
                T::WORD,
                reference.name
            )));
        }
    }
    Ok(())
}

// ---- the API ----------------------------------------------------------------------------

/// The wire side of a secret or config: its spec and reply messages. The API operations below
/// are written once over it; the `pb` handlers only name the kind.
pub trait WireFile: FileObject + Clone {
    /// `secret spec` or `config spec`, for a request that lacks one.
    const SPEC: &'static str;
    type Spec;
    /// The object as the API shows it (a secret without its data).
    type Wire;
    type Reply;
    /// The object a create or update request asks for, refusing what hive does not do (a
    /// secret driver, config templating).
    fn accept(spec: Self::Spec) -> Result<Self, ApiError>;
    fn wire(&self) -> Self::Wire;
    fn reply(wire: Self::Wire) -> Self::Reply;
}

impl WireFile for Secret {
    const SPEC: &'static str = "secret spec";
    type Spec = pb::SecretSpec;
    type Wire = pb::Secret;
    type Reply = pb::SecretReply;
    fn accept(spec: pb::SecretSpec) -> Result<Self, ApiError> {
        check_driver(&spec.driver)?;
        Ok(Secret {
            spec: SecretSpec::from(spec),
            ..Secret::default()
        })
    }
    fn wire(&self) -> pb::Secret {
        crate::api::convert::secret_without_data(self)
    }
    fn reply(secret: pb::Secret) -> pb::SecretReply {
        pb::SecretReply {
            secret: Some(secret),
        }
    }
}

impl WireFile for Config {
    const SPEC: &'static str = "config spec";
    type Spec = pb::ConfigSpec;
    type Wire = pb::Config;
    type Reply = pb::ConfigReply;
    fn accept(spec: pb::ConfigSpec) -> Result<Self, ApiError> {
        check_templating(&spec.templating)?;
        Ok(Config {
            spec: ConfigSpec::from(spec),
            ..Config::default()
        })
    }
    fn wire(&self) -> pb::Config {
        self.into()
    }
    fn reply(config: pb::Config) -> pb::ConfigReply {
        pb::ConfigReply {
            config: Some(config),
        }
    }
}

fn reply_of<T: WireFile>(view: &impl ReadView, query: &str) -> Result<T::Reply, ApiError> {
    Ok(T::reply(view.lookup::<T>(query)?.wire()))
}

async fn create<T: WireFile>(
    manager: &Manager,
    spec: Option<T::Spec>,
) -> Result<T::Reply, ApiError> {
    let object = T::accept(spec.ok_or(WireError::Missing(T::SPEC))?)?;
    let name = object.annotations().name.clone();
    let id = manager.update(|tx| create_in(tx, object.clone())).await?;
    tracing::info!(kind = T::WORD, id = %id, name = %name, "created");
    manager.store.view(|tx| reply_of::<T>(tx, &id))
}

fn list<T: WireFile>(manager: &Manager) -> Result<Vec<T::Wire>, ApiError> {
    let objects = manager.store.view(|tx| tx.list::<T>())?;
    Ok(objects.iter().map(T::wire).collect())
}

async fn remove<T: WireFile>(manager: &Manager, query: &str) -> Result<String, ApiError> {
    let _serial = manager.service_writes.lock().await;
    let id = manager.update(|tx| remove_in::<T>(tx, query)).await?;
    tracing::info!(kind = T::WORD, id = %id, "removed");
    Ok(id)
}

async fn update<T: WireFile>(
    manager: &Manager,
    query: &str,
    version: u64,
    spec: Option<T::Spec>,
) -> Result<T::Reply, ApiError> {
    let wanted = T::accept(spec.ok_or(WireError::Missing(T::SPEC))?)?;
    let id = manager
        .update(|tx| update_in::<T>(tx, query, version, wanted.annotations(), wanted.data()))
        .await?;
    manager.store.view(|tx| reply_of::<T>(tx, &id))
}

pub async fn create_secret(
    manager: &Manager,
    request: pb::CreateSecretRequest,
) -> Result<pb::SecretReply, ApiError> {
    create::<Secret>(manager, request.spec).await
}

pub async fn list_secrets(
    manager: &Manager,
    _: pb::ListSecretsRequest,
) -> Result<pb::ListSecretsResponse, ApiError> {
    let secrets = list::<Secret>(manager)?;
    Ok(pb::ListSecretsResponse { secrets })
}

pub async fn inspect_secret(
    manager: &Manager,
    request: pb::InspectSecretRequest,
) -> Result<pb::SecretReply, ApiError> {
    manager
        .store
        .view(|tx| reply_of::<Secret>(tx, &request.secret))
}

pub async fn remove_secret(
    manager: &Manager,
    request: pb::RemoveSecretRequest,
) -> Result<pb::RemoveSecretResponse, ApiError> {
    let secret_id = remove::<Secret>(manager, &request.secret).await?;
    Ok(pb::RemoveSecretResponse { secret_id })
}

pub async fn update_secret(
    manager: &Manager,
    request: pb::UpdateSecretRequest,
) -> Result<pb::SecretReply, ApiError> {
    update::<Secret>(manager, &request.secret, request.version, request.spec).await
}

pub async fn create_config(
    manager: &Manager,
    request: pb::CreateConfigRequest,
) -> Result<pb::ConfigReply, ApiError> {
    create::<Config>(manager, request.spec).await
}

pub async fn list_configs(
    manager: &Manager,
    _: pb::ListConfigsRequest,
) -> Result<pb::ListConfigsResponse, ApiError> {
    let configs = list::<Config>(manager)?;
    Ok(pb::ListConfigsResponse { configs })
}

pub async fn inspect_config(
    manager: &Manager,
    request: pb::InspectConfigRequest,
) -> Result<pb::ConfigReply, ApiError> {
    manager
        .store
        .view(|tx| reply_of::<Config>(tx, &request.config))
}

pub async fn remove_config(
    manager: &Manager,
    request: pb::RemoveConfigRequest,
) -> Result<pb::RemoveConfigResponse, ApiError> {
    let config_id = remove::<Config>(manager, &request.config).await?;
    Ok(pb::RemoveConfigResponse { config_id })
}

pub async fn update_config(
    manager: &Manager,
    request: pb::UpdateConfigRequest,
) -> Result<pb::ConfigReply, ApiError> {
    update::<Config>(manager, &request.config, request.version, request.spec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::controlapi::service_spec::tests::spec as service_spec;
    use crate::manager::controlapi::services;
    use crate::store::objects::FileTarget;
    use crate::store::test_support::single_manager;

    fn secret(name: &str, data: &[u8]) -> Secret {
        Secret {
            spec: SecretSpec {
                annotations: Annotations::named(name),
                data: data.to_vec(),
            },
            ..Secret::default()
        }
    }

    fn invalid(object: &Secret) -> String {
        match validate(object) {
            Err(ApiError::Invalid(message)) => message,
            other => panic!("{object:?} gave {other:?}"),
        }
    }

    #[test]
    fn names_and_sizes_follow_dockers_rules() {
        for good in ["a", "db_password", "a.b-c_d", "A1", &"x".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "_a", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        validate(&secret("db", b"x")).unwrap();
        validate(&secret("db", &vec![7; MAX_DATA_BYTES])).unwrap();
        assert_eq!(invalid(&secret("", b"x")), "name must be provided");
        assert!(invalid(&secret("a b", b"x")).starts_with("invalid name, only 64"));
        assert_eq!(
            invalid(&secret("db", b"")),
            "secret data must be larger than 0 and less than 512000 bytes"
        );
        assert!(invalid(&secret("db", &vec![7; MAX_DATA_BYTES + 1])).contains("512000"));
        assert!(
            check_driver("vault")
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        check_driver("").unwrap();
        assert!(check_templating("golang").is_err());
    }

    #[tokio::test]
    async fn references_resolve_and_pin_secrets_until_unused() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let id = store
            .update(|tx| create_in(tx, secret("db_pw", b"hunter2")))
            .await
            .unwrap();
        let err = store
            .update(|tx| create_in(tx, secret("db_pw", b"other")))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "secret db_pw already exists");

        let reference = |name: &str| FileReference {
            name: name.into(),
            target: FileTarget {
                name: String::new(),
                uid: String::new(),
                gid: String::new(),
                mode: 0,
            },
            ..FileReference::default()
        };
        let mut web = service_spec("web", "hive/echo");
        web.task_template.container.secrets = vec![reference("nope")];
        let err = store
            .update(|tx| services::create_in(tx, &web))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "secret not found: nope");

        web.task_template.container.secrets = vec![reference("db_pw"), reference("db_pw")];
        let err = store
            .update(|tx| services::create_in(tx, &web))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("duplicate secret target"),
            "{err}"
        );

        web.task_template.container.secrets = vec![reference("db_pw")];
        store
            .update(|tx| services::create_in(tx, &web))
            .await
            .unwrap();
        let stored = store.view(|tx| tx.lookup::<Service>("web")).unwrap();
        let stored = &stored.spec.task_template.container.secrets[0];
        assert_eq!(stored.id, id);
        assert_eq!(
            stored.target,
            FileTarget {
                name: "db_pw".into(),
                ..FileTarget::default()
            }
        );

        let err = store
            .update(|tx| remove_in::<Secret>(tx, "db_pw"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret 'db_pw' is in use by the following service: web"
        );
        let err = store
            .update(|tx| update_in::<Secret>(tx, "db_pw", 0, &Annotations::named("db_pw"), b"new"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "only updates to Labels are allowed");

        store
            .update(|tx| services::remove_in(tx, "web"))
            .await
            .unwrap();
        assert_eq!(
            store
                .update(|tx| remove_in::<Secret>(tx, "db_pw"))
                .await
                .unwrap(),
            id
        );
    }
}

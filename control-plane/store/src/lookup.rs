//! Finding one object from what a user typed: a full ID, a name (a node's hostname) or an ID
//! prefix, in that order, as `docker node inspect` / `docker service inspect` resolve them.

use super::error::StoreError;
use super::objects::{ObjectKind, StoreObject};
use super::tx::ReadView;

/// A user's reference that does not pick exactly one object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no such {kind}: \"{query}\" (no {kind} has this ID, ID prefix or name; see `{}`)", list_command(*.kind))]
    NotFound { kind: ObjectKind, query: String },
    #[error(
        "{kind} \"{query}\" is ambiguous: matches {matches} {}; use the full ID",
        .kind.plural()
    )]
    Ambiguous {
        kind: ObjectKind,
        query: String,
        matches: usize,
    },
}

/// The command that lists objects of `kind`, for error messages.
fn list_command(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Node => "hive node ls",
        ObjectKind::Service => "hive service ls",
        ObjectKind::Task => "hive service ps",
        ObjectKind::Network => "hive network ls",
        ObjectKind::Cluster => "hive info",
        ObjectKind::Secret => "hive secret ls",
        ObjectKind::Config => "hive config ls",
    }
}

/// Resolves `query` to one object of type `T`: an exact ID wins; then a name (for nodes, the
/// node's name or hostname) if exactly one object has it; then an ID prefix if exactly one ID
/// starts with it. Each step reads only the objects it may match (a key, the `names` index, a
/// range of IDs), so a lookup costs the same in a cluster of any size.
pub(crate) fn lookup<T: StoreObject>(view: &impl ReadView, query: &str) -> Result<T, StoreError> {
    let not_found = || LookupError::NotFound {
        kind: T::KIND,
        query: query.to_owned(),
    };
    if query.is_empty() {
        return Err(not_found().into());
    }
    if let Some(object) = view.get::<T>(query)? {
        return Ok(object);
    }
    let ambiguous = |matches| LookupError::Ambiguous {
        kind: T::KIND,
        query: query.to_owned(),
        matches,
    };

    let mut by_name = view.find_by_name::<T>(query)?;
    match by_name.len() {
        0 => {}
        1 => return Ok(by_name.remove(0)),
        n => return Err(ambiguous(n).into()),
    }

    let mut by_prefix = view.with_id_prefix::<T>(query)?;
    match by_prefix.len() {
        0 => Err(not_found().into()),
        1 => Ok(by_prefix.remove(0)),
        n => Err(ambiguous(n).into()),
    }
}

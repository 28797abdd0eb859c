//! Which secrets and configs a node holds, per assignments stream (docs/secrets.md,
//! "Distribution"). Their data rides on the stream's messages: a secret goes to a node in the
//! message that assigns it the first task naming it, and the node is told to drop it in the
//! message after which none of its tasks names it. Nothing else ever sends it.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::pb;
use crate::store::objects::{Config, Secret};
use crate::store::{ReadView, Store};

/// What one stream has sent its node.
#[derive(Debug, Default)]
pub struct HeldFiles {
    /// Per task of the node: the secret and config IDs it names.
    refs: BTreeMap<String, (Vec<String>, Vec<String>)>,
    secrets: BTreeSet<String>,
    configs: BTreeSet<String>,
}

fn references(task: &pb::Task) -> (Vec<String>, Vec<String>) {
    let Some(container) = task.spec.as_ref().and_then(|s| s.container.as_ref()) else {
        return (Vec::new(), Vec::new());
    };
    let ids = |refs: &[pb::FileReference]| refs.iter().map(|r| r.id.clone()).collect();
    (ids(&container.secrets), ids(&container.configs))
}

impl HeldFiles {
    /// Adds to `message` the data of the secrets and configs its tasks newly need, and the
    /// IDs of those no task of the node names any more. A COMPLETE message starts afresh (the
    /// agent replaces what it holds).
    pub fn attach(
        &mut self,
        store: &Store,
        message: &mut pb::AssignmentsMessage,
    ) -> Result<(), crate::store::StoreError> {
        if message.kind() == pb::assignments_message::Kind::Complete {
            *self = Self::default();
        }
        for id in &message.remove_tasks {
            self.refs.remove(id);
        }
        for task in &message.update_tasks {
            // A task that ended needs its files no more.
            let ended = task
                .status
                .as_ref()
                .is_some_and(|s| s.state >= pb::TaskState::Complete as i32);
            let refs = if ended {
                (Vec::new(), Vec::new())
            } else {
                references(task)
            };
            if refs.0.is_empty() && refs.1.is_empty() {
                self.refs.remove(&task.id);
            } else {
                self.refs.insert(task.id.clone(), refs);
            }
        }
        let mut secrets = BTreeSet::new();
        let mut configs = BTreeSet::new();
        for (s, c) in self.refs.values() {
            secrets.extend(s.iter().cloned());
            configs.extend(c.iter().cloned());
        }
        let new_secrets: Vec<String> = secrets.difference(&self.secrets).cloned().collect();
        let new_configs: Vec<String> = configs.difference(&self.configs).cloned().collect();
        message.remove_secrets = self.secrets.difference(&secrets).cloned().collect();
        message.remove_configs = self.configs.difference(&configs).cloned().collect();
        if !new_secrets.is_empty() || !new_configs.is_empty() {
            store.view(|tx| {
                for id in &new_secrets {
                    if let Some(secret) = tx.get::<Secret>(id)? {
                        message.update_secrets.push(pb::FileData {
                            id: secret.id,
                            data: secret.spec.data,
                        });
                    }
                }
                for id in &new_configs {
                    if let Some(config) = tx.get::<Config>(id)? {
                        message.update_configs.push(pb::FileData {
                            id: config.id,
                            data: config.spec.data,
                        });
                    }
                }
                Ok::<_, crate::store::StoreError>(())
            })?;
        }
        self.secrets = secrets;
        self.configs = configs;
        Ok(())
    }

    /// Whether the message carries nothing for the node's files.
    pub fn is_empty_change(message: &pb::AssignmentsMessage) -> bool {
        message.update_secrets.is_empty()
            && message.remove_secrets.is_empty()
            && message.update_configs.is_empty()
            && message.remove_configs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, secrets: &[&str]) -> pb::Task {
        pb::Task {
            id: id.into(),
            spec: Some(pb::TaskSpec {
                container: Some(pb::ContainerSpec {
                    secrets: secrets
                        .iter()
                        .map(|s| pb::FileReference {
                            id: (*s).into(),
                            ..pb::FileReference::default()
                        })
                        .collect(),
                    ..pb::ContainerSpec::default()
                }),
                ..pb::TaskSpec::default()
            }),
            ..pb::Task::default()
        }
    }

    #[tokio::test]
    async fn data_goes_with_the_first_task_and_is_dropped_after_the_last() {
        use crate::store::objects::{Annotations, SecretSpec};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::test_support::single_manager(dir.path()).await;
        let id = store
            .update(|tx| {
                tx.create(Secret {
                    spec: SecretSpec {
                        annotations: Annotations::named("pw"),
                        data: b"hunter2".to_vec(),
                    },
                    ..Secret::default()
                })
            })
            .await
            .unwrap();
        let mut held = HeldFiles::default();
        let incremental = |update: Vec<pb::Task>, remove: Vec<String>| pb::AssignmentsMessage {
            kind: pb::assignments_message::Kind::Incremental.into(),
            update_tasks: update,
            remove_tasks: remove,
            ..pb::AssignmentsMessage::default()
        };
        let mut first = incremental(vec![task("t0", &[])], Vec::new());
        held.attach(&store, &mut first).unwrap();
        assert!(HeldFiles::is_empty_change(&first), "no task names it yet");

        let mut message = incremental(vec![task("t1", &[&id]), task("t2", &[&id])], Vec::new());
        held.attach(&store, &mut message).unwrap();
        assert_eq!(message.update_secrets.len(), 1);
        assert_eq!(message.update_secrets[0].data, b"hunter2");

        let mut message = incremental(Vec::new(), vec!["t1".into()]);
        held.attach(&store, &mut message).unwrap();
        assert!(HeldFiles::is_empty_change(&message), "t2 still names it");

        let mut message = incremental(vec![task("t2", &[])], Vec::new());
        held.attach(&store, &mut message).unwrap();
        assert_eq!(message.remove_secrets, vec![id.clone()]);
        assert!(message.update_secrets.is_empty());
    }
}

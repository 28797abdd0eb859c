//! What the leader assigned to this node, as the `Assignments` stream builds it up: this
//! node's tasks and the cluster's mesh view. The first message of a stream replaces it
//! (complete); every later one changes it in place ([`Assignment::apply`], [`receive`]), at
//! the cost of the change: the mesh view is one [`SharedView`] that the session changes and
//! the worker, the node's mesh and its resolver read, never a copy per message.

use crate::api::assignments as wire;
use crate::api::convert::WireError;
use crate::api::mesh_view::{MeshChanges, MeshTouched, MeshView};
use crate::api::pb;
use crate::executor::files::FileBytes;
use crate::store::objects::Task;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::watch;

/// The node's mesh view, held once and changed in place. A clone of the handle (of an
/// [`Assignment`]) shares it: whoever reads it sees the latest message applied, which may be
/// newer than the [`MeshJournal`] position it was handed with; what changed after that comes
/// with the next hand-over, so readers that follow the journal converge on every message.
/// A read guard is held only for synchronous work (never across an `.await`).
#[derive(Debug, Clone, Default)]
pub struct SharedView(Arc<RwLock<MeshView>>);

impl SharedView {
    pub fn read(&self) -> RwLockReadGuard<'_, MeshView> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, MeshView> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A view of its own (a test's, or one read elsewhere than from the stream).
impl From<MeshView> for SharedView {
    fn from(view: MeshView) -> Self {
        Self(Arc::new(RwLock::new(view)))
    }
}

impl PartialEq for SharedView {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.read() == *other.read()
    }
}

impl Eq for SharedView {}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// This node's tasks, sorted by ID.
    pub tasks: Vec<Task>,
    pub mesh: SharedView,
    pub files: HeldFiles,
    /// Store version the node's view is at.
    pub version: u64,
    /// What the last messages changed in `mesh`, so that the node's mesh looks only at that.
    pub mesh_journal: MeshJournal,
}

/// How many messages back [`MeshJournal`] remembers; a node's mesh further behind than that
/// (it never is: it follows every message) builds its state again from the whole view.
const JOURNAL_LEN: usize = 256;

/// A new number for every complete view, in this process (0: none).
static STREAMS: AtomicU64 = AtomicU64::new(1);

/// What each of the last messages of the stream touched in the mesh view
/// ([`MeshTouched`]), since its last complete view. A reader remembers the
/// [`MeshJournal::position`] it handled and asks what changed since
/// ([`MeshJournal::since`]): the worker hands over the whole assignment, and several messages
/// may arrive between two looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshJournal {
    /// Which complete view the changes build on (0: unknown).
    stream: u64,
    /// Messages of changes since that complete view.
    seq: u64,
    /// What the last of them touched, the newest last.
    entries: VecDeque<Arc<MeshTouched>>,
}

impl MeshJournal {
    fn record(&mut self, complete: bool, changes: &MeshChanges) {
        if complete || self.stream == 0 {
            *self = Self {
                stream: STREAMS.fetch_add(1, Ordering::Relaxed),
                ..Self::default()
            };
            return;
        }
        self.seq += 1;
        self.entries.push_back(Arc::new(MeshTouched::of(changes)));
        if self.entries.len() > JOURNAL_LEN {
            self.entries.pop_front();
        }
    }

    /// Where the journal is: pass it to [`Self::since`] later.
    pub fn position(&self) -> (u64, u64) {
        (self.stream, self.seq)
    }

    /// What changed since `from` (an earlier [`Self::position`]); `None` when that is not
    /// known (another complete view since, too far back, or no journal at all): look at
    /// the whole view.
    pub fn since(&self, from: (u64, u64)) -> Option<MeshTouched> {
        let (stream, seq) = from;
        if self.stream == 0 || stream != self.stream || seq > self.seq {
            return None;
        }
        let back = usize::try_from(self.seq - seq).ok()?;
        if back > self.entries.len() {
            return None;
        }
        let mut touched = MeshTouched::default();
        for entry in self.entries.iter().skip(self.entries.len() - back) {
            touched.merge(entry);
        }
        Some(touched)
    }
}

/// One decoded message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentChange {
    /// A complete view: replaces everything held.
    pub complete: bool,
    pub version: u64,
    pub update_tasks: Vec<Task>,
    pub remove_tasks: Vec<String>,
    pub mesh: MeshChanges,
    /// The secrets and configs the node's tasks name (docs/secrets.md).
    pub files: FileChanges,
}

/// Secrets and configs added or dropped by one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub update_secrets: Vec<(String, FileBytes)>,
    pub remove_secrets: Vec<String>,
    pub update_configs: Vec<(String, FileBytes)>,
    pub remove_configs: Vec<String>,
}

/// The data of the secrets and configs this node's tasks name, by ID: in memory only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldFiles {
    pub secrets: BTreeMap<String, FileBytes>,
    pub configs: BTreeMap<String, FileBytes>,
}

impl HeldFiles {
    fn apply(&mut self, changes: FileChanges) {
        for id in &changes.remove_secrets {
            self.secrets.remove(id);
        }
        for id in &changes.remove_configs {
            self.configs.remove(id);
        }
        self.secrets.extend(changes.update_secrets);
        self.configs.extend(changes.update_configs);
    }
}

fn file_data(data: Vec<pb::FileData>) -> Vec<(String, FileBytes)> {
    data.into_iter()
        .map(|d| (d.id, FileBytes(Arc::new(d.data))))
        .collect()
}

impl AssignmentChange {
    /// Decodes a whole message before anything is applied: a message that does not decode
    /// changes nothing.
    pub fn decode(message: pb::AssignmentsMessage) -> Result<Self, WireError> {
        let complete = message.kind() == pb::assignments_message::Kind::Complete;
        let mesh = message.mesh.unwrap_or_default();
        let files = FileChanges {
            update_secrets: file_data(message.update_secrets),
            remove_secrets: message.remove_secrets,
            update_configs: file_data(message.update_configs),
            remove_configs: message.remove_configs,
        };
        Ok(Self {
            files,
            complete,
            version: message.version,
            update_tasks: message
                .update_tasks
                .into_iter()
                .map(Task::try_from)
                .collect::<Result<_, _>>()?,
            remove_tasks: message.remove_tasks,
            mesh: wire::mesh_changes_of(mesh)?,
        })
    }
}

impl Assignment {
    /// Applies one message of the stream: a complete one replaces what is held, an
    /// incremental one changes only what it names.
    pub fn apply(&mut self, change: AssignmentChange) {
        let AssignmentChange {
            complete,
            version,
            update_tasks,
            remove_tasks,
            mesh,
            files,
        } = change;
        if complete {
            *self = Self::default();
        }
        self.version = version;
        for id in &remove_tasks {
            if let Ok(at) = self.tasks.binary_search_by(|t| t.id.cmp(id)) {
                self.tasks.remove(at);
            }
        }
        for task in update_tasks {
            match self.tasks.binary_search_by(|t| t.id.cmp(&task.id)) {
                Ok(at) => self.tasks[at] = task,
                Err(at) => self.tasks.insert(at, task),
            }
        }
        self.mesh_journal.record(complete, &mesh);
        self.mesh.write().apply(mesh);
        self.files.apply(files);
    }
}

/// Applies one message of the stream to the assignment `slot` holds, in place, and tells its
/// readers (the worker). Nothing of the size of the cluster is copied: the assignment is
/// copied only if a reader still holds the previous one (its tasks and a handle on the same
/// view), and the view never is.
pub fn receive(slot: &watch::Sender<Option<Arc<Assignment>>>, change: AssignmentChange) {
    slot.send_modify(|held| Arc::make_mut(held.get_or_insert_default()).apply(change));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::mesh_view::MeshNode;

    fn task(id: &str) -> Task {
        Task {
            id: id.into(),
            ..Task::default()
        }
    }

    #[test]
    fn a_complete_view_replaces_and_a_delta_changes_only_what_it_names() {
        let mut held = Assignment::default();
        let node = |id: &str| MeshNode {
            id: id.into(),
            ..MeshNode::default()
        };
        held.apply(AssignmentChange {
            files: Default::default(),
            complete: true,
            version: 10,
            update_tasks: vec![task("b"), task("a")],
            remove_tasks: Vec::new(),
            mesh: MeshChanges {
                update_nodes: vec![node("n1"), node("n2")],
                ..MeshChanges::default()
            },
        });
        held.apply(AssignmentChange {
            files: Default::default(),
            complete: false,
            version: 12,
            update_tasks: vec![task("c")],
            remove_tasks: vec!["a".into()],
            mesh: MeshChanges::default(),
        });
        let ids: Vec<_> = held.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(
            held.mesh.read().nodes.len(),
            2,
            "the mesh was not named: unchanged"
        );
        assert_eq!(held.version, 12);

        // A reconnect: the complete view is all there is.
        held.apply(AssignmentChange {
            files: Default::default(),
            complete: true,
            version: 20,
            update_tasks: vec![task("d")],
            remove_tasks: Vec::new(),
            mesh: MeshChanges::default(),
        });
        assert_eq!(held.tasks, vec![task("d")]);
        assert!(held.mesh.read().nodes.is_empty());
    }
}

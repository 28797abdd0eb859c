//! The agent: what every node runs to take part in the swarm — its session with the leader's
//! dispatcher (`session`), the tasks it runs through the executor (`worker`, `task_runner`),
//! and the mesh it programs from the leader's
//! [`MeshView`](crate::api::mesh_view::MeshView) (`mesh_state`, `mesh_build`), with the
//! resolver its tasks ask for service names (`dns`).
//! docs/agent.md tells the whole story.

pub mod assignment;
pub mod dataplane;
pub mod dns;
pub mod health;
pub mod mesh;
pub mod mesh_build;
pub mod mesh_link;
pub mod mesh_state;
pub mod session;
pub mod status;
pub mod task_runner;
pub mod worker;

pub use session::{Session, SessionEvent};

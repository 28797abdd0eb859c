//! The agent: what every node runs to take part in the swarm. For now its session with the
//! leader's dispatcher (`session`); the executor and assignments come with later issues
//! (docs/control-plane.md, "For later issues").

pub mod session;

pub use session::{Session, SessionEvent};

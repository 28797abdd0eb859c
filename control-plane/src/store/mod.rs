//! The cluster store: the managers' replicated, durable state (nodes, services, tasks,
//! networks, cluster settings). This first part is the object model and its IDs.

mod ids;

pub mod objects;

pub use ids::{ID_LEN, is_valid_id, new_id};

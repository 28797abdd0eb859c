//! The names `hive mesh stats` and `hive mesh trace` show services and backends by: those
//! of `service ps` (`web`, `web.3`, `agent.<node ID>`), asked of a manager. The data
//! plane's own records hold Swarm IDs only (they are read straight from the pinned maps,
//! with no daemon needed), so without a manager to ask, or with `--no-trunc`, the IDs are
//! shown.

use std::path::PathBuf;
use std::time::Duration;

use hive_dataplane::node_pins::{NodeChoice, PinsQuery};
use hive_dataplane::stats::DisplayNames;
use hive_lab::naming;

use crate::agent::mesh_state::host_mesh_id;
use crate::cli::service::render::task_name;
use crate::client::{ClientError, DaemonClient, TaskFilter, TaskList};

/// How long one daemon may take to answer before the next one is asked.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Every service's and task's name, as the manager behind `client` knows them.
pub async fn from_manager(client: &mut DaemonClient) -> Result<DisplayNames, ClientError> {
    let TaskList {
        tasks,
        service_names,
        ..
    } = client.control.list_tasks(TaskFilter::default()).await?;
    let mut names = DisplayNames::default();
    for (id, name) in &service_names {
        names.services.insert(id.clone(), name.clone());
        // A service's host-mode ports are a mesh service of their own.
        names.services.insert(host_mesh_id(id), host_mesh_id(name));
    }
    for task in &tasks {
        names
            .tasks
            .insert(task.id.clone(), task_name(task, &service_names));
    }
    Ok(names)
}

/// The daemons that may answer for the nodes read: this node's (inside `hive lab exec`, or
/// the default socket), then every node of `lab`'s.
fn candidates(lab: Option<&str>) -> Vec<PathBuf> {
    let mut sockets: Vec<PathBuf> = crate::client::socket_path(None).into_iter().collect();
    if let Some(lab) = lab {
        let nodes = PinsQuery {
            lab: Some(lab.to_owned()),
            pin_dir: None,
            nodes: NodeChoice::All,
        }
        .resolve()
        .unwrap_or_default();
        sockets.extend(
            nodes
                .iter()
                .filter_map(|n| n.name.parse().ok())
                .map(|member| naming::api_socket(lab, member)),
        );
    }
    sockets.dedup();
    sockets
}

/// The names to show, from the first manager that answers; `None` (said on stderr by the
/// caller) if none does.
pub fn lookup(lab: Option<&str>) -> Option<DisplayNames> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        for socket in candidates(lab) {
            if !socket.exists() {
                continue;
            }
            let host = format!("unix://{}", socket.display());
            let asked = tokio::time::timeout(ASK_TIMEOUT, async {
                let mut client = DaemonClient::connect(Some(&host)).await.ok()?;
                from_manager(&mut client).await.ok()
            })
            .await;
            if let Ok(Some(names)) = asked {
                return Some(names);
            }
        }
        None
    })
}

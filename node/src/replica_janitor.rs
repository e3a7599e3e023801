//! Closing replicas a removal left behind on this node (see `raft::orphans`): a node that was
//! out of reach while one of its replicas was removed finds out from the placement record,
//! every [`CHECK_EVERY`], and wipes the replica.

use std::sync::Arc;
use std::time::Duration;

use crate::server::Server;

/// How often the placement record is read. An orphan costs disk and memory, not
/// correctness, so there is no hurry.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// How long one check may take (the metadata group may be down) before it waits for the
/// next.
const CHECK_WAIT: Duration = Duration::from_secs(10);

/// Checks for orphaned replicas, and closes them, until shutdown.
pub async fn run(server: Arc<Server>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = server.shutting_down() => break,
        }
        let checked = tokio::select! {
            checked = tokio::time::timeout(CHECK_WAIT, server.groups.close_orphans()) => checked,
            _ = server.shutting_down() => break,
        };
        match checked {
            Ok(Ok(closed)) if !closed.is_empty() => {
                tracing::info!(?closed, "closed replicas the cluster had removed");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "orphaned replicas not checked"),
            Err(_) => tracing::debug!("orphaned replicas not checked in time"),
        }
    }
}

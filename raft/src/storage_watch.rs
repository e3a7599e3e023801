//! Noticing that a group stopped because its storage failed.
//!
//! openraft stops a group for good when its log store or state machine reports an error (a
//! full disk, a failed fsync): the group then takes no write until the node restarts, while
//! the node around it still answers PING. Since every group of a node shares one log store,
//! the others follow at their next write. The node is better stopped, as etcd and TiKV do on a
//! failed write: its peers take over its groups, and whoever supervises it restarts it once
//! its disk is fixed (an fsync that failed cannot be retried: the page cache no longer says
//! what reached the disk). This watch tells the node when.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::Fatal;
use tokio::sync::watch;

use crate::groups::{Rounds, Shared};
use crate::typ::Raft;

/// How often the groups are checked: metrics are read, never waited on (they change with
/// every write).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checks the groups in `rafts` until one has stopped on a storage error or a panic, then
/// records why in `failed`; ends then, or once `stop` is set.
pub(crate) async fn run(
    rafts: Shared<Vec<Option<Raft>>>,
    failed: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rounds = Rounds::every(CHECK_EVERY);
    while let Some(current) = rounds.next(&rafts, &mut stop).await {
        for (group, raft) in current.iter().enumerate() {
            let Some(raft) = raft else { continue };
            let error = match &raft.metrics().borrow_watched().running_state {
                Err(error @ (Fatal::StorageError(_) | Fatal::Panicked)) => error.to_string(),
                // Running, or stopped on purpose (a replica closed, the node stopping).
                Ok(()) | Err(Fatal::Stopped) => continue,
            };
            tracing::error!(group, %error, "raft group stopped by a storage failure");
            failed.send_replace(Some(format!("group {group}: {error}")));
            return;
        }
    }
}

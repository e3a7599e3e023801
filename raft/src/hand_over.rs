//! Handing a group's leadership from this node to a follower, without leaving the group stuck
//! when the follower cannot take it.
//!
//! Once openraft's leader starts a transfer it takes no more writes (it forwards them to the
//! target), stops its heartbeats, and never cancels: if the target died, is stopping, or was
//! cut off, the group takes no write until the other followers' leases lapse and one of them
//! is elected, the leader lease plus an election timeout later (~3 s). Both of this node's own
//! transfers race against exactly that: the leader balancer sees a node acknowledge and hands it a group just
//! as it stops, and a stopping node may hand its groups to a follower that just died. So a
//! transfer that did not happen within [`TRANSFER_TAKEN`] is redirected to the live follower
//! that is most caught up (openraft lets a transferring leader pick a new target). A follower
//! that refuses because it is stopping is passed over at once, and no longer chosen.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;

use crate::stopping_peers::StoppingPeers;
use crate::typ::{GroupId, NodeId, Raft, TypeConfig};

/// How long a transfer may take before the group is handed to another follower instead: one
/// takes ~10 ms (a vote round between two nodes). Should the first target campaign late anyway,
/// the leader's own vote decides between the two candidates: no split vote.
pub(crate) const TRANSFER_TAKEN: Duration = Duration::from_millis(500);

/// A follower counts as live if it acknowledged this leader this recently: an idle follower
/// answers a heartbeat every 800 ms, or a little later.
pub(crate) const LIVE_ACK: Duration = Duration::from_secs(2);

/// Whether `node` acknowledged this leader's heartbeat less than `recent` ago (false when this
/// node does not lead).
pub(crate) fn acked_within(
    metrics: &openraft::RaftMetrics<TypeConfig>,
    node: NodeId,
    recent: Duration,
) -> bool {
    metrics
        .heartbeat
        .as_ref()
        .and_then(|acks| acks.get(&node).cloned().flatten())
        .is_some_and(|at| openraft::Instant::elapsed(&*at) < recent)
}

/// The follower of the group `raft` leads here that matched the most of its log, among those
/// that acknowledged it within [`LIVE_ACK`] and are not known to be stopping, other than
/// `except`.
pub(crate) fn live_follower(
    raft: &Raft,
    stopping: &StoppingPeers,
    node_id: NodeId,
    except: Option<NodeId>,
) -> Option<NodeId> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    metrics.replication.as_ref().and_then(|replication| {
        replication
            .iter()
            .filter(|(id, _)| **id != node_id && Some(**id) != except)
            .filter(|(id, _)| !stopping.is_stopping(**id))
            .filter(|(id, _)| acked_within(&metrics, **id, LIVE_ACK))
            .max_by_key(|(_, matched)| matched.as_ref().map(|log_id| log_id.index))
            .map(|(id, _)| *id)
    })
}

/// How a transfer to one follower went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// Leadership left this node.
    Taken,
    /// The follower is stopping and refused it.
    Refused,
    /// Not taken in [`TRANSFER_TAKEN`], or not started.
    NotTaken,
}

/// Hands `group`, which this node leads, to `to`; if this node still leads it after
/// [`TRANSFER_TAKEN`], or as soon as `to` refuses it because it is stopping, to the most
/// caught-up live follower other than `to`. Returns whether leadership left this node.
pub(crate) async fn hand_over(
    raft: &Raft,
    stopping: &StoppingPeers,
    node_id: NodeId,
    group: GroupId,
    to: NodeId,
) -> bool {
    let refused = match transfer(raft, stopping, node_id, group, to).await {
        Transfer::Taken => return true,
        Transfer::Refused => true,
        Transfer::NotTaken => false,
    };
    let instead = live_follower(raft, stopping, node_id, Some(to));
    match (instead, refused) {
        // Every node stopping at once (a whole cluster shut down): nobody is left to lead.
        (None, true) if stopping.is_stopping(node_id) => {
            tracing::info!(
                group,
                to,
                "not handing the group off: its followers are stopping too"
            );
        }
        (None, true) => tracing::warn!(
            group,
            to,
            "leader transfer refused by a stopping follower; the group waits for an election"
        ),
        (None, false) => tracing::warn!(
            group,
            to,
            "leader transfer not taken; the group waits for an election"
        ),
        (Some(instead), true) => tracing::info!(
            group,
            to,
            instead,
            "leader transfer refused by a stopping follower; handing the group to another"
        ),
        (Some(instead), false) => tracing::warn!(
            group,
            to,
            instead,
            "leader transfer not taken in time; handing the group to another follower"
        ),
    }
    let Some(instead) = instead else {
        return false;
    };
    transfer(raft, stopping, node_id, group, instead).await == Transfer::Taken
}

/// Starts a transfer of `group` to `to` and waits up to [`TRANSFER_TAKEN`] for leadership to
/// leave this node, or for `to` to refuse it.
async fn transfer(
    raft: &Raft,
    stopping: &StoppingPeers,
    node_id: NodeId,
    group: GroupId,
    to: NodeId,
) -> Transfer {
    // Once started, openraft's transfer cannot be taken back: never start one that is refused.
    if stopping.is_stopping(to) {
        return Transfer::Refused;
    }
    if let Err(error) = raft.trigger().transfer_leader(to).await {
        tracing::warn!(group, to, %error, "leader transfer failed");
        return Transfer::NotTaken;
    }
    let wait = raft.wait(Some(TRANSFER_TAKEN));
    let left = wait.metrics(
        |metrics| metrics.current_leader != Some(node_id),
        "leadership left this node",
    );
    tokio::select! {
        biased;
        left = left => if left.is_ok() { Transfer::Taken } else { Transfer::NotTaken },
        () = stopping.stopping(to) => Transfer::Refused,
    }
}

//! Replicas a removal left behind.
//!
//! Removing a replica demotes it, asks its node to close it, and drops it from the
//! membership. A node that could not be reached for the whole close step (down, cut off)
//! keeps its replica: stuck on the last configuration it received, which may still list it
//! as a voter, reopened from disk at every restart, and never told otherwise (a group does
//! not replicate to nodes outside its membership). Such a replica holds disk and memory for
//! nothing, and refuses an ordinary close because it believes it votes.
//!
//! The placement record settles it: each group's leader records its committed membership,
//! versioned by the membership entry's log id. A replica whose own membership lists this
//! node, while the record holds a newer committed membership that does not, was removed: no
//! quorum of the group counts on it, so wiping it loses nothing acknowledged.

use openraft::async_runtime::watch::WatchReceiver;

use crate::groups::Groups;
use crate::placement_record::RecordedReplicas;
use crate::replicas::{ReplicaCall, ReplicaError, ReplicaReply};
use crate::typ::{GroupId, NodeId, Raft};

impl Groups {
    /// Closes and wipes this node's replicas that the placement record shows removed.
    /// Returns the groups closed.
    pub async fn close_orphans(&self) -> Result<Vec<GroupId>, ReplicaError> {
        let ReplicaReply::Placement(record) = self.ask_meta_leader(ReplicaCall::Placement).await?
        else {
            return Ok(Vec::new());
        };
        let mut closed = Vec::new();
        for recorded in &record {
            if self.raft(recorded.group).is_some() && self.close_orphan(recorded).await? {
                closed.push(recorded.group);
            }
        }
        Ok(closed)
    }

    /// Closes this node's replica of `recorded.group` if `recorded` removed it (see the
    /// module's doc). Returns whether it did.
    async fn close_orphan(&self, recorded: &RecordedReplicas) -> Result<bool, ReplicaError> {
        let group = recorded.group;
        let me = self.node_id();
        if recorded.voters.contains(&me) || recorded.learners.contains(&me) {
            return Ok(false);
        }
        let _step = self.step(group).await?;
        let Some(raft) = self.raft(group) else {
            return Ok(false);
        };
        let before = own_membership(&raft, me);
        // A replica whose membership does not list this node is being added (it has not
        // received the configuration with it yet), not left behind.
        let Some(version) = before.filter(|version| *version < recorded.version) else {
            return Ok(false);
        };
        tracing::warn!(
            group,
            own = ?version,
            recorded = ?recorded.version,
            "closing a replica the group removed while this node was out of reach"
        );
        self.unregister(group);
        if let Err(error) = raft.shutdown().await {
            tracing::warn!(group, %error, "closing replica did not stop cleanly");
        }
        // A configuration that arrived after the check (the node added again) keeps it.
        if own_membership(&raft, me) != before {
            self.open_raft(group, self.config_of(group))
                .await
                .map_err(|e| ReplicaError::Raft {
                    group,
                    message: e.to_string(),
                })?;
            return Ok(false);
        }
        self.wipe_replica(group).await?;
        Ok(true)
    }
}

/// The version (term, index) of the replica's membership, if that membership lists `me`.
fn own_membership(raft: &Raft, me: NodeId) -> Option<(u64, u64)> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    let stored = &metrics.membership_config;
    let membership = stored.membership();
    let listed =
        membership.voter_ids().any(|id| id == me) || membership.learner_ids().any(|id| id == me);
    let log_id = stored.log_id().as_ref()?;
    listed.then_some((log_id.leader_id.term, log_id.index))
}

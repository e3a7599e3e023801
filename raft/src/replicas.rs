//! Changing which nodes replicate a group, one raft membership step at a time.
//!
//! A replica is added as a learner, promoted to voter once it has caught up (openraft commits
//! the joint configuration, then the new one), and removed in the reverse order: demoted to
//! learner (joint consensus again, while it still receives the log), closed on its node (its
//! raft stopped, its log and keyspace wiped, the group marked retired so a restart does not
//! bring it back), and finally dropped from the membership. A leader is never removed: its
//! leadership is transferred first.
//!
//! Every step checks where the group already is and does nothing when the step is done, so a
//! coordinator that died can simply be retried, by itself or by anyone else, and the change
//! completes; a joint configuration left behind by a leader that died is finished by the next
//! step. Each node runs one step of a group at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::groups::Groups;
use crate::hand_over::hand_over;
use crate::typ::{GroupId, NodeAddr, NodeId, Raft, TypeConfig};

/// A learner is promoted once it is at most this many entries behind the leader's log: the
/// rest arrives within milliseconds, so the group keeps committing while the new voter
/// counts towards its quorum.
pub const CATCH_UP_SLACK: u64 = 256;

/// How long a leadership transfer may take before the step reports failure (and can be
/// retried).
const TRANSFER_WAIT: Duration = Duration::from_secs(10);

/// One membership step, or a question about a group's replicas, as the admin API and
/// coordinators send it to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaCall {
    /// The group's replicas as the receiving node sees them.
    Replicas { group: GroupId },
    /// Start a (new, empty) replica of the group on the receiving node.
    Open { group: GroupId },
    /// Leader: add `node` as a learner, replicated to but not voting.
    AddLearner {
        group: GroupId,
        node: NodeId,
        addr: NodeAddr,
    },
    /// Leader: make learner `node` a voter, once it caught up.
    Promote { group: GroupId, node: NodeId },
    /// Leader: make voter `node` a learner.
    Demote { group: GroupId, node: NodeId },
    /// Stop and wipe the receiving node's replica, which must no longer vote.
    Close { group: GroupId },
    /// Leader: drop learner `node` from the membership.
    RemoveLearner { group: GroupId, node: NodeId },
    /// Leader: hand leadership to voter `to`.
    TransferLeadership { group: GroupId, to: NodeId },
    /// Keep leading the group once given it: the leader balancer leaves it alone.
    Pin { group: GroupId },
    /// Every node the receiving node knows of (see `Groups::members`).
    Members,
    /// Metadata leader: register node `id` at `addr` (see `node_registry`).
    RegisterNode { id: NodeId, addr: NodeAddr },
    /// Metadata leader: retire node `id`; its id is never used again.
    RetireNode { id: NodeId },
    /// Metadata leader: the node registry.
    Registry,
    /// Leader: the group's slot state.
    Slots { group: GroupId },
    /// Leader: a page of the keys of `slots`, which the group handed over, from `from` (an
    /// index into `slots` and the keys of that slot to skip).
    ExportSlots {
        group: GroupId,
        slots: Vec<u16>,
        from: (u32, u64),
    },
    /// Leader: a step of a slot move, through the group's log.
    SlotStep {
        group: GroupId,
        op: crate::request::SlotOp,
    },
    /// Metadata leader: the slot map.
    SlotMap,
    /// Metadata leader: record that `group` owns `slots` in the slot map.
    RecordSlots { slots: Vec<u16>, group: GroupId },
    /// Metadata leader: record these groups' committed memberships (where newer).
    RecordPlacement(Vec<crate::placement_record::RecordedReplicas>),
    /// Metadata leader: the placement record.
    Placement,
    /// The cluster's static shape (members, groups, replicas), for a node joining by seeds.
    Shape,
}

/// What a node answers to a [`ReplicaCall`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaReply {
    Done,
    Replicas(GroupReplicas),
    Members(BTreeMap<NodeId, NodeAddr>),
    Registry(Vec<crate::node_registry::RegisteredNode>),
    Slots(crate::slot_calls::GroupSlots),
    Page(crate::slot_calls::SlotPage),
    Count(u64),
    SlotMap(crate::slot_map::SlotMap),
    Placement(Vec<crate::placement_record::RecordedReplicas>),
    Shape(ClusterShape),
}

/// What every node of a cluster was started with, and a node that joins must start with too:
/// the static member list, the number of slot groups and the replicas per group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterShape {
    pub members: BTreeMap<NodeId, NodeAddr>,
    pub groups: u32,
    pub replicas: usize,
}

/// A group's replicas as one node sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReplicas {
    pub group: GroupId,
    /// The node that answered.
    pub seen_by: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Voters of every configuration in force (two while a change is joint).
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// A change is half done: old and new voters must both agree.
    pub joint: bool,
    /// Every replica's address.
    pub nodes: BTreeMap<NodeId, NodeAddr>,
    pub last_log_index: u64,
    pub last_applied: u64,
    /// The log index each replica is known to hold (known by the leader only).
    pub matched: BTreeMap<NodeId, u64>,
    /// Keys the answering replica holds for the group (expired ones not yet removed included).
    pub keys: u64,
    /// The memory those keys use, as the answering replica last estimated it (0 until it
    /// measured: a node measures the groups it leads).
    pub bytes: u64,
    /// The group's slots as the answering replica has applied them.
    pub slots: crate::slot_calls::GroupSlots,
    /// This is the metadata group (the one after the slot groups), not a slot group.
    pub metadata: bool,
}

/// Why a membership step was not taken. Every such step may be retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ReplicaError {
    #[error("there is no group {0}")]
    NoSuchGroup(GroupId),
    #[error("group {0} has a single replica: its membership is fixed")]
    SoleVoter(GroupId),
    #[error("group {0} does not run on this node")]
    NotHere(GroupId),
    #[error("this node does not lead group {group} (leader: {leader:?})")]
    NotLeader {
        group: GroupId,
        leader: Option<NodeId>,
    },
    #[error("node {node} is not a replica of group {group}")]
    NotReplica { group: GroupId, node: NodeId },
    #[error("node {node} leads group {group}: transfer its leadership first")]
    RemovingLeader { group: GroupId, node: NodeId },
    #[error("node {node} still votes in group {group}")]
    StillVoter { group: GroupId, node: NodeId },
    #[error("node {node} holds group {group}'s log up to {matched} of {last}: not caught up yet")]
    CatchingUp {
        group: GroupId,
        node: NodeId,
        matched: u64,
        last: u64,
    },
    #[error("leadership of group {group} did not move to node {to}")]
    NotTransferred { group: GroupId, to: NodeId },
    #[error("group {group}: {message}")]
    Raft { group: GroupId, message: String },
    #[error("node id {node} cannot be registered: {why}")]
    NodeIdUsed { node: NodeId, why: String },
    #[error("the node is stopping")]
    Stopping,
    #[error("group {group} refused the slot step: {why}")]
    SlotRefused { group: GroupId, why: String },
    #[error("node {node} is still placed in groups {groups:?} (as the placement record shows)")]
    StillPlaced { node: NodeId, groups: Vec<GroupId> },
}

impl ReplicaError {
    /// Returns true if the same step, sent again a little later, may succeed: the group was
    /// busy, electing, or catching up.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReplicaError::NotLeader { .. }
                | ReplicaError::CatchingUp { .. }
                | ReplicaError::NotTransferred { .. }
                | ReplicaError::Raft { .. }
                | ReplicaError::StillPlaced { .. }
        )
    }
}

type WriteError = RaftError<TypeConfig, ClientWriteError<TypeConfig>>;

fn write_error(group: GroupId, error: WriteError) -> ReplicaError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ReplicaError::NotLeader {
                group,
                leader: forward.leader_id,
            }
        }
        other => ReplicaError::Raft {
            group,
            message: other.to_string(),
        },
    }
}

/// The replicas of `group` as `raft`'s latest metrics show them.
fn replicas_of(group: GroupId, seen_by: NodeId, raft: &Raft) -> GroupReplicas {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    let membership = metrics.membership_config.membership();
    GroupReplicas {
        group,
        seen_by,
        leader: metrics.current_leader,
        term: metrics.current_term,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        joint: membership.get_joint_config().len() > 1,
        nodes: membership
            .nodes()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        last_applied: metrics.last_applied.as_ref().map_or(0, |id| id.index),
        matched: metrics
            .replication
            .as_ref()
            .map(|replication| {
                replication
                    .iter()
                    .map(|(id, matched)| (*id, matched.as_ref().map_or(0, |log_id| log_id.index)))
                    .collect()
            })
            .unwrap_or_default(),
        keys: 0,
        bytes: 0,
        slots: Default::default(),
        metadata: false,
    }
}

impl Groups {
    /// Answers one call of the admin API or of a coordinator.
    pub async fn answer(&self, call: ReplicaCall) -> Result<ReplicaReply, ReplicaError> {
        let done = |result: Result<(), ReplicaError>| result.map(|()| ReplicaReply::Done);
        match call {
            ReplicaCall::Replicas { group } => self.replicas(group).map(ReplicaReply::Replicas),
            ReplicaCall::Open { group } => done(self.open_replica(group).await),
            ReplicaCall::AddLearner { group, node, addr } => {
                done(self.add_learner(group, node, addr).await)
            }
            ReplicaCall::Promote { group, node } => done(self.promote(group, node).await),
            ReplicaCall::Demote { group, node } => done(self.demote(group, node).await),
            ReplicaCall::Close { group } => done(self.close_replica(group).await),
            ReplicaCall::RemoveLearner { group, node } => {
                done(self.remove_learner(group, node).await)
            }
            ReplicaCall::TransferLeadership { group, to } => {
                done(self.transfer_leadership(group, to).await)
            }
            ReplicaCall::Pin { group } => done(self.pin_leadership(group)),
            ReplicaCall::Members => Ok(ReplicaReply::Members(self.members())),
            ReplicaCall::RegisterNode { id, addr } => done(self.register_node(id, addr).await),
            ReplicaCall::RetireNode { id } => done(self.retire_node(id).await),
            ReplicaCall::Registry => self.registered_nodes().await.map(ReplicaReply::Registry),
            ReplicaCall::Slots { group } => self.group_slots(group).await.map(ReplicaReply::Slots),
            ReplicaCall::ExportSlots { group, slots, from } => self
                .export_slots(group, &slots, from)
                .await
                .map(ReplicaReply::Page),
            ReplicaCall::SlotStep { group, op } => {
                self.slot_step(group, op).await.map(ReplicaReply::Count)
            }
            ReplicaCall::SlotMap => self.slot_map().await.map(ReplicaReply::SlotMap),
            ReplicaCall::RecordSlots { slots, group } => self
                .record_slots(&slots, group)
                .await
                .map(ReplicaReply::Count),
            ReplicaCall::RecordPlacement(reports) => self
                .record_placement(&reports)
                .await
                .map(ReplicaReply::Count),
            ReplicaCall::Placement => self.recorded_placement().await.map(ReplicaReply::Placement),
            ReplicaCall::Shape => Ok(ReplicaReply::Shape(ClusterShape {
                members: self.placement().members().clone(),
                groups: self.len() as u32,
                replicas: self.placement().replicas(),
            })),
        }
    }

    /// Refuses groups that do not exist, and single-replica groups, whose membership is fixed.
    /// The metadata group is changeable like a slot group.
    fn changeable(&self, group: GroupId) -> Result<(), ReplicaError> {
        if group > self.meta_group() {
            return Err(ReplicaError::NoSuchGroup(group));
        }
        if self.is_sole_voter(group) {
            return Err(ReplicaError::SoleVoter(group));
        }
        Ok(())
    }

    /// Waits for this node's turn to change `group`: one step of a group at a time.
    pub(crate) async fn step(
        &self,
        group: GroupId,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, ReplicaError> {
        self.changeable(group)?;
        Ok(self.changing[group as usize].lock().await)
    }

    /// The raft of `group`, which this node must lead.
    fn leading(&self, group: GroupId) -> Result<Raft, ReplicaError> {
        self.changeable(group)?;
        let raft = self.raft(group).ok_or(ReplicaError::NotHere(group))?;
        let leader = raft.metrics().borrow_watched().current_leader;
        if leader != Some(self.node_id()) {
            return Err(ReplicaError::NotLeader { group, leader });
        }
        Ok(raft)
    }

    /// `group`'s replicas as this node sees them.
    pub fn replicas(&self, group: GroupId) -> Result<GroupReplicas, ReplicaError> {
        // A node alone has no metadata group.
        let alone = crate::node_registry::meta_members(self.placement()).is_empty();
        if group > self.meta_group() || (group == self.meta_group() && alone) {
            return Err(ReplicaError::NoSuchGroup(group));
        }
        let raft = self.raft(group).ok_or(ReplicaError::NotHere(group))?;
        let mut replicas = replicas_of(group, self.node_id(), &raft);
        if group == self.meta_group() {
            replicas.metadata = true;
            replicas.keys = self.meta_db().group_len(0) as u64;
            return Ok(replicas);
        }
        replicas.keys = self.db().group_len(group as usize) as u64;
        replicas.bytes = self.db().group_bytes(group as usize);
        replicas.slots =
            crate::slot_calls::GroupSlots::of(group, &self.db().slot_state(group as usize));
        Ok(replicas)
    }

    /// Starts an empty replica of `group` here, which waits for its leader to replicate to it
    /// (after [`Groups::add_learner`]). Done if one runs already.
    pub async fn open_replica(&self, group: GroupId) -> Result<(), ReplicaError> {
        let _step = self.step(group).await?;
        if self.raft(group).is_some() {
            return Ok(());
        }
        let raft_error = |message: String| ReplicaError::Raft { group, message };
        self.store()
            .revive_group(group)
            .map_err(|e| raft_error(e.to_string()))?;
        self.open_raft(group, self.config_of(group))
            .await
            .map_err(|e| raft_error(e.to_string()))?;
        tracing::info!(group, "opened a replica");
        Ok(())
    }

    /// Stops this node's replica of `group` and wipes it (log, snapshot, keys), so that it is
    /// not started again. Refused while this node votes in the group as far as its own log
    /// says: a node that never received the configuration making it a voter acknowledged no
    /// entry under it, so wiping it loses nothing committed. Done if no replica runs here.
    pub async fn close_replica(&self, group: GroupId) -> Result<(), ReplicaError> {
        let _step = self.step(group).await?;
        let Some(raft) = self.raft(group) else {
            return Ok(());
        };
        let me = self.node_id();
        let votes = |raft: &Raft| replicas_of(group, me, raft).voters.contains(&me);
        if votes(&raft) {
            return Err(ReplicaError::StillVoter { group, node: me });
        }
        self.unregister(group);
        if let Err(error) = raft.shutdown().await {
            tracing::warn!(group, %error, "closing replica did not stop cleanly");
        }
        // An entry that made this node a voter may have arrived after the check.
        if votes(&raft) {
            let raft_error = |message: String| ReplicaError::Raft { group, message };
            self.open_raft(group, self.config_of(group))
                .await
                .map_err(|e| raft_error(e.to_string()))?;
            return Err(ReplicaError::StillVoter { group, node: me });
        }
        self.wipe_replica(group).await
    }

    /// Wipes the stopped replica of `group` (keys, log, snapshot) and marks the group retired
    /// here, so that a restart does not bring it back.
    pub(crate) async fn wipe_replica(&self, group: GroupId) -> Result<(), ReplicaError> {
        if group == self.meta_group() {
            self.meta_db().clear_group(0);
        } else {
            self.db().clear_group(group as usize);
        }
        self.store()
            .retire_group(group)
            .await
            .map_err(|e| ReplicaError::Raft {
                group,
                message: e.to_string(),
            })?;
        self.pinned.write().remove(&group);
        tracing::info!(group, "closed and wiped a replica");
        Ok(())
    }

    /// Leader: adds `node` (at `addr`) to `group` as a learner. Done if it is a replica already.
    pub async fn add_learner(
        &self,
        group: GroupId,
        node: NodeId,
        addr: NodeAddr,
    ) -> Result<(), ReplicaError> {
        let _step = self.step(group).await?;
        let raft = self.leading(group)?;
        if replicas_of(group, self.node_id(), &raft)
            .nodes
            .contains_key(&node)
        {
            return Ok(());
        }
        raft.add_learner(node, addr, false)
            .await
            .map_err(|e| write_error(group, e))?;
        tracing::info!(group, node, "added a learner");
        Ok(())
    }

    /// Leader: makes learner `node` a voter of `group` by joint consensus, once it is within
    /// [`CATCH_UP_SLACK`] entries of the leader's log ([`ReplicaError::CatchingUp`] until then).
    /// Done if it votes already and no change is half done.
    pub async fn promote(&self, group: GroupId, node: NodeId) -> Result<(), ReplicaError> {
        let _step = self.step(group).await?;
        let raft = self.leading(group)?;
        let replicas = replicas_of(group, self.node_id(), &raft);
        if replicas.voters.contains(&node) && !replicas.joint {
            return Ok(());
        }
        if !replicas.nodes.contains_key(&node) {
            return Err(ReplicaError::NotReplica { group, node });
        }
        let matched = replicas.matched.get(&node).copied().unwrap_or(0);
        if matched + CATCH_UP_SLACK < replicas.last_log_index {
            return Err(ReplicaError::CatchingUp {
                group,
                node,
                matched,
                last: replicas.last_log_index,
            });
        }
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
            .await
            .map_err(|e| write_error(group, e))?;
        tracing::info!(group, node, "promoted a learner to voter");
        Ok(())
    }

    /// Leader: makes voter `node` of `group` a learner by joint consensus; it keeps receiving
    /// the log (so it learns it no longer votes) until it is closed. The leader itself is never
    /// demoted. Done if `node` does not vote and no change is half done.
    pub async fn demote(&self, group: GroupId, node: NodeId) -> Result<(), ReplicaError> {
        let _step = self.step(group).await?;
        let raft = self.leading(group)?;
        if node == self.node_id() {
            return Err(ReplicaError::RemovingLeader { group, node });
        }
        let replicas = replicas_of(group, self.node_id(), &raft);
        if !replicas.voters.contains(&node) && !replicas.joint {
            return Ok(());
        }
        raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([node])), true)
            .await
            .map_err(|e| write_error(group, e))?;
        tracing::info!(group, node, "demoted a voter to learner");
        Ok(())
    }

    /// Leader: drops learner `node` from `group`'s membership. Done if it is not a replica.
    pub async fn remove_learner(&self, group: GroupId, node: NodeId) -> Result<(), ReplicaError> {
        let _step = self.step(group).await?;
        let raft = self.leading(group)?;
        let replicas = replicas_of(group, self.node_id(), &raft);
        if replicas.voters.contains(&node) {
            return Err(ReplicaError::StillVoter { group, node });
        }
        if !replicas.nodes.contains_key(&node) {
            return Ok(());
        }
        raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node])), false)
            .await
            .map_err(|e| write_error(group, e))?;
        tracing::info!(group, node, "removed a learner");
        Ok(())
    }

    /// Makes the leader balancer leave `group` to whoever leads it (an operator chose). Sent to
    /// the node about to receive leadership, whose balancer would otherwise hand it back.
    pub fn pin_leadership(&self, group: GroupId) -> Result<(), ReplicaError> {
        self.changeable(group)?;
        self.pinned.write().insert(group);
        Ok(())
    }

    /// Leader: hands `group`'s leadership to voter `to` and waits until this node sees it
    /// lead. From then on the leader balancer leaves the group where it was put. Done if `to`
    /// leads already. If `to` does not take it in time, another live follower does and the
    /// call fails as not transferred (transient: sent again to the new leader, it retries).
    pub async fn transfer_leadership(
        &self,
        group: GroupId,
        to: NodeId,
    ) -> Result<(), ReplicaError> {
        self.changeable(group)?;
        let raft = self.raft(group).ok_or(ReplicaError::NotHere(group))?;
        let replicas = replicas_of(group, self.node_id(), &raft);
        if replicas.leader == Some(to) {
            self.pinned.write().insert(group);
            return Ok(());
        }
        if replicas.leader != Some(self.node_id()) {
            return Err(ReplicaError::NotLeader {
                group,
                leader: replicas.leader,
            });
        }
        if !replicas.voters.contains(&to) {
            return Err(ReplicaError::NotReplica { group, node: to });
        }
        // Pinned before the transfer, so this node's balancer does not race it.
        self.pinned.write().insert(group);
        // A target that dies or stalls (paused, cut off) must not leave the group without a
        // writable leader until an election: `hand_over` gives it to another live follower
        // then, and the caller's retry, sent to that new leader, tries `to` again.
        let me = self.node_id();
        if !hand_over(&raft, self.stopping_peers(), me, group, to).await {
            return Err(ReplicaError::NotTransferred { group, to });
        }
        let new_leader = raft
            .wait(Some(TRANSFER_WAIT))
            .metrics(
                |metrics| metrics.current_leader.is_some_and(|leader| leader != me),
                "leadership transferred",
            )
            .await
            .ok()
            .and_then(|metrics| metrics.current_leader);
        if new_leader != Some(to) {
            return Err(ReplicaError::NotTransferred { group, to });
        }
        tracing::info!(group, to, "transferred leadership");
        Ok(())
    }
}

//! Driving a membership change across nodes: moving a replica and transferring leadership,
//! as sequences of [`ReplicaCall`]s, each retried until done.
//!
//! The coordinator keeps no state of its own: every step asks the nodes where the group is and
//! does only what is missing (see `replicas`). A coordinator that dies mid-change leaves the
//! group in a state the same command, run again by anyone, completes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::node_registry::RegisteredNode;
use crate::placement_record::RecordedReplicas;
use crate::replica_call::{send, CallError};
use crate::replicas::{GroupReplicas, ReplicaCall, ReplicaError, ReplicaReply};
use crate::typ::{GroupId, NodeAddr, NodeId};

/// How long one step may keep failing transiently (no leader, catching up, busy) before the
/// change gives up. Running the command again resumes it.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a change waits for the leader's own view of a group before deciding on another's.
const LEADER_VIEW_WAIT: Duration = Duration::from_secs(10);

/// Pause between two attempts of a step.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Why a change stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no node answered for group {group}: {last}")]
    NoAnswer { group: GroupId, last: String },
    #[error("{step}: {error}")]
    Step { step: String, error: CallError },
    #[error("node {0}'s address is not known: name a node that replicates a group with it")]
    UnknownNode(NodeId),
    #[error("group {group} has no other voter to lead it when node {node} leaves")]
    NoOtherVoter { group: GroupId, node: NodeId },
}

/// Where a step is sent.
pub(crate) enum Target {
    /// The group's leader, found again on every attempt (so the step follows leadership).
    Leader(GroupId),
    /// One node's raft address.
    Node(String),
}

/// Drives membership changes through the nodes it knows, learning others as it goes. A clone
/// drives another change concurrently (one per group at a time: the nodes refuse a second).
#[derive(Clone)]
pub struct Coordinator<P> {
    /// Raft addresses to ask first (given on the command line).
    seeds: Vec<String>,
    /// Every node seen in a group's membership, with its addresses.
    known: BTreeMap<NodeId, NodeAddr>,
    /// The raft address of each group's leader as last found, until a call there fails.
    leaders: BTreeMap<GroupId, String>,
    progress: P,
}

impl<P: FnMut(&str)> Coordinator<P> {
    /// A coordinator that asks the nodes at `seeds` (raft addresses) first and reports each
    /// step to `progress`.
    pub fn new(seeds: Vec<String>, progress: P) -> Coordinator<P> {
        Coordinator {
            seeds,
            known: BTreeMap::new(),
            leaders: BTreeMap::new(),
            progress,
        }
    }

    /// Every node seen so far.
    pub fn known(&self) -> &BTreeMap<NodeId, NodeAddr> {
        &self.known
    }

    /// Records a node's address (one that replicates nothing yet, say).
    pub fn learn(&mut self, node: NodeId, addr: NodeAddr) {
        self.known.insert(node, addr);
    }

    fn addr_of(&self, node: NodeId) -> Result<String, ChangeError> {
        self.known
            .get(&node)
            .map(|addr| addr.raft.clone())
            .ok_or(ChangeError::UnknownNode(node))
    }

    /// Learns every node the seeds know of.
    async fn discover(&mut self) {
        for addr in self.seeds.clone() {
            if let Ok(ReplicaReply::Members(members)) = send(&addr, ReplicaCall::Members).await {
                for (id, addr) in members {
                    self.known.entry(id).or_insert(addr);
                }
                return;
            }
        }
    }

    /// `group`'s replicas from its leader's point of view: a follower's, above all a new
    /// replica's, may lag behind the latest configuration, and every decision of a change is
    /// taken on this view. While no leader answers (an election, a leader cut off), asks again
    /// for up to [`LEADER_VIEW_WAIT`], then returns the best view it has.
    pub async fn replicas(&mut self, group: GroupId) -> Result<GroupReplicas, ChangeError> {
        let deadline = Instant::now() + LEADER_VIEW_WAIT;
        loop {
            let seen = self.any_view(group).await?;
            self.known
                .extend(seen.nodes.iter().map(|(id, addr)| (*id, addr.clone())));
            if seen.leader == Some(seen.seen_by) {
                return Ok(seen);
            }
            if let Some(view) = self.follow_leader_hints(group, seen.leader).await {
                return Ok(view);
            }
            if Instant::now() > deadline {
                return Ok(seen);
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// The leader's own view of `group`, found by asking the node `hint` names, then the node
    /// that one names, and so on: a replica that fell behind (or a replica left on a node
    /// dropped from the group) names a former leader, which names a later one.
    async fn follow_leader_hints(
        &mut self,
        group: GroupId,
        mut hint: Option<NodeId>,
    ) -> Option<GroupReplicas> {
        let mut asked = std::collections::BTreeSet::new();
        while let Some(leader) = hint.filter(|leader| asked.insert(*leader)) {
            let addr = self.known.get(&leader)?.raft.clone();
            let Ok(ReplicaReply::Replicas(view)) =
                send(&addr, ReplicaCall::Replicas { group }).await
            else {
                return None;
            };
            self.known
                .extend(view.nodes.iter().map(|(id, addr)| (*id, addr.clone())));
            if view.leader == Some(view.seen_by) {
                return Some(view);
            }
            hint = view.leader;
        }
        None
    }

    /// Some node's view of `group`: the first that knows a leader, else any.
    async fn any_view(&mut self, group: GroupId) -> Result<GroupReplicas, ChangeError> {
        if self.known.is_empty() {
            self.discover().await;
        }
        let mut addrs = self.seeds.clone();
        addrs.extend(self.known.values().map(|addr| addr.raft.clone()));
        addrs.dedup();
        let mut last = String::from("no node to ask");
        let mut seen: Option<GroupReplicas> = None;
        for addr in &addrs {
            match send(addr, ReplicaCall::Replicas { group }).await {
                // A replica that knows no leader (a new one not yet reached, or one cut off)
                // is a last resort: another may know where the group is.
                Ok(ReplicaReply::Replicas(replicas)) => {
                    let knows_leader = replicas.leader.is_some();
                    if knows_leader || seen.is_none() {
                        seen = Some(replicas);
                    }
                    if knows_leader {
                        break;
                    }
                }
                Ok(other) => last = format!("unexpected answer {other:?}"),
                Err(CallError::Refused(ReplicaError::NoSuchGroup(_))) => {
                    return Err(ChangeError::Step {
                        step: format!("group {group}"),
                        error: CallError::Refused(ReplicaError::NoSuchGroup(group)),
                    })
                }
                Err(error) => last = error.to_string(),
            }
        }
        seen.ok_or(ChangeError::NoAnswer { group, last })
    }

    /// Reports a step to the progress callback.
    pub(crate) fn say(&mut self, line: &str) {
        (self.progress)(line);
    }

    /// Sends `call` to `target` until it is done or fails for good.
    async fn until_done(
        &mut self,
        step: &str,
        target: Target,
        call: ReplicaCall,
    ) -> Result<(), ChangeError> {
        (self.progress)(step);
        self.until_answered(step, target, call).await.map(|_| ())
    }

    /// Sends `call` to `target` until it is answered or fails for good; returns the answer.
    pub(crate) async fn until_answered(
        &mut self,
        step: &str,
        target: Target,
        call: ReplicaCall,
    ) -> Result<ReplicaReply, ChangeError> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut reported = Instant::now();
        loop {
            let addr = match &target {
                Target::Leader(group) => match self.leaders.get(group) {
                    Some(addr) => Ok(addr.clone()),
                    None => self.leader_addr(*group).await,
                },
                Target::Node(addr) => Ok(addr.clone()),
            };
            let error = match addr {
                Ok(addr) => match send(&addr, call.clone()).await {
                    Ok(reply) => {
                        if let Target::Leader(group) = &target {
                            self.leaders.insert(*group, addr);
                        }
                        return Ok(reply);
                    }
                    Err(error) => {
                        if let Target::Leader(group) = &target {
                            self.leaders.remove(group);
                        }
                        error
                    }
                },
                Err(ChangeError::Step { error, .. }) => error,
                Err(other) => return Err(other),
            };
            if !error.is_transient() || Instant::now() > deadline {
                return Err(ChangeError::Step {
                    step: step.to_string(),
                    error,
                });
            }
            if reported.elapsed() > Duration::from_secs(1) {
                (self.progress)(&format!("  {step}: {error}"));
                reported = Instant::now();
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// The raft address of `group`'s leader.
    async fn leader_addr(&mut self, group: GroupId) -> Result<String, ChangeError> {
        let replicas = self.replicas(group).await?;
        match replicas.leader {
            Some(leader) => self.addr_of(leader),
            None => Err(ChangeError::Step {
                step: format!("find group {group}'s leader"),
                error: CallError::Refused(ReplicaError::NotLeader {
                    group,
                    leader: None,
                }),
            }),
        }
    }

    /// Moves `group`'s replica on node `from` to node `to`: opens a replica on `to`, adds it
    /// as a learner, promotes it once caught up, moves leadership off `from` if it leads,
    /// demotes `from`, closes its replica and drops it. Done steps are skipped.
    pub async fn move_replica(
        &mut self,
        group: GroupId,
        from: NodeId,
        to: NodeId,
    ) -> Result<(), ChangeError> {
        let replicas = self.replicas(group).await?;
        let to_addr = self
            .known
            .get(&to)
            .cloned()
            .ok_or(ChangeError::UnknownNode(to))?;
        if from != to && replicas.nodes.contains_key(&from) {
            self.add_replica(group, to, to_addr).await?;
            self.remove_replica(group, from, Some(to)).await?;
        } else {
            // `from` is gone already: the move is done once `to` votes.
            self.add_replica(group, to, to_addr).await?;
        }
        Ok(())
    }

    /// Adds node `to` (at `addr`) to `group` as a voter.
    pub async fn add_replica(
        &mut self,
        group: GroupId,
        to: NodeId,
        addr: NodeAddr,
    ) -> Result<(), ChangeError> {
        self.known.insert(to, addr.clone());
        let raft = addr.raft.clone();
        self.until_done(
            &format!("group {group}: open a replica on node {to}"),
            Target::Node(raft.clone()),
            ReplicaCall::Open { group },
        )
        .await?;
        self.until_done(
            &format!("group {group}: add node {to} as a learner"),
            Target::Leader(group),
            ReplicaCall::AddLearner {
                group,
                node: to,
                addr,
            },
        )
        .await?;
        self.until_done(
            &format!("group {group}: promote node {to} to voter once caught up"),
            Target::Leader(group),
            ReplicaCall::Promote { group, node: to },
        )
        .await
    }

    /// Removes node `from` from `group`: leadership first moves to another voter (`successor`
    /// when given), then `from` is demoted, its replica closed, and it is dropped.
    pub async fn remove_replica(
        &mut self,
        group: GroupId,
        from: NodeId,
        successor: Option<NodeId>,
    ) -> Result<(), ChangeError> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let replicas = self.replicas(group).await?;
            if replicas.leader != Some(from) {
                break;
            }
            let next = successor
                .filter(|node| replicas.voters.contains(node))
                .or_else(|| {
                    replicas
                        .voters
                        .iter()
                        .copied()
                        .filter(|node| *node != from)
                        .max_by_key(|node| replicas.matched.get(node))
                });
            match next {
                Some(next) => {
                    self.transfer_leadership(group, next).await?;
                    break;
                }
                None if Instant::now() > deadline => {
                    return Err(ChangeError::NoOtherVoter { group, node: from })
                }
                None => tokio::time::sleep(RETRY_EVERY).await,
            }
        }
        self.until_done(
            &format!("group {group}: demote node {from} to learner"),
            Target::Leader(group),
            ReplicaCall::Demote { group, node: from },
        )
        .await?;
        match self.addr_of(from) {
            Ok(addr) => {
                if let Err(error) = self.close_demoted(group, from, addr).await {
                    // A node that is down keeps its wiped-to-be replica until it is asked
                    // again; it no longer votes, so the group does not need it.
                    (self.progress)(&format!("  group {group}: node {from} not closed: {error}"));
                }
            }
            Err(error) => (self.progress)(&format!("  {error}")),
        }
        self.until_done(
            &format!("group {group}: drop node {from}"),
            Target::Leader(group),
            ReplicaCall::RemoveLearner { group, node: from },
        )
        .await
    }

    /// Closes node `from`'s replica of `group` (at raft address `addr`) after its demotion.
    /// The leader committed the demotion, but `from` may not have applied it yet, and a node
    /// refuses to close a replica it sees as a voter: that refusal is retried here, for up to
    /// [`STEP_TIMEOUT`]. Giving up at once would leave the replica open on a node dropped
    /// from the group, stuck on a configuration it believes it votes in, and naming a former
    /// leader to whoever asks.
    async fn close_demoted(
        &mut self,
        group: GroupId,
        from: NodeId,
        addr: String,
    ) -> Result<(), ChangeError> {
        let step = format!("group {group}: close node {from}'s replica");
        (self.progress)(&step);
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let closed = self
                .until_answered(
                    &step,
                    Target::Node(addr.clone()),
                    ReplicaCall::Close { group },
                )
                .await;
            match closed {
                Err(ChangeError::Step {
                    error: CallError::Refused(ReplicaError::StillVoter { .. }),
                    ..
                }) if Instant::now() < deadline => tokio::time::sleep(RETRY_EVERY).await,
                other => return other.map(|_| ()),
            }
        }
    }

    /// Sends a call for the metadata group's leader to every known node in turn until one
    /// takes it, retrying while the metadata group has no leader.
    pub(crate) async fn send_to_meta_leader(
        &mut self,
        step: &str,
        call: ReplicaCall,
    ) -> Result<ReplicaReply, ChangeError> {
        if self.known.is_empty() {
            self.discover().await;
        }
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let mut addrs = self.seeds.clone();
            addrs.extend(self.known.values().map(|addr| addr.raft.clone()));
            addrs.dedup();
            let mut last = None;
            for addr in &addrs {
                match send(addr, call.clone()).await {
                    Ok(reply) => return Ok(reply),
                    Err(error) if error.is_transient() => last = Some(error),
                    Err(error) => {
                        return Err(ChangeError::Step {
                            step: step.to_string(),
                            error,
                        })
                    }
                }
            }
            let error = last.unwrap_or(CallError::Unreachable {
                addr: "-".into(),
                message: "no node to ask".into(),
            });
            if Instant::now() > deadline {
                return Err(ChangeError::Step {
                    step: format!("{step}: reach the metadata group's leader"),
                    error,
                });
            }
            tokio::time::sleep(RETRY_EVERY).await;
            // The leader may be a node not learned yet (only some were named so far).
            self.discover().await;
        }
    }

    /// Registers node `id` at `addr` in the node registry (done if it is registered so).
    pub async fn register_node(&mut self, id: NodeId, addr: NodeAddr) -> Result<(), ChangeError> {
        let step = format!("register node {id}");
        (self.progress)(&step);
        self.send_to_meta_leader(&step, ReplicaCall::RegisterNode { id, addr })
            .await
            .map(drop)
    }

    /// Retires node `id` in the node registry: its id is never used again.
    pub async fn retire_node(&mut self, id: NodeId) -> Result<(), ChangeError> {
        let step = format!("retire node {id}");
        (self.progress)(&step);
        self.send_to_meta_leader(&step, ReplicaCall::RetireNode { id })
            .await
            .map(drop)
    }

    /// The node registry.
    pub async fn registry(&mut self) -> Result<Vec<RegisteredNode>, ChangeError> {
        match self
            .send_to_meta_leader("read the node registry", ReplicaCall::Registry)
            .await?
        {
            ReplicaReply::Registry(nodes) => Ok(nodes),
            other => Err(ChangeError::NoAnswer {
                group: 0,
                last: format!("unexpected answer {other:?}"),
            }),
        }
    }

    /// The placement record: every group's replicas as the metadata group recorded them.
    pub async fn placement(&mut self) -> Result<Vec<RecordedReplicas>, ChangeError> {
        match self
            .send_to_meta_leader("read the placement record", ReplicaCall::Placement)
            .await?
        {
            ReplicaReply::Placement(record) => Ok(record),
            other => Err(ChangeError::NoAnswer {
                group: 0,
                last: format!("unexpected answer {other:?}"),
            }),
        }
    }

    /// Hands `group`'s leadership to voter `to`, which keeps it (the balancer leaves it).
    pub async fn transfer_leadership(
        &mut self,
        group: GroupId,
        to: NodeId,
    ) -> Result<(), ChangeError> {
        let addr = self.addr_of(to)?;
        self.until_done(
            &format!("group {group}: pin leadership on node {to}"),
            Target::Node(addr.clone()),
            ReplicaCall::Pin { group },
        )
        .await?;
        self.until_done(
            &format!("group {group}: transfer leadership to node {to}"),
            Target::Leader(group),
            ReplicaCall::TransferLeadership { group, to },
        )
        .await
    }
}

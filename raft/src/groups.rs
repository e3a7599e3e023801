//! A node's slot groups: one openraft instance per group over the node's shared log store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};
use parking_lot::{Mutex, RwLock};
use tiering::Db;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::hand_over::{acked_within, hand_over, live_follower};
use crate::link_filter::LinkFilter;
use crate::log_store::LogDb;
use crate::metrics::RaftMetrics;
use crate::network::{GroupNetwork, Peers};
use crate::placement::Placement;
use crate::publish_relay::PublishRelay;
use crate::service::{self, BindError, Registry};
use crate::snapshot_trigger;
use crate::state_machine::StateMachine;
use crate::stopping_peers::StoppingPeers;
use crate::storage_watch;
use crate::typ::{GroupId, NodeAddr, NodeId, Raft};

/// How long a starting node waits for each of its groups to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// How often a node hands the groups it leads back to their preferred leaders.
const BALANCE_EVERY: Duration = Duration::from_secs(2);

/// How long a stopping node waits for each of its background tasks before aborting it.
const TASK_STOP_WAIT: Duration = Duration::from_millis(500);

/// How long a stopping node waits for the groups it led to get new leaders.
const HAND_OFF_WAIT: Duration = Duration::from_secs(3);

/// A preferred leader is given its group only if it acknowledged the leader this recently.
const BALANCE_RECENT_ACK: Duration = Duration::from_secs(1);

/// What a node needs to run its groups.
#[derive(Clone, Debug)]
pub struct GroupsConfig {
    pub node_id: NodeId,
    /// The cluster's members and replica count (one member for the embedded default).
    pub placement: Placement,
    /// Number of slot groups.
    pub groups: u32,
    /// Where the raft log store lives.
    pub dir: PathBuf,
    /// A group snapshots its state (and may purge its log) every this many entries, and, holding
    /// over 100,000 keys, no sooner than it applied half as many (see `snapshot_trigger`).
    pub snapshot_every: u64,
    /// Cut or slowed links between nodes: in-process tests only, None in a server.
    pub link_filter: Option<LinkFilter>,
    /// Set for a node outside the static member list, to its own addresses: it starts
    /// replicating nothing (replicas are moved onto it at run time) and serves raft messages
    /// on its raft address.
    pub joining: Option<NodeAddr>,
    /// UNSAFE, for proving the correctness harness can fail: serve reads of every group this
    /// node replicates from its local state, leader or not, without confirming anything.
    pub unsafe_stale_reads: bool,
}

/// Why the groups could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("open the raft log store in {dir}: {source}")]
    Open { dir: String, source: rocksdb::Error },
    #[error("invalid raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("node {0} is not in the member list")]
    NotAMember(NodeId),
    #[error("node {node}'s raft address {addr:?} is not an ip:port")]
    RaftAddr { node: NodeId, addr: String },
    #[error(transparent)]
    Listen(#[from] BindError),
    #[error("start raft group {group}: {message}")]
    Start { group: GroupId, message: String },
}

/// State shared by `Groups` and its background tasks.
pub(crate) type Shared<T> = Arc<RwLock<T>>;

/// The raft groups of one node.
pub struct Groups {
    node_id: NodeId,
    placement: Placement,
    /// The rafts of the groups this node replicates, by group. Changes when a replica is
    /// opened or closed here (see `replicas`).
    rafts: Shared<Vec<Option<Raft>>>,
    /// Per group: this node is its only voter. No other node can ever lead it, so once it has
    /// applied its log, reads need no confirmation. Such a group's membership never changes.
    sole_voter: Vec<bool>,
    /// See `GroupsConfig::unsafe_stale_reads`.
    unsafe_stale_reads: bool,
    db: Arc<Db>,
    /// The metadata group's keyspace (see `node_registry`).
    meta_db: Arc<Db>,
    store: Arc<LogDb>,
    peers: Peers,
    /// The config of every group with peers (ticking, so it heartbeats and elects).
    config: Arc<Config>,
    /// The metadata group's configuration (see [`Groups::config_of`]).
    meta_config: Arc<Config>,
    registry: Registry,
    metrics: Arc<RaftMetrics>,
    /// Relays PUBLISH to the other members (None on a node alone).
    relay: Option<PublishRelay>,
    /// Per group, held while this node opens, closes or reconfigures it: one membership step
    /// of a group at a time, whoever asks.
    pub(crate) changing: Vec<tokio::sync::Mutex<()>>,
    /// Groups whose leader an operator chose (`transfer_leadership`): the balancer leaves them.
    pub(crate) pinned: Shared<BTreeSet<GroupId>>,
    /// The leaders gossip names for groups this node does not replicate.
    hints: RwLock<BTreeMap<GroupId, (NodeId, NodeAddr)>>,
    /// The nodes gossip hears from (a node that replicates nothing yet is known only so).
    gossiped: RwLock<BTreeMap<NodeId, NodeAddr>>,
    /// The epoch of the slot map this node routes by (see `slot_map`); 0 before the first.
    pub(crate) slot_epoch: std::sync::atomic::AtomicU64,
    /// Set to stop the raft service, the leader balancer and the leader watchers.
    stop: watch::Sender<bool>,
    /// Why a group stopped on a storage failure, once one did (see `storage_watch`).
    storage_failure: watch::Sender<Option<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn raft_config(enable_tick: bool) -> Result<Arc<Config>, GroupsError> {
    Ok(Arc::new(
        Config {
            cluster_name: "autocache".into(),
            // Every leader heartbeats each follower of each group it leads, each heartbeat a
            // gRPC stream of its own, and every group ticks about five times per heartbeat
            // interval: slow enough that an idle 3-node cluster with 16 groups stays under 5%
            // of a core (measured before timers were aligned, see `coarse_timers`: 250 ms
            // 9.5%, 500 ms 5.8%, 800 ms 4.0-4.9%; aligned, 800 ms: 3.0%). The tick follows
            // the heartbeat interval only, so the election timeouts cost no idle CPU.
            //
            // openraft's leader lease is the maximum election timeout: a follower refuses
            // other candidates for that long after the leader's last message, and campaigns
            // only once the lease *and then* its random election timeout have run out. A
            // dead leader is thus replaced after max + [min, max]: 1.6 + 1.0-1.6 = 2.6-3.2 s
            // (1.7-2.4 s timeouts: 4.1-4.8 s, measured 3.97-4.44 s). A follower still votes
            // for no one else while a heartbeat (every 0.8-1.0 s with the tick's rounding) is
            // merely late, and campaigns only after three are missing.
            heartbeat_interval: 800,
            election_timeout_min: 1000,
            election_timeout_max: 1600,
            // `snapshot_trigger` decides when (openraft's policy counts entries only).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 1000,
            // A group whose only voter is this node has no one to send heartbeats to and no
            // election to time out (it is elected explicitly in `start`): ticking would only
            // cost an idle node CPU (16 groups ticking: ~4% of a core).
            enable_tick,
            ..Default::default()
        }
        .validate()?,
    ))
}

impl Groups {
    /// Opens the log store, starts the raft service (when there are peers) and every group
    /// this node replicates over `db`'s keyspaces (restoring each from its snapshot and log),
    /// and initializes the groups of a new cluster. Groups only this node votes in are waited
    /// for until they lead and applied their log; groups with peers elect a leader in the
    /// background.
    pub async fn start(config: GroupsConfig, db: Arc<Db>) -> Result<Groups, GroupsError> {
        let placement = config.placement.clone();
        let me = placement
            .member(config.node_id)
            .or(config.joining.as_ref())
            .ok_or(GroupsError::NotAMember(config.node_id))?
            .clone();
        let store = LogDb::open(&config.dir).map_err(|source| GroupsError::Open {
            dir: config.dir.display().to_string(),
            source,
        })?;
        let (stop, _) = watch::channel(false);
        let registry = Registry::default();
        let metrics = Arc::new(RaftMetrics::new(config.groups, store.fsync_histogram()));
        let mut tasks = Vec::new();
        if placement.members().len() > 1 || config.joining.is_some() {
            let addr = me.raft.parse().map_err(|_| GroupsError::RaftAddr {
                node: config.node_id,
                addr: me.raft.clone(),
            })?;
            let mut stopped = stop.subscribe();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            tasks.push(service::serve(addr, registry.clone(), shutdown).await?);
            tracing::info!(%addr, "serving raft messages");
        }
        let ticking = raft_config(true)?;
        let tickless = raft_config(false)?;
        let peers = Peers::new(config.node_id, config.link_filter.clone());
        let sole_voter: Vec<bool> = (0..config.groups)
            .map(|group| {
                let members = placement.replicas_of(group);
                members == [config.node_id]
            })
            .collect();
        let relay = (placement.members().len() > 1 || config.joining.is_some())
            .then(|| PublishRelay::new(config.node_id, &peers, &stop));
        let groups = Groups {
            node_id: config.node_id,
            placement: placement.clone(),
            // One more than the slot groups: the metadata group's, when it runs here.
            rafts: Arc::new(RwLock::new(vec![None; config.groups as usize + 1])),
            sole_voter,
            unsafe_stale_reads: config.unsafe_stale_reads,
            db,
            meta_db: Arc::new(Db::new(1)),
            store,
            peers,
            config: ticking.clone(),
            meta_config: Arc::new(
                // Fails over after 3.5 + 2.5-3.5 = 6-7 s (see `raft_config`); campaigns
                // only after two heartbeats are missing.
                Config {
                    heartbeat_interval: 2000,
                    election_timeout_min: 2500,
                    election_timeout_max: 3500,
                    ..(*ticking).clone()
                }
                .validate()?,
            ),
            registry,
            metrics,
            relay,
            changing: (0..=config.groups)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            pinned: Shared::default(),
            hints: RwLock::default(),
            gossiped: RwLock::default(),
            slot_epoch: Default::default(),
            stop,
            storage_failure: watch::channel(None).0,
            tasks: Mutex::new(tasks),
        };
        for group in 0..config.groups {
            let start_error = |message: String| GroupsError::Start { group, message };
            let members = placement.replica_members(group);
            let placed_here = members.contains_key(&config.node_id);
            let store_error = |e: std::io::Error| start_error(e.to_string());
            // A replica added at run time is found by its state on disk; one this node was
            // removed from is retired and stays closed, whatever the static placement says.
            let opens = if placed_here {
                !groups.store.is_retired(group).map_err(store_error)?
            } else {
                groups.store.has_group(group).map_err(store_error)?
            };
            if !opens {
                continue;
            }
            let alone = groups.sole_voter[group as usize];
            let raft = groups
                .open_raft(
                    group,
                    if alone {
                        tickless.clone()
                    } else {
                        groups.config.clone()
                    },
                )
                .await
                .map_err(|e| start_error(e.to_string()))?;
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| start_error(e.to_string()))?;
            if !initialized && placed_here {
                // Every replica initializes with the same membership, so whichever peers are
                // up first can elect a leader; a peer's message may initialize it first.
                match raft.initialize(members).await {
                    Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(start_error(e.to_string())),
                }
            } else if initialized && alone {
                // A restarted single-member group need not sit out an election timeout.
                raft.trigger()
                    .elect(false)
                    .await
                    .map_err(|e| start_error(e.to_string()))?;
            }
        }
        groups.open_meta_group().await?;
        let rafts = groups.rafts.read().clone();
        for (group, raft) in rafts.iter().enumerate() {
            let Some(raft) = raft
                .as_ref()
                .filter(|_| groups.is_sole_voter(group as GroupId))
            else {
                continue;
            };
            let wait_error = |e: openraft::metrics::WaitError| GroupsError::Start {
                group: group as GroupId,
                message: e.to_string(),
            };
            let metrics = raft
                .wait(Some(LEADER_WAIT))
                .current_leader(config.node_id, "group has a leader")
                .await
                .map_err(wait_error)?;
            // Serve nothing before the log written before a restart is applied again.
            raft.wait(Some(LEADER_WAIT))
                .applied_index_at_least(metrics.last_log_index, "group caught up")
                .await
                .map_err(wait_error)?;
        }
        let snapshots = tokio::spawn(snapshot_trigger::run(
            groups.rafts.clone(),
            groups.db.clone(),
            groups.meta_db.clone(),
            config.snapshot_every,
            groups.stop.subscribe(),
        ));
        groups.tasks.lock().push(snapshots);
        let storage = tokio::spawn(storage_watch::run(
            groups.rafts.clone(),
            groups.storage_failure.clone(),
            groups.stop.subscribe(),
        ));
        groups.tasks.lock().push(storage);
        let has_peers = groups.sole_voter.iter().any(|alone| !alone);
        if has_peers {
            let balancer = tokio::spawn(balance_leaders(
                groups.node_id,
                groups.placement.clone(),
                groups.rafts.clone(),
                groups.pinned.clone(),
                groups.peers.stopping().clone(),
                groups.stop.subscribe(),
            ));
            groups.tasks.lock().push(balancer);
        }
        tracing::info!(
            groups = config.groups,
            replicated_here = rafts.iter().flatten().count(),
            dir = %config.dir.display(),
            "raft groups started"
        );
        Ok(groups)
    }

    /// Starts the raft of `group` over this node's store and keyspace and makes it the receiver
    /// of the group's messages. It restores itself from the store (empty for a new replica).
    pub(crate) async fn open_raft(
        &self,
        group: GroupId,
        config: Arc<Config>,
    ) -> Result<Raft, openraft::error::Fatal<crate::typ::TypeConfig>> {
        let state_machine = if group == self.meta_group() {
            StateMachine::over_partition(self.meta_db.clone(), 0, group, self.store.clone())
        } else {
            StateMachine::new(self.db.clone(), group, self.store.clone())
        };
        let network = GroupNetwork {
            group,
            peers: self.peers.clone(),
        };
        let raft = Raft::new(
            self.node_id,
            config,
            network,
            self.store.group(group),
            state_machine,
        )
        .await?;
        self.registry.register(group, raft.clone());
        let watcher = tokio::spawn(count_leader_changes(
            group,
            raft.clone(),
            self.metrics.clone(),
            self.stop.subscribe(),
        ));
        let mut tasks = self.tasks.lock();
        tasks.retain(|task| !task.is_finished());
        tasks.push(watcher);
        self.rafts.write()[group as usize] = Some(raft.clone());
        Ok(raft)
    }

    /// Returns true if this node is `group`'s only voter (its membership never changes).
    pub(crate) fn is_sole_voter(&self, group: GroupId) -> bool {
        self.sole_voter
            .get(group as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The metadata group's keyspace.
    pub(crate) fn meta_db(&self) -> &Arc<Db> {
        &self.meta_db
    }

    /// Starts the metadata group if this node is one of its replicas: one of its first
    /// replicas (see `node_registry::meta_members`) it was not removed from, or one added at
    /// run time (found by its state on disk). Initializes it in a new cluster.
    async fn open_meta_group(&self) -> Result<(), GroupsError> {
        let group = self.meta_group();
        let start_error = |message: String| GroupsError::Start { group, message };
        let store_error = |e: std::io::Error| start_error(e.to_string());
        let members = crate::node_registry::meta_members(&self.placement);
        let placed_here = members.contains_key(&self.node_id);
        let opens = if placed_here {
            !self.store.is_retired(group).map_err(store_error)?
        } else {
            self.store.has_group(group).map_err(store_error)?
        };
        if !opens {
            return Ok(());
        }
        let raft = self
            .open_raft(group, self.config_of(group))
            .await
            .map_err(|e| start_error(e.to_string()))?;
        if placed_here
            && !raft
                .is_initialized()
                .await
                .map_err(|e| start_error(e.to_string()))?
        {
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(start_error(e.to_string())),
            }
        }
        Ok(())
    }

    pub(crate) fn store(&self) -> &Arc<LogDb> {
        &self.store
    }

    pub(crate) fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The config of a group with peers.
    /// The raft configuration of a multi-node `group`. Only admin commands and the gossip
    /// loop use the metadata group: it can take longer to fail over, and costs an idle
    /// cluster less, than a slot group.
    pub(crate) fn config_of(&self, group: GroupId) -> Arc<Config> {
        if group != self.meta_group() {
            return self.ticking_config();
        }
        self.meta_config.clone()
    }

    pub(crate) fn ticking_config(&self) -> Arc<Config> {
        self.config.clone()
    }

    /// Forgets `group`'s raft: messages for it are refused, reads and writes redirected.
    pub(crate) fn unregister(&self, group: GroupId) {
        self.rafts.write()[group as usize] = None;
        self.registry.unregister(group);
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The nodes known to be stopping, this one included once it stops.
    pub(crate) fn stopping_peers(&self) -> &StoppingPeers {
        self.peers.stopping()
    }

    /// The cluster's members and where groups live.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Sends a message published here to every other member's subscribers.
    pub fn relay_publish(&self, channel: &bytes::Bytes, message: &bytes::Bytes) {
        let Some(relay) = &self.relay else { return };
        let started = relay.publish(&self.members(), channel, message);
        if !started.is_empty() {
            let mut tasks = self.tasks.lock();
            tasks.retain(|task| !task.is_finished());
            tasks.extend(started);
        }
    }

    /// Makes `handler` deliver the messages other members relay to this node's subscribers.
    pub fn on_relayed_publish(&self, handler: crate::service::PublishHandler) {
        self.registry.on_publish(handler);
    }

    /// Makes this node answer replica calls (the admin API, and other nodes coordinating a
    /// change) through `owner`'s groups, for as long as `owner` lives.
    pub fn serve_replica_calls<T>(&self, owner: std::sync::Weak<T>)
    where
        T: AsRef<Groups> + Send + Sync + 'static,
    {
        self.registry.on_replica_call(Arc::new(move |call| {
            let owner = owner.clone();
            Box::pin(async move {
                match owner.upgrade() {
                    Some(owner) => owner.as_ref().as_ref().answer(call).await,
                    None => Err(crate::replicas::ReplicaError::Stopping),
                }
            })
        }));
    }

    /// The groups' Prometheus series.
    pub fn metrics(&self) -> &Arc<RaftMetrics> {
        &self.metrics
    }

    /// The raft instance of `group`, if this node replicates it.
    pub fn raft(&self, group: GroupId) -> Option<Raft> {
        self.rafts.read().get(group as usize)?.clone()
    }

    /// Returns true if reads of `group` are linearizable here without asking raft: this node
    /// is the group's only voter (and `start` waited for it to apply its log).
    pub fn reads_are_local(&self, group: GroupId) -> bool {
        self.is_sole_voter(group) || (self.unsafe_stale_reads && self.raft(group).is_some())
    }

    /// Returns true if this node currently leads `group` (as far as it knows: a read or write
    /// still confirms it).
    pub fn is_leader(&self, group: GroupId) -> bool {
        self.raft(group).is_some_and(|raft| {
            raft.metrics().borrow_watched().current_leader == Some(self.node_id)
        })
    }

    /// The last log index `group` applied here, if this node replicates it.
    pub fn applied_index(&self, group: GroupId) -> Option<u64> {
        let raft = self.raft(group)?;
        let metrics = raft.metrics();
        let applied = metrics
            .borrow_watched()
            .last_applied
            .as_ref()
            .map_or(0, |id| id.index);
        Some(applied)
    }

    /// The groups this node leads as far as it knows, each with its term.
    pub fn led_groups(&self) -> Vec<(GroupId, u64)> {
        self.rafts
            .read()
            .iter()
            .take(self.len())
            .enumerate()
            .filter_map(|(group, raft)| {
                let metrics = raft.as_ref()?.metrics();
                let metrics = metrics.borrow_watched();
                (metrics.current_leader == Some(self.node_id))
                    .then_some((group as GroupId, metrics.current_term))
            })
            .collect()
    }

    /// The node that leads `group` as far as this node knows: the raft leader it follows, or,
    /// for a group it does not replicate, the leader gossip last named (see
    /// [`Groups::hint_leader`]), else the group's preferred leader. Whoever is named redirects
    /// further if it does not lead. None while an election is under way, or while only this
    /// node's own stale gossip names it for a group it no longer runs.
    pub fn leader_of(&self, group: GroupId) -> Option<(NodeId, NodeAddr)> {
        if let Some(raft) = self.raft(group) {
            let metrics = raft.metrics();
            let metrics = metrics.borrow_watched();
            let id = metrics.current_leader?;
            let addr = metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned();
            return Some((id, addr.or_else(|| self.placement.member(id).cloned())?));
        }
        // This node cannot lead a group it does not run: a hint naming it is its own stale
        // gossip (it led the group before its replica moved away).
        let hint = self.hints.read().get(&group).cloned();
        if let Some(hint) = hint.filter(|(id, _)| *id != self.node_id) {
            return Some(hint);
        }
        let id = self.placement.preferred_leader(group);
        if id == self.node_id {
            return None;
        }
        Some((id, self.placement.member(id)?.clone()))
    }

    /// Every node this node knows of: the static members, the replicas of the groups it runs,
    /// and the leaders gossip named. With their addresses.
    pub fn members(&self) -> BTreeMap<NodeId, NodeAddr> {
        let mut members = self.placement.members().clone();
        for raft in self.rafts.read().iter().flatten() {
            let metrics = raft.metrics();
            let metrics = metrics.borrow_watched();
            for (id, addr) in metrics.membership_config.membership().nodes() {
                members.insert(*id, addr.clone());
            }
        }
        for (id, addr) in self.hints.read().values() {
            members.entry(*id).or_insert_with(|| addr.clone());
        }
        for (id, addr) in self.gossiped.read().iter() {
            members.entry(*id).or_insert_with(|| addr.clone());
        }
        members
    }

    /// Records the nodes gossip hears from: nodes that replicate nothing yet are known so.
    pub fn set_gossiped_members(&self, members: BTreeMap<NodeId, NodeAddr>) {
        *self.gossiped.write() = members;
    }

    /// The addresses of node `id`, if this node knows it (see [`Groups::members`]).
    pub fn member_addr(&self, id: NodeId) -> Option<NodeAddr> {
        if let Some(addr) = self.placement.member(id) {
            return Some(addr.clone());
        }
        self.members().remove(&id)
    }

    /// Waits up to `timeout` until this node knows a leader of `group` (one it follows, or
    /// one gossip names for a group it does not replicate).
    pub async fn wait_for_leader(&self, group: GroupId, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(raft) = self.raft(group) {
            let _ = raft
                .wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "group has a leader")
                .await;
            return;
        }
        while self.leader_of(group).is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records that gossip names `leader` (at `addr`) as the leader of `group`: where this node
    /// redirects clients for a group it does not replicate. Advisory: a wrong hint costs one
    /// more redirect.
    pub fn hint_leader(&self, group: GroupId, leader: NodeId, addr: NodeAddr) {
        if (group as usize) < self.len() {
            self.hints.write().insert(group, (leader, addr));
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.sole_voter.len()
    }

    /// Returns true if the cluster has no group.
    pub fn is_empty(&self) -> bool {
        self.sole_voter.is_empty()
    }

    /// Resolves, with the error, once a group stopped because its storage failed: the node
    /// should then stop (see `storage_watch`).
    pub async fn storage_failed(&self) -> String {
        let mut failure = self.storage_failure.subscribe();
        let failed = failure
            .wait_for(Option::is_some)
            .await
            .map(|failure| failure.clone().unwrap_or_default());
        match failed {
            Ok(error) => error,
            // The sender lives as long as `self`.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops every group (their pending writes fail), the raft service and the balancer, and
    /// waits for their tasks to end.
    pub async fn shutdown(&self) {
        self.hand_off_leadership().await;
        self.stop.send_replace(true);
        let rafts = self.rafts.read().clone();
        for (group, raft) in rafts.iter().enumerate() {
            let Some(raft) = raft else { continue };
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(group, %error, "raft group did not stop cleanly");
            }
        }
        self.registry.clear();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for mut task in tasks {
            // The raft service's graceful shutdown waits for open streams, and peers keep
            // replication streams open for as long as they lead: give it a moment, then cut.
            if tokio::time::timeout(TASK_STOP_WAIT, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        // Keep the store alive until every group stopped writing to it.
        let _ = &self.store;
    }
}

impl AsRef<Groups> for Groups {
    fn as_ref(&self) -> &Groups {
        self
    }
}

impl Groups {
    /// Hands every group this node leads to its most caught-up follower, and waits (a little)
    /// for the transfers: a planned stop then costs clients one redirect, not an election
    /// timeout. From now on this node refuses leadership offered by others' balancers.
    async fn hand_off_leadership(&self) {
        self.registry.refuse_leadership();
        let stopping = self.peers.stopping();
        stopping.note(self.node_id);
        let rafts = self.rafts.read().clone();
        let handing = rafts.iter().enumerate().filter_map(|(group, raft)| {
            let group = group as GroupId;
            let raft = raft.as_ref()?;
            if self.is_sole_voter(group) || !self.is_leader(group) {
                return None;
            }
            // Only to a follower still answering: a dead node would take the group and never
            // lead it.
            let target = live_follower(raft, stopping, self.node_id, None)?;
            Some(hand_over(raft, stopping, self.node_id, group, target))
        });
        let handed = tokio::time::timeout(HAND_OFF_WAIT, futures::future::join_all(handing)).await;
        match handed {
            Ok(handed) if !handed.is_empty() => {
                let kept = handed.iter().filter(|&&left| !left).count();
                tracing::info!(
                    handed = handed.len() - kept,
                    kept,
                    "handed leadership off before stopping"
                );
            }
            Ok(_) => {}
            Err(_elapsed) => tracing::warn!("leader hand-off did not finish before stopping"),
        }
    }
}

/// Counts the changes of `group`'s leader as this node sees them, until `stop`.
async fn count_leader_changes(
    group: GroupId,
    raft: Raft,
    metrics: Arc<RaftMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    // Server metrics change with leadership and membership only, not with every write.
    let mut server = raft.server_metrics();
    let mut leader = server.borrow_watched().current_leader;
    let label = group.to_string();
    loop {
        tokio::select! {
            changed = server.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now = server.borrow_watched().current_leader;
        if now != leader {
            tracing::info!(group, leader = ?now, previous = ?leader, "group leader changed");
            metrics.leader_changes.with_label_values(&[&label]).inc();
            leader = now;
        }
    }
}

/// The rounds of a background task that visits every group this node runs, `period` apart.
pub(crate) struct Rounds(tokio::time::Interval);

impl Rounds {
    pub(crate) fn every(period: Duration) -> Rounds {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Rounds(tick)
    }

    /// Waits for the next round; returns the groups' rafts then (the metadata group's last),
    /// or None once `stop` is set.
    pub(crate) async fn next(
        &mut self,
        rafts: &Shared<Vec<Option<Raft>>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<Option<Raft>>> {
        tokio::select! {
            _ = self.0.tick() => Some(rafts.read().clone()),
            _ = stop.wait_for(|stop| *stop) => None,
        }
    }
}

/// Hands each group this node leads, but should not, to its preferred leader once that node is
/// up and caught up: after a failover or a restart, leadership returns to where the placement
/// spreads it, so every node leads its share of groups. Only groups still replicated where the
/// placement put them, and whose leader no operator chose, are handed back: a group moved at
/// run time is balanced by whoever moved it.
async fn balance_leaders(
    node_id: NodeId,
    placement: Placement,
    rafts: Shared<Vec<Option<Raft>>>,
    pinned: Shared<BTreeSet<GroupId>>,
    stopping: StoppingPeers,
    mut stop: watch::Receiver<bool>,
) {
    let mut rounds = Rounds::every(BALANCE_EVERY);
    while let Some(current) = rounds.next(&rafts, &mut stop).await {
        // The last is the metadata group's: its leader may be anywhere.
        let slot_groups = current.len().saturating_sub(1);
        let mut handing = Vec::new();
        for (group, raft) in current.iter().take(slot_groups).enumerate() {
            let group = group as GroupId;
            let Some(raft) = raft else { continue };
            let preferred = placement.preferred_leader(group);
            if preferred == node_id
                || pinned.read().contains(&group)
                || stopping.is_stopping(preferred)
            {
                continue;
            }
            let ready = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                let placed: BTreeSet<NodeId> = placement.replicas_of(group).into_iter().collect();
                let membership = metrics.membership_config.membership();
                let as_placed = membership.voter_ids().collect::<BTreeSet<_>>() == placed
                    && membership.learner_ids().next().is_none();
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&preferred).cloned().flatten())
                    .map(|log_id| log_id.index);
                let acked = acked_within(&metrics, preferred, BALANCE_RECENT_ACK);
                metrics.current_leader == Some(node_id)
                    && as_placed
                    && acked
                    && matched.is_some()
                    && matched >= metrics.last_log_index
            };
            if ready {
                tracing::info!(
                    group,
                    to = preferred,
                    "handing leadership to the preferred leader"
                );
                handing.push(hand_over(raft, &stopping, node_id, group, preferred));
            }
        }
        futures::future::join_all(handing).await;
    }
}

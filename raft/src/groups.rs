//! A node's slot groups: one openraft instance per group over the node's shared log store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Config, SnapshotPolicy};
use tiering::Db;

use crate::log_store::LogDb;
use crate::network::Unconnected;
use crate::state_machine::StateMachine;
use crate::typ::{GroupId, NodeAddr, NodeId, Raft};

/// How long a starting node waits for each of its groups to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// What a node needs to run its groups.
#[derive(Clone, Debug)]
pub struct GroupsConfig {
    pub node_id: NodeId,
    pub addr: NodeAddr,
    /// Number of slot groups.
    pub groups: u32,
    /// Where the raft log store lives.
    pub dir: PathBuf,
    /// A group snapshots its state (and may purge its log) every this many entries.
    pub snapshot_every: u64,
}

/// Why the groups could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("open the raft log store in {dir}: {source}")]
    Open { dir: String, source: rocksdb::Error },
    #[error("invalid raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("start raft group {group}: {message}")]
    Start { group: GroupId, message: String },
}

/// The raft groups of one node.
pub struct Groups {
    node_id: NodeId,
    rafts: Vec<Raft>,
    store: Arc<LogDb>,
    /// Every group has this node as its only voter: no other node can ever lead one, so once
    /// a group has applied its log, reads need no confirmation.
    sole_voter: bool,
}

impl Groups {
    /// Opens the log store, starts every group over `db`'s keyspaces (restoring each from its
    /// snapshot and log), initializes the groups of a new node, and waits until each has a
    /// leader.
    pub async fn start(config: GroupsConfig, db: Arc<Db>) -> Result<Groups, GroupsError> {
        let store = LogDb::open(&config.dir).map_err(|source| GroupsError::Open {
            dir: config.dir.display().to_string(),
            source,
        })?;
        let members = BTreeMap::from([(config.node_id, config.addr.clone())]);
        let raft_config = Arc::new(
            Config {
                cluster_name: "autocache".into(),
                heartbeat_interval: 100,
                election_timeout_min: 300,
                election_timeout_max: 600,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
                max_in_snapshot_log_to_keep: 1000,
                // A group whose only voter is this node has no one to send heartbeats to and no
                // election to time out (it is elected explicitly below): ticking would only cost
                // an idle node CPU (16 groups ticking: ~4% of a core).
                enable_tick: members.len() > 1,
                ..Default::default()
            }
            .validate()?,
        );
        let mut rafts = Vec::with_capacity(config.groups as usize);
        for group in 0..config.groups {
            let start_error = |message: String| GroupsError::Start { group, message };
            let state_machine = StateMachine::new(db.clone(), group, store.clone());
            let raft = Raft::new(
                config.node_id,
                raft_config.clone(),
                Unconnected,
                store.group(group),
                state_machine,
            )
            .await
            .map_err(|e| start_error(e.to_string()))?;
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| start_error(e.to_string()))?;
            if !initialized {
                raft.initialize(members.clone())
                    .await
                    .map_err(|e| start_error(e.to_string()))?;
            } else {
                // A restarted single-member group need not sit out an election timeout.
                raft.trigger()
                    .elect(false)
                    .await
                    .map_err(|e| start_error(e.to_string()))?;
            }
            rafts.push(raft);
        }
        for (group, raft) in rafts.iter().enumerate() {
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
        tracing::info!(groups = config.groups, dir = %config.dir.display(), "raft groups started");
        Ok(Groups {
            node_id: config.node_id,
            rafts,
            store,
            sole_voter: members.len() == 1,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The raft instance of `group`.
    pub fn raft(&self, group: GroupId) -> &Raft {
        &self.rafts[group as usize]
    }

    /// Returns true if reads of `group` are linearizable here without asking raft: this node
    /// is the group's only voter (and `start` waited for it to apply its log).
    pub fn reads_are_local(&self, _group: GroupId) -> bool {
        self.sole_voter
    }

    /// Returns true if this node currently leads `group` (as far as it knows: a read or write
    /// still confirms it).
    pub fn is_leader(&self, group: GroupId) -> bool {
        self.rafts[group as usize]
            .metrics()
            .borrow_watched()
            .current_leader
            == Some(self.node_id)
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.rafts.len()
    }

    /// Returns true if the node runs no group.
    pub fn is_empty(&self) -> bool {
        self.rafts.is_empty()
    }

    /// Stops every group (their pending writes fail) and waits for their tasks to end.
    pub async fn shutdown(&self) {
        for (group, raft) in self.rafts.iter().enumerate() {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(group, %error, "raft group did not stop cleanly");
            }
        }
        // Keep the store alive until every group stopped writing to it.
        let _ = &self.store;
    }
}

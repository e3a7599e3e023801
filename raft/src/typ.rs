use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::request::{Request, Response};

/// A node's id, stable for its lifetime and never reused.
pub type NodeId = u64;

/// A slot group's index, `0..groups`.
pub type GroupId = u32;

/// A member of a group: where its clients and its raft peers reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` for Redis clients.
    pub client: String,
    /// `host:port` for raft messages.
    pub raft: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.client, self.raft)
    }
}

openraft::declare_raft_types!(
    /// AutoCache's raft types: one leader per term (standard raft).
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
        AsyncRuntime = crate::coarse_timers::CoarseTimers,
);

/// A snapshot's bytes, in memory.
pub type SnapshotData = Cursor<Vec<u8>>;

/// Aliases for openraft's generic types, instantiated for AutoCache.
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub type StorageError = openraft::StorageError<TypeConfig>;

//! Slot groups replicated by openraft.
//!
//! Every slot group is one raft group. This crate holds the raft side of a node: the type
//! configuration (the only place openraft's generic types are spelled out), the log store shared
//! by every group of a node (one RocksDB, group commit: one WAL fsync covers the appends of all
//! groups since the previous one), the state machine, which applies committed requests to a
//! group's keyspace in `tiering`, the placement of groups on a cluster's members, and the gRPC
//! transport between nodes (one connection per peer, shared by every group).
//!
//! It knows nothing of clients or connections: `node` turns client commands into [`Request`]s.

/// Batches replicated to a follower split into messages of bounded size.
mod append_split;
/// Proposing writes and fencing reads, for client connections.
pub mod client;

/// openraft's runtime: tokio with timers on a per-process grid, so idle groups wake together.
pub mod coarse_timers;
/// Moving replicas and leadership across nodes, one retried step at a time.
pub mod coordinator;
/// A node's groups: starting, finding and stopping them.
pub mod groups;
/// Handing a group's leadership to a follower, redirected if the follower does not take it.
mod hand_over;
/// Fault injection between the nodes of an in-process test cluster.
pub mod link_filter;
/// The RocksDB log store shared by a node's groups.
pub mod log_store;
/// The newest entries of a group's log, readable before RocksDB has them.
mod log_tail;
/// The thread that writes every group's log changes, one fsync for many.
mod log_writer;
/// Prometheus series of the groups.
pub mod metrics;
/// The sending end of the transport between nodes.
pub mod network;
/// The cluster's node registry, kept in the metadata group.
pub mod node_registry;
/// Closing replicas a removal left behind on a node it could not reach.
pub mod orphans;
/// Which members replicate and lead each group.
pub mod placement;
/// Which nodes replicate each group, as the metadata group records it.
pub mod placement_record;
/// PUBLISH relayed to every member, as Redis Cluster broadcasts it.
pub mod publish_relay;
/// openraft's watch channels, waking receivers only when one waits.
pub mod quiet_watch;
/// Sending membership steps to a node's raft port.
pub mod replica_call;
/// Changing which nodes replicate a group: membership steps safe to retry.
pub mod replicas;
/// What a log entry carries, and what applying it answers.
pub mod request;
/// The receiving end of the transport: the raft gRPC service.
pub mod service;
/// The steps of moving slots between groups, as a group's leader carries them out.
pub mod slot_calls;
/// The slot → group map the metadata group keeps, with its epoch.
pub mod slot_map;
/// Moving slots between groups, as a coordinator drives it.
pub mod slot_mover;
/// When each group takes a snapshot: every `--snapshot-every` entries, and, holding over
/// 100,000 keys, no sooner than it applied half as many entries as it holds keys.
mod snapshot_trigger;
/// The state machine of one group.
pub mod state_machine;
/// The nodes known to be stopping, so leadership is not handed to them.
mod stopping_peers;
/// Noticing a group stopped by a failed disk, so the node can stop.
mod storage_watch;
/// The openraft type configuration and aliases.
pub mod typ;
/// The transport's messages and codec.
pub mod wire;

pub use client::{AccessError, PendingWrite};
pub use groups::{Groups, GroupsConfig, GroupsError};
pub use log_store::{LogDb, LogDbStats, LogStore};
pub use metrics::RaftMetrics;
pub use placement::{Placement, PlacementError};
pub use replicas::{ClusterShape, GroupReplicas, ReplicaCall, ReplicaError, ReplicaReply};
pub use request::{Op, Request, Response, SlotOp, WatchedKey};
pub use state_machine::StateMachine;
pub use typ::{GroupId, NodeAddr, NodeId, TypeConfig};

//! Membership and topology hints spread by gossip (chitchat), hidden behind this crate's own
//! types: each node publishes its addresses, a generation that grows on every restart, the
//! groups it leads with their terms, and per-group load; every node sees who is alive.
//!
//! Gossip is advisory: it never decides who may serve a key (raft does). A stale hint costs a
//! client one redirect.

/// Why starting or driving gossip failed.
mod error;
/// The running gossip service of one node.
mod gossip;
/// A node as the others see it: its published facts and whether it is alive.
mod member;
/// UDP for real, or an in-memory network with cuttable links for tests.
mod network;
/// What a node publishes, and how it is written as small key-value pairs.
mod node_info;

pub use error::GossipError;
pub use gossip::{Gossip, GossipConfig};
pub use member::{Health, Member};
pub use network::{InMemoryNetwork, Network};
pub use node_info::{GroupLoad, LeaderHint, NodeInfo};
